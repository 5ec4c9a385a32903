"""Hostile input: one bad record never fails the others, and memory never follows a line."""

from __future__ import annotations

import gzip
import io
import json
import logging
import tracemalloc
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneloop.ingest import accounting, parsing
from tuneloop.ingest.accounting import DropTally, StoredAt, account_for_file, account_in_chunks
from tuneloop.ingest.model import Candidate, Entry, Rejection
from tuneloop.ingest.parsing import ReadOptions, parse_file, parse_stream
from tuneloop.ingest.quarantine import QuarantineWriter
from tuneloop.ingest.redaction import redactors_named
from tuneloop.ingest.settings import IngestSettings

LIMIT = 64 * 1024  # max_line_bytes of these tests: small, so huge lines are cheap to make
SMALL = ReadOptions(max_line_bytes=LIMIT)


class MemoryStore:
    def __init__(self) -> None:
        self.items: dict[str, StoredAt] = {}

    def insert_new(self, drop_id: str, candidates: Sequence[Candidate]) -> dict[str, StoredAt]:
        existing = {}
        for candidate in candidates:
            if candidate.record_id in self.items:
                existing[candidate.record_id] = self.items[candidate.record_id]
            else:
                self.items[candidate.record_id] = StoredAt(drop_id, candidate.line)
        return existing


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def rejections(items: Sequence[Entry | Rejection]) -> list[tuple[int, str]]:
    return [(i.line, i.reason) for i in items if isinstance(i, Rejection)]


def entry_lines(items: Sequence[Entry | Rejection]) -> list[int]:
    return [i.line for i in items if isinstance(i, Entry)]


# --- 1. one record's failure stays its own ------------------------------------------------


def test_deeply_nested_json_quarantines_its_own_line_and_the_others_are_stored() -> None:
    # Given a JSONL file whose second line nests 5,000 levels deep
    body = "\n".join(
        [
            json.dumps({"text": "the first valid record of the file"}),
            '{"text": ' + deep(5000) + "}",
            json.dumps({"text": "the third line is valid as well"}),
        ]
    ).encode()

    # When it is accounted for
    store = MemoryStore()
    outcome = account_for_file(parse_file("drops/x/f.jsonl", body), drop_id="d", store=store)

    # Then the deep line is quarantined as too_deep naming file and line; the others stored
    assert [c.line for c in outcome.stored] == [1, 3]
    (rejection,) = outcome.rejections
    assert (rejection.line, rejection.reason) == (2, "too_deep")
    assert rejection.message.startswith("drops/x/f.jsonl, line 2: nested deeper")


@pytest.mark.parametrize("extension", [".json", ".log"])
def test_deep_nesting_in_json_documents_and_json_logs_is_a_rejection(extension: str) -> None:
    body = ('{"message": ' + deep(5000) + "}").encode()
    items = list(parse_file(f"drops/x/f{extension}", body).items)
    assert len(items) == 1 and isinstance(items[0], Rejection)
    assert items[0].reason in {"too_deep", "unparseable_log_line"}


def test_lone_surrogates_and_huge_integers_are_rejections_not_crashes() -> None:
    body = b"\n".join(
        [
            b'{"text": "broken \\ud800 surrogate"}',
            b'{"text": "x", "n": ' + b"9" * 5000 + b"}",
            b'{"text": "a record that survives its neighbours"}',
        ]
    )
    outcome = account_for_file(
        parse_file("drops/x/f.jsonl", body), drop_id="d", store=MemoryStore()
    )
    assert [(r.line, r.reason) for r in outcome.rejections] == [
        (1, "invalid_encoding"),
        (2, "invalid_json"),
    ]
    assert [c.line for c in outcome.stored] == [3]


def test_an_unexpected_error_in_a_stage_quarantines_only_that_record(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a quality check that fails on one record with an error nobody anticipated
    real = accounting.RecordProcessor.finish

    def finish(
        self: accounting.RecordProcessor, file: str, candidate: Candidate, raw: str, **kw: str
    ) -> Candidate | Rejection:
        if "poison" in candidate.content.plain_text():
            raise KeyError("poison secret text")
        return real(self, file, candidate, raw, **kw)

    monkeypatch.setattr(accounting.RecordProcessor, "finish", finish)
    body = (
        b'{"text": "a fine first record"}\n{"text": "poison pill"}\n{"text": "a fine last one"}\n'
    )

    # When the file is accounted for
    with caplog.at_level(logging.ERROR):
        outcome = account_for_file(
            parse_file("drops/x/f.jsonl", body), drop_id="d", store=MemoryStore()
        )

    # Then that record is quarantined with a reason, the others stored ...
    assert [c.line for c in outcome.stored] == [1, 3]
    (rejection,) = outcome.rejections
    assert (rejection.line, rejection.reason) == (2, "processing_error")
    assert "KeyError in quality filters" in rejection.message
    assert "poison" not in rejection.message
    # ... and the log names file, line and stage, never the record's text
    (logged,) = [r for r in caplog.records if r.getMessage().startswith("record quarantined")]
    assert (logged.file, logged.line, logged.stage) == ("drops/x/f.jsonl", 2, "quality filters")  # type: ignore[attr-defined]
    assert "poison" not in str(logged.__dict__)


def test_a_reader_that_breaks_mid_file_keeps_the_records_read_before() -> None:
    class Breaking(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = False

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.sent:
                raise RuntimeError("the device went away")
            data = b'{"text": "read before the failure"}\n'
            buffer[: len(data)] = data
            self.sent = True
            return len(data)

    parsed = parse_stream("drops/x/f.jsonl", io.BufferedReader(Breaking()))
    items = list(parsed.items)
    assert entry_lines(items) == [1]
    assert rejections(items) == [(2, "processing_error")]


def test_a_deeply_nested_manifest_is_an_invalid_manifest() -> None:
    from tuneloop.ingest.manifest import ManifestError, parse_manifest

    with pytest.raises(ManifestError) as caught:
        parse_manifest(deep(20000), key="drops/x/_manifest.json", dataset="x")
    assert caught.value.reason == "invalid_manifest"


# --- 2. memory never follows the input ----------------------------------------------------


def peak_bytes(run: Iterable[Entry | Rejection]) -> tuple[list[Entry | Rejection], int]:
    tracemalloc.start()
    try:
        items = list(run)
        return items, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_oversized_jsonl_line_is_quarantined_by_size_without_being_held() -> None:
    # Given a 16 MB line between two valid ones, read with a 64 KiB line limit
    huge = b'{"text": "' + b"a" * (16 * 1024 * 1024) + b'"}'
    body = b'{"text": "before the huge line"}\n' + huge + b'\n{"text": "after it"}\n'
    stream = io.BytesIO(body)

    # When it is parsed
    items, peak = peak_bytes(parse_stream("drops/x/f.jsonl", stream, SMALL).items)

    # Then the line is one line_too_long rejection naming its size, and the others read
    assert entry_lines(items) == [1, 3]
    (rejection,) = [i for i in items if isinstance(i, Rejection)]
    assert (rejection.line, rejection.reason) == (2, "line_too_long")
    assert f"{len(huge):,} bytes" in rejection.message
    assert len(rejection.raw) <= 21_000
    # ... and never held whole: the peak is the read-ahead buffers, half the line at most
    assert peak < 8 * 1024 * 1024


def test_a_gzip_that_expands_a_thousandfold_is_read_in_bounded_memory() -> None:
    line = b'{"text": "' + b"z" * (32 * 1024 * 1024) + b'"}\n{"text": "the next record"}\n'
    bomb = gzip.compress(line, compresslevel=9)
    assert len(line) / len(bomb) > 900

    items, peak = peak_bytes(parse_stream("drops/x/f.jsonl.gz", io.BytesIO(bomb), SMALL).items)

    assert rejections(items) == [(1, "line_too_long")]
    assert entry_lines(items) == [2]
    assert peak < 10 * 1024 * 1024  # the stream's and gzip's buffers; the line is 32 MB


def test_a_csv_with_a_huge_quoted_field_over_many_lines_is_one_rejection() -> None:
    # Given a quoted cell of 2 MB over 20,000 short lines, then a normal row
    cell = "\n".join(["lorem ipsum dolor sit amet, consectetur adipiscing elit"] * 40_000)
    body = f'text,id\n"{cell}",1\n"a normal row after it",2\n'.encode()

    items, peak = peak_bytes(parse_stream("drops/x/f.csv", io.BytesIO(body), SMALL).items)

    (rejection,) = [i for i in items if isinstance(i, Rejection)]
    assert (rejection.line, rejection.reason) == (2, "record_too_long")
    assert "40,000 lines" in rejection.message
    assert [(i.line, i.payload["text"]) for i in items if isinstance(i, Entry)] == [
        (40_002, "a normal row after it")
    ]
    assert peak < 4 * 1024 * 1024


def test_a_csv_field_over_the_csv_modules_default_limit_is_read() -> None:
    # 200 KB is over the csv module's default field limit (128 KB), under max_line_bytes
    text = "word " * 40_000
    body = f'text\n"{text}"\n"next"\n'.encode()
    items = list(parse_file("drops/x/f.csv", body).items)
    assert [i.payload["text"] for i in items if isinstance(i, Entry)] == [text, "next"]


def test_a_csv_quote_never_closed_does_not_read_the_rest_into_memory() -> None:
    body = b'text\n"fine"\n"never closed\n' + b"more text\n" * 200_000
    items, peak = peak_bytes(parse_stream("drops/x/f.csv", io.BytesIO(body), SMALL).items)
    assert entry_lines(items) == [2]
    assert rejections(items) == [(3, "record_too_long")]
    assert peak < 4 * 1024 * 1024


def test_a_paragraph_and_a_log_entry_over_the_limit_are_rejected_by_size() -> None:
    paragraph = "\n".join(["a line of a paragraph that never ends"] * 10_000)
    text = f"first paragraph\n\n{paragraph}\n\nlast paragraph\n".encode()
    items = list(parse_stream("drops/x/f.txt", io.BytesIO(text), SMALL).items)
    assert rejections(items) == [(3, "record_too_long")]
    assert [i.payload["text"] for i in items if isinstance(i, Entry)] == [
        "first paragraph",
        "last paragraph",
    ]

    trace = "\n".join(["  File 'x.py', line 1, in f"] * 10_000)
    log = f"ERROR:app:boom\n{trace}\nINFO:app:recovered\n".encode()
    items = list(parse_stream("drops/x/app.log", io.BytesIO(log), SMALL).items)
    assert rejections(items) == [(1, "record_too_long")]
    assert [i.payload["text"] for i in items if isinstance(i, Entry)] == ["recovered"]


def test_a_parquet_cell_over_the_limit_is_rejected_without_becoming_a_str() -> None:
    table = pa.Table.from_pylist(
        [{"text": "a small cell"}, {"text": "b" * (LIMIT * 4)}, {"text": "another small one"}]
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    items = list(parse_stream("drops/x/f.parquet", io.BytesIO(sink.getvalue()), SMALL).items)
    assert rejections(items) == [(2, "line_too_long")]
    assert entry_lines(items) == [1, 3]


def parquet_groups(*groups: list[str]) -> bytes:
    """A Parquet file of one ``text`` column, one row group per list of texts."""
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, pa.schema([("text", pa.string())])) as writer:
        for texts in groups:
            writer.write_table(pa.table({"text": texts}))
    return sink.getvalue()


def spy_on_parquet_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[int], int, bool]]:
    """(row groups, batch size, pre-buffered) of every batch read pyarrow is asked for."""
    calls: list[tuple[list[int], int, bool]] = []
    pre_buffered: dict[int, bool] = {}
    original_init, original_iter = pq.ParquetFile.__init__, pq.ParquetFile.iter_batches

    def init(self: pq.ParquetFile, source: Any, **kwargs: Any) -> None:
        pre_buffered[id(self)] = kwargs.get("pre_buffer", True)
        original_init(self, source, **kwargs)

    def iter_batches(
        self: pq.ParquetFile, batch_size: int = 65536, row_groups: Any = None, **kwargs: Any
    ) -> Any:
        calls.append((list(row_groups or []), batch_size, pre_buffered[id(self)]))
        return original_iter(self, batch_size=batch_size, row_groups=row_groups, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "__init__", init)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", iter_batches)
    return calls


def test_a_parquet_row_group_over_the_limit_is_quarantined_from_its_footer_never_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a Parquet file whose third row, alone in its row group, is four times the limit
    big = "b" * (LIMIT * 4)
    body = parquet_groups(["first row", "second row"], [big], ["fourth row"])
    reads = spy_on_parquet_reads(monkeypatch)
    options = ReadOptions(max_line_bytes=LIMIT, parquet_group_bytes=2 * LIMIT)

    # When it is read
    items = list(parse_stream("drops/x/f.parquet", io.BytesIO(body), options).items)

    # Then that row is line_too_long with its size from the footer, the others are entries,
    # and its row group is never decoded: no batch of it was asked of pyarrow
    assert [groups for groups, _, _ in reads] == [[0], [2]]
    assert rejections(items) == [(3, "line_too_long")]
    assert entry_lines(items) == [1, 2, 4]
    (rejection,) = (i for i in items if isinstance(i, Rejection))
    size = int(rejection.message.split("row is about ")[1].split(" bytes")[0].replace(",", ""))
    assert len(big) <= size < len(big) + 1024
    assert "the limit is 65,536 (max_line_bytes)" in rejection.message
    assert rejection.raw == ""


def test_a_parquet_row_group_whose_rows_average_over_the_limit_quarantines_each_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one row group of three rows whose middle cell is far over the limit (the
    # hostile-memory benchmark's file): which row holds it is only known by decoding
    body = parquet_groups(["a small cell", "b" * (LIMIT * 8), "another small cell"], ["after"])
    reads = spy_on_parquet_reads(monkeypatch)
    options = ReadOptions(max_line_bytes=LIMIT, parquet_group_bytes=2 * LIMIT)

    items = list(parse_stream("drops/x/f.parquet", io.BytesIO(body), options).items)

    # Then each of its rows is quarantined by the group's size and nothing is lost: the
    # next row group is read, the big one never is
    assert rejections(items) == [(1, "line_too_long"), (2, "line_too_long"), (3, "line_too_long")]
    assert entry_lines(items) == [4]
    message = next(i for i in items if isinstance(i, Rejection)).message
    assert "row group 0 (rows 1 to 3)" in message and "column 'text'" in message
    assert "the limit is 65,536 a row (max_line_bytes)" in message
    assert [groups for groups, _, _ in reads] == [[1]]


def test_a_large_parquet_row_group_of_readable_rows_is_streamed_in_small_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one row group of 40 rows of ~30 KB (one of them over the limit), larger than a
    # row group read as it is but with rows under the limit on average
    texts = [f"{n} " + "w" * 30_000 for n in range(40)]
    texts[7] = "x" * (LIMIT + 1)
    body = parquet_groups(texts)
    monkeypatch.setattr(parsing, "PARQUET_BATCH_BYTES", 100_000)
    reads = spy_on_parquet_reads(monkeypatch)
    options = ReadOptions(max_line_bytes=LIMIT, parquet_group_bytes=2 * LIMIT)

    items = list(parse_stream("drops/x/f.parquet", io.BytesIO(body), options).items)

    # Then it is read without pre-buffering, a few rows per batch, every row accounted for
    assert rejections(items) == [(8, "line_too_long")]
    assert entry_lines(items) == [n for n in range(1, 41) if n != 8]
    ((groups, batch_size, pre_buffered),) = reads
    assert groups == [0] and batch_size <= 4 and not pre_buffered


def test_chunks_end_at_chunk_bytes_so_large_records_are_not_held_a_thousand_at_a_time() -> None:
    line = json.dumps({"text": "x " * 50_000}) + "\n"  # ~100 KB records
    body = "".join(line.replace("x ", f"{n} ", 1) for n in range(40)).encode()
    sizes: list[int] = []
    settings = IngestSettings(chunk_records=1000, chunk_bytes=1024 * 1024)
    account_in_chunks(
        parse_stream("drops/x/f.jsonl", io.BytesIO(body)),
        drop_id="d",
        store=MemoryStore(),
        settings=settings,
        on_chunk=lambda outcome: sizes.append(outcome.received),
    )
    assert sum(sizes) == 40
    assert max(sizes) <= 11  # ~1 MB of 100 KB records, not all 40 at once


def test_the_quarantine_keeps_a_redacted_excerpt_of_the_setting_length() -> None:
    # Given a rejected line whose email straddles the excerpt's end
    raw = "x" * 1020 + " someone@example.com " + "y" * 50_000
    rejection = Rejection("drops/x/f.jsonl", 1, "invalid_json", None, "bad", raw)
    writer = QuarantineWriter("bucket", "key", redactors_named(("email",)), excerpt_chars=1024)

    # When it is written
    writer.write([rejection])

    # Then the excerpt is 1,024 characters, with no part of the address in it
    writer._spool.seek(0)
    entry = json.loads(writer._spool.read())
    assert len(entry["raw"]) == 1024
    assert "someo" not in entry["raw"]
    assert entry["raw"].endswith(" <EM")


def test_accounting_reconciles_for_a_drop_of_every_hostile_input_at_once() -> None:
    body = b"\n".join(
        [
            b'{"text": "valid one"}',
            b'{"text": ' + deep(3000).encode() + b"}",
            b'{"text": "\\udfff"}',
            b"\xff\xfe not utf-8",
            b'{"text": "' + b"q" * (LIMIT * 2) + b'"}',
            b'{"n": ' + b"1" * 10_000 + b"}",
            b'{"text": "valid two"}',
        ]
    )
    tally = DropTally()
    account_in_chunks(
        parse_stream("drops/x/f.jsonl", io.BytesIO(body), SMALL),
        drop_id="d",
        store=MemoryStore(),
        settings=IngestSettings(chunk_records=2, max_line_bytes=LIMIT),
        on_chunk=tally.add,
    )
    assert (tally.received, tally.stored, tally.quarantined) == (7, 2, 5)
    assert tally.reconciles
