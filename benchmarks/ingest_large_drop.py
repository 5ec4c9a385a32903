"""Peak memory of a large drop: the streaming path against the same bytes read whole.

A JSONL drop of ``--size-mb`` (default 1024) is generated on disk: support texts of about
1 KB, 1 in 20 with an email address, 1 in 50 a duplicate, 1 in 100 broken JSON. Each
variant runs in its own child process (peak RSS only grows, so two variants cannot share
one), on the same file, with the same processing (validate, normalize, redact, quality
filters and features, exact dedup, in-file near-duplicates; the store counts and forgets,
as DynamoDB holds the records, not the Lambda):

- baseline ("whole"): the bytes read whole, parsed into a list, accounted for at once —
  what ingestion did before streaming;
- streaming: ``parse_stream`` over the file, accounted for in chunks of
  ``IngestSettings.chunk_records`` (the Ingest Lambda's path).

Printed per repeat (A, B, A, B, ...): peak RSS above the child's RSS after imports, and
the ratio whole / streaming; then the median ratio::

    .venv/bin/python benchmarks/ingest_large_drop.py                 # 1 GB drop
    .venv/bin/python benchmarks/ingest_large_drop.py --size-mb 64    # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuneloop.ingest.accounting import FileOutcome, StoredAt, account_for_file, account_in_chunks
from tuneloop.ingest.model import Candidate
from tuneloop.ingest.parsing import parse_file, parse_stream
from tuneloop.ingest.settings import DEFAULT_SETTINGS

FILE = "drops/bench/large.jsonl"
SENTENCE = (
    "customers asked about the camera firmware update again this week and the support "
    "team explained how to reset the device pair it with the phone and register the "
    "warranty before the return window closes while the thermostat schedule kept drifting"
)
WORDS = tuple(SENTENCE.split())


class CountingStore:
    """The Records table's role without its memory: every record is new, none is kept."""

    def __init__(self) -> None:
        self.inserted = 0

    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        self.inserted += len(candidates)
        return {}


def generate(path: Path, size_mb: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    target = size_mb * 1024 * 1024
    written = records = 0
    previous = ""
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            roll = rng.random()
            if roll < 0.01:
                line = '{"text": "broken'
            elif roll < 0.03 and previous:
                line = previous
            else:
                words = rng.choices(WORDS, k=170)
                if roll < 0.08:
                    words.insert(5, f"user{records}@example.com")
                words.append(str(records))
                line = json.dumps({"text": " ".join(words)})
                previous = line
            out.write(line + "\n")
            written += len(line) + 1
            records += 1
    return records


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_child(variant: str, path: Path) -> dict[str, float]:
    start_rss = rss_mb()
    store = CountingStore()
    received = 0
    started = time.perf_counter()
    if variant == "whole":
        parsed = parse_file(FILE, path.read_bytes())
        outcome: FileOutcome = account_for_file(parsed, drop_id="bench", store=store)
        received = outcome.received
    else:
        counted = [0]

        def on_chunk(chunk: FileOutcome) -> None:
            counted[0] += chunk.received

        with path.open("rb") as stream:
            account_in_chunks(
                parse_stream(FILE, stream),
                drop_id="bench",
                store=store,
                settings=DEFAULT_SETTINGS,
                on_chunk=on_chunk,
            )
        received = counted[0]
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "received": received,
        "stored": store.inserted,
        "seconds": seconds,
        "peak_rss_mb": peak,
        "start_rss_mb": start_rss,
        "peak_above_start_mb": peak - start_rss,
    }


def measure(variant: str, path: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", variant, "--path", str(path)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="drop size (default 1024)")
    parser.add_argument("--repeats", type=int, default=2, help="A/B pairs (default 2)")
    parser.add_argument("--child", choices=["whole", "streaming"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.path)))
        return

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "large.jsonl"
        print(f"generating a {args.size_mb} MB JSONL drop ...", flush=True)
        records = generate(path, args.size_mb)
        print(f"{records:,} lines, {path.stat().st_size / 2**20:.0f} MB", flush=True)
        ratios = []
        for repeat in range(1, args.repeats + 1):
            whole = measure("whole", path)
            streaming = measure("streaming", path)
            if whole["received"] != streaming["received"]:
                raise SystemExit(f"the variants disagree: {whole} vs {streaming}")
            ratio = whole["peak_above_start_mb"] / max(streaming["peak_above_start_mb"], 1.0)
            ratios.append(ratio)
            print(
                f"repeat {repeat}: whole {whole['peak_above_start_mb']:.0f} MB "
                f"(peak RSS {whole['peak_rss_mb']:.0f} MB, {whole['seconds']:.0f} s) | "
                f"streaming {streaming['peak_above_start_mb']:.0f} MB "
                f"(peak RSS {streaming['peak_rss_mb']:.0f} MB, {streaming['seconds']:.0f} s) | "
                f"whole / streaming = {ratio:.1f}x; {int(streaming['received']):,} records",
                flush=True,
            )
        print(f"median whole / streaming peak memory: {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
