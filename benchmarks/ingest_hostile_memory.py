"""Peak memory of ingesting hostile drops, against well-formed drops of the same size.

Each case is a drop built to make memory follow the input: one 50 MB line, a gzip that
expands about 1,000x, a file of 1 MiB lines, a CSV cell of 50 MB over many lines, a text
paragraph and a log entry of 50 MB, a JSON document holding one 50 MB record, a Parquet
cell of 50 MB in a row group of three rows, and one among about 1,000 rows of ~1 KB of
its row group. Every case runs at two sizes (default 50 and 100 MB of input,
decompressed) to show the peak is flat in the size, and its baseline, in the same run, is
a well-formed drop of the same format and size (records of ~1 KB).

Each variant runs in its own child process, through the ingest function's per-file
pipeline (``parse_stream`` → ``account_in_chunks`` with the default settings, the
quarantine and curated spools), the file streamed from disk as the S3 body would be, with
an in-memory record store and a fresh in-memory near-duplicate index per chunk. Reported:
peak RSS (``VmHWM`` from ``/proc/self/status``) and the peak above the RSS after imports::

    .venv/bin/python benchmarks/ingest_hostile_memory.py [--sizes 50,100] [--cases jsonl_line,...]

The goal is under 300 MB for each; the Ingest function has 1024 MB (stacks/ingestion.py).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MB = 1024 * 1024
GOAL_MB = 300
_VOCABULARY = (
    "ticket invoice refund shipping password account billing customer agent order "
    "delivery address support request problem answer update version error network"
)
WORDS = tuple(_VOCABULARY.split())


def _sentence(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def _records(rng: random.Random, size: int, chars: int = 1000) -> Iterator[str]:
    """Distinct ~1 KB texts until ``size`` bytes are produced."""
    produced, number = 0, 0
    while produced < size:
        text = f"record {number}: " + _sentence(rng, chars)
        number += 1
        produced += len(text) + 12
        yield text


# --- the drops: (file name, writer of the hostile drop, writer of its well-formed twin) ---


def _jsonl(path: Path, texts: Iterator[str]) -> None:
    with path.open("w") as out:
        for text in texts:
            out.write(json.dumps({"text": text}) + "\n")


def hostile_jsonl_line(path: Path, size: int) -> None:
    with path.open("wb") as out:
        out.write(b'{"text": "a valid record before the long line"}\n{"text": "')
        for _ in range(size // MB):
            out.write(b"lorem ipsum " * (MB // 12))
        out.write(b'"}\n{"text": "a valid record after the long line"}\n')


def hostile_gzip(path: Path, size: int) -> None:
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write(b'{"text": "')
        block = b"a" * MB
        for _ in range(size // MB):
            out.write(block)
        out.write(b'"}\n{"text": "a valid record after the expanded line"}\n')


def hostile_mib_lines(path: Path, size: int) -> None:
    rng = random.Random(1)
    with path.open("w") as out:
        for number in range(size // MB):
            out.write(json.dumps({"text": f"{number} " + _sentence(rng, MB - 40)}) + "\n")


def hostile_csv_cell(path: Path, size: int) -> None:
    line = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n"
    with path.open("w") as out:
        out.write('text,id\n"')
        for _ in range(size // len(line)):
            out.write(line)
        out.write('",1\n"a normal row after the huge cell",2\n')


def hostile_paragraph(path: Path, size: int) -> None:
    line = "a line of a paragraph that goes on without a blank line to end it\n"
    with path.open("w") as out:
        out.write("a first paragraph\n\n")
        for _ in range(size // len(line)):
            out.write(line)
        out.write("\nthe paragraph after it\n")


def hostile_log_entry(path: Path, size: int) -> None:
    line = '  File "service.py", line 12, in handle: the frame of a trace that never ends\n'
    with path.open("w") as out:
        out.write("ERROR:app:an error with an endless trace\n")
        for _ in range(size // len(line)):
            out.write(line)
        out.write("INFO:app:recovered\n")


def hostile_json_document(path: Path, size: int) -> None:
    with path.open("wb") as out:
        out.write(b'[{"text": "')
        for _ in range(size // MB):
            out.write(b"lorem ipsum " * (MB // 12))
        out.write(b'"}, {"text": "a record after the huge one"}]')


def hostile_parquet_cell(path: Path, size: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["a small cell", "lorem ipsum " * (size // 12), "another small cell"]
    pq.write_table(pa.table({"text": texts}), path)


def hostile_parquet_cell_in_rows(path: Path, size: int) -> None:
    """The huge cell among about 1,000 rows of ~1 KB in the same row group: by the footer,
    a row group whose rows average under max_line_bytes, so its pages are decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = list(_records(random.Random(3), MB))
    texts.insert(len(texts) // 2, "lorem ipsum " * (size // 12))
    pq.write_table(pa.table({"text": texts}), path, row_group_size=len(texts))


def well_formed(kind: str) -> Callable[[Path, int], None]:
    def write(path: Path, size: int) -> None:
        rng = random.Random(2)
        texts = _records(rng, size)
        if kind == "jsonl":
            _jsonl(path, texts)
        elif kind == "gzip":
            with gzip.open(path, "wt", compresslevel=6) as out:
                for text in texts:
                    out.write(json.dumps({"text": text}) + "\n")
        elif kind == "csv":
            with path.open("w", newline="") as out:
                writer = csv.writer(out)
                writer.writerow(["text", "id"])
                writer.writerows([text, n] for n, text in enumerate(texts))
        elif kind == "text":
            with path.open("w") as out:
                out.writelines(f"{text}\n\n" for text in texts)
        elif kind == "log":
            with path.open("w") as out:
                out.writelines(f"INFO:app:{text}\n" for text in texts)
        elif kind == "json":
            with path.open("w") as out:
                for number, text in enumerate(texts):
                    out.write(("[" if number == 0 else ",\n") + json.dumps({"text": text}))
                out.write("]")
        elif kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"text": list(texts)}), path, row_group_size=10_000)

    return write


CASES: dict[str, tuple[str, Callable[[Path, int], None], Callable[[Path, int], None]]] = {
    "jsonl_line": ("line.jsonl", hostile_jsonl_line, well_formed("jsonl")),
    "gzip_1000x": ("bomb.jsonl.gz", hostile_gzip, well_formed("gzip")),
    "jsonl_1mib_lines": ("mib.jsonl", hostile_mib_lines, well_formed("jsonl")),
    "csv_quoted_cell": ("cell.csv", hostile_csv_cell, well_formed("csv")),
    "text_paragraph": ("para.txt", hostile_paragraph, well_formed("text")),
    "log_entry": ("trace.log", hostile_log_entry, well_formed("log")),
    "json_document": ("doc.json", hostile_json_document, well_formed("json")),
    "parquet_cell": ("cell.parquet", hostile_parquet_cell, well_formed("parquet")),
    "parquet_cell_in_rows": ("rows.parquet", hostile_parquet_cell_in_rows, well_formed("parquet")),
}


# --- the child: one variant, its peak RSS ----------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def _peak_rss_mb() -> float:
    """The child's own high-water mark. Not ``ru_maxrss``: Linux carries it across exec, so
    a child would report its parent's RSS at the fork whenever that was higher."""
    return _status_mb("VmHWM")


def child(path: str) -> None:
    from collections.abc import Sequence as Seq

    from tuneloop.ingest.accounting import DropTally, FileOutcome, StoredAt, account_in_chunks
    from tuneloop.ingest.curated import CuratedWriter
    from tuneloop.ingest.minhash import MemoryLSH
    from tuneloop.ingest.model import Candidate
    from tuneloop.ingest.parsing import ReadOptions, parse_stream
    from tuneloop.ingest.quarantine import QuarantineWriter
    from tuneloop.ingest.reading import buffered
    from tuneloop.ingest.redaction import redactors_named
    from tuneloop.ingest.settings import DEFAULT_SETTINGS

    class Store:
        """The conditional insert, keeping ids only (the Records table is elsewhere)."""

        def __init__(self) -> None:
            self.ids: set[str] = set()

        def insert_new(self, drop_id: str, candidates: Seq[Candidate]) -> dict[str, StoredAt]:
            self.ids.update(c.record_id for c in candidates)
            return {}

    settings = DEFAULT_SETTINGS
    near = settings.near_duplicates
    after_imports = _rss_mb()
    started = time.perf_counter()
    tally = DropTally()
    redactors = redactors_named(settings.redactors)
    name = f"drops/bench/{Path(path).name}"
    with (
        open(path, "rb") as raw,
        QuarantineWriter(
            "b", "q", redactors, excerpt_chars=settings.quarantine_excerpt_chars
        ) as quarantine,
        CuratedWriter("b", "c", name) as curated,
    ):
        stream = raw if path.endswith(".parquet") else buffered(raw)

        def on_chunk(outcome: FileOutcome) -> None:
            tally.add(outcome)
            quarantine.write(outcome.rejections)
            curated.write(outcome.stored)

        account_in_chunks(
            parse_stream(name, stream, ReadOptions(max_line_bytes=settings.max_line_bytes)),
            drop_id="bench",
            store=Store(),
            settings=settings,
            new_index=lambda: MemoryLSH(threshold=near.threshold, bands=near.bands, rows=near.rows),
            on_chunk=on_chunk,
        )
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {
                "peak_mb": peak,
                "after_imports_mb": after_imports,
                "seconds": time.perf_counter() - started,
                "received": tally.received,
                "stored": tally.stored,
                "reasons": dict(tally.reasons),
            }
        )
    )


def run_child(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,100", help="input sizes in MB (decompressed)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'case':<20} {'MB':>4} {'hostile peak':>13} {'above imports':>14} "
        f"{'well-formed peak':>17} {'hostile/well-formed':>20}  outcome"
    )
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for case in args.cases.split(","):
            name, hostile, twin = CASES[case]
            for size in sizes:
                hostile_path = Path(folder) / f"h-{size}-{name}"
                twin_path = Path(folder) / f"w-{size}-{name}"
                hostile(hostile_path, size * MB)
                twin(twin_path, size * MB)
                bad, good = run_child(hostile_path), run_child(twin_path)
                hostile_path.unlink()
                twin_path.unlink()
                peak, base = bad["peak_mb"], good["peak_mb"]
                above = peak - bad["after_imports_mb"]
                worst = max(worst, peak)
                print(
                    f"{case:<20} {size:>4} {peak:>10.0f} MB {above:>11.0f} MB "
                    f"{base:>14.0f} MB {peak / base:>19.2f}x  "
                    f"received {bad['received']}, stored {bad['stored']}, {bad['reasons']} "
                    f"({bad['seconds']:.1f} s; well-formed: {good['received']} received, "
                    f"peak {base - good['after_imports_mb']:.0f} MB above imports, "
                    f"{good['seconds']:.1f} s)",
                    flush=True,
                )
    print(f"highest hostile peak: {worst:.0f} MB (goal: under {GOAL_MB} MB for each)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
