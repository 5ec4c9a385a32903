"""Per format: no input crashes parsing, and every record of the input is accounted for."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tuneloop.ingest.accounting import DropTally, StoredAt, account_in_chunks
from tuneloop.ingest.model import Candidate, Entry, Rejection
from tuneloop.ingest.parsing import EXTENSIONS, ReadOptions, parse_file, parse_stream
from tuneloop.ingest.settings import IngestSettings

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text without line breaks (a line of a line-based format) and any text at all.
one_line = st.text(st.characters(blacklist_characters="\n\r", codec="utf-8"), max_size=40)
any_text = st.text(st.characters(codec="utf-8"), max_size=40)


@PROPERTY
@given(body=st.binary(max_size=300), extension=st.sampled_from(sorted(EXTENSIONS)))
def test_no_bytes_crash_any_parser(body: bytes, extension: str) -> None:
    for data in (body, gzip.compress(body)):
        parsed = parse_file(f"drops/x/f{extension}", data)
        for item in parsed.items:
            assert isinstance(item, Entry | Rejection)
            assert item.line >= 0


@PROPERTY
@given(
    lines=st.lists(
        st.one_of(
            st.builds(lambda t: json.dumps({"text": t}), any_text),
            one_line.filter(lambda s: s.strip() != ""),
        ),
        max_size=20,
    ),
    compress=st.booleans(),
)
def test_jsonl_every_non_blank_line_is_one_entry_or_rejection(
    lines: list[str], compress: bool
) -> None:
    body = "\n".join(lines).encode()
    parsed = parse_file("drops/x/f.jsonl", gzip.compress(body) if compress else body)
    items = list(parsed.items)
    assert [item.line for item in items] == [n for n, s in enumerate(lines, 1) if s.strip()]


@PROPERTY
@given(
    rows=st.lists(st.tuples(any_text, one_line), max_size=15),
    delimiter=st.sampled_from([",", "\t"]),
    bom=st.booleans(),
)
def test_delimited_every_written_row_is_one_entry_or_rejection(
    rows: list[tuple[str, str]], delimiter: str, bom: bool
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_ALL)
    writer.writerow(["text", "other"])
    writer.writerows(rows)
    body = ("\ufeff" if bom else "") + out.getvalue()
    extension = ".csv" if delimiter == "," else ".tsv"
    items = list(parse_file(f"drops/x/f{extension}", body.encode()).items)
    expected = [row for row in rows if any(cell.strip() for cell in row)]
    assert len(items) == len(expected)
    texts = [item.payload["text"] for item in items if isinstance(item, Entry)]
    # "\r\n" inside a cell becomes "\n"; everything else survives the round trip.
    assert texts == [text.replace("\r\n", "\n") for text, _ in expected]


@PROPERTY
@given(
    lines=st.lists(
        st.one_of(
            st.builds(lambda m: f"INFO:app:{m}", one_line),
            st.builds(lambda m: f"2024-01-01T00:00:00Z ERROR api: {m}", one_line),
            st.builds(lambda m: json.dumps({"message": m, "level": "info"}), any_text),
            one_line.filter(lambda s: s.strip() != "" and not s[0].isspace()),
        ),
        max_size=20,
    )
)
def test_log_every_entry_line_is_one_entry_or_rejection(lines: list[str]) -> None:
    body = "\n".join(lines).encode()
    items = list(parse_file("drops/x/app.log", body).items)
    starts = [n for n, line in enumerate(lines, 1) if not line.startswith("Traceback (most")]
    assert [item.line for item in items] == starts


@PROPERTY
@given(texts=st.lists(any_text, max_size=12), group=st.integers(1, 5))
def test_parquet_every_row_is_one_entry(texts: list[str], group: int) -> None:
    sink = io.BytesIO()
    table = pa.Table.from_pylist(
        [{"text": t} for t in texts], schema=pa.schema([("text", pa.string())])
    )
    pq.write_table(table, sink, row_group_size=group)
    items = list(parse_file("drops/x/f.parquet", sink.getvalue()).items)
    assert [(i.line, i.payload["text"]) for i in items if isinstance(i, Entry)] == [
        (n, t) for n, t in enumerate(texts, 1)
    ]


@pytest.mark.parametrize("extension", [".txt", ".md"])
@PROPERTY
@given(paragraphs=st.lists(one_line.filter(lambda s: s.strip() != ""), max_size=10))
def test_text_every_paragraph_is_one_entry(extension: str, paragraphs: list[str]) -> None:
    body = "\n\n".join(paragraphs).encode()
    items = list(parse_file(f"drops/x/f{extension}", body).items)
    assert [i.payload["text"] for i in items if isinstance(i, Entry)] == paragraphs


class _MemoryStore:
    """The Records table's conditional insert, in memory."""

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


@PROPERTY
@given(
    lines=st.lists(
        st.one_of(
            st.builds(lambda t: json.dumps({"text": t}), any_text),
            st.sampled_from(['{"text": "the same line again, twice"}', "{broken", "[1]"]),
            st.builds(lambda m: f"INFO:app:{m}", one_line),
        ),
        max_size=25,
    ),
    extension=st.sampled_from([".jsonl", ".log", ".txt", ".csv", ".tsv"]),
    chunk=st.integers(1, 6),
    compress=st.booleans(),
)
def test_every_record_of_every_format_is_accounted_for_in_chunks(
    lines: list[str], extension: str, chunk: int, compress: bool
) -> None:
    body = ("text\n" if extension in (".csv", ".tsv") else "") + "\n".join(lines)
    data = body.encode("utf-8", "surrogatepass")
    items = list(parse_file(f"drops/x/f{extension}", data).items)
    stream = io.BytesIO(gzip.compress(data) if compress else data)
    tally = DropTally()
    account_in_chunks(
        parse_stream(f"drops/x/f{extension}", stream),
        drop_id="d",
        store=_MemoryStore(),
        settings=IngestSettings(chunk_records=chunk),
        on_chunk=tally.add,
    )
    assert tally.received == len(items)
    assert tally.reconciles


# Hostile lines: nesting deeper than the parser's recursion, lone surrogates, integers over
# Python's digit limit, lines over max_line_bytes, bytes that are not UTF-8.
HOSTILE_LIMIT = 4096
hostile_line = st.one_of(
    st.integers(1000, 4000).map(lambda depth: '{"text": ' + "[" * depth + "]" * depth + "}"),
    st.integers(0xD800, 0xDFFF).map(lambda code: '{"text": "x\\u' + f"{code:04x}" + '"}'),
    st.integers(4400, 6000).map(lambda digits: '{"text": "x", "n": ' + "7" * digits + "}"),
    st.integers(HOSTILE_LIMIT + 1, 4 * HOSTILE_LIMIT).map(lambda n: "q" * n),
    st.sampled_from(["\udcff\udcfe", '{"text": "\udc80"}', '"' * 3, "[" * 50]),
)


@PROPERTY
@given(
    lines=st.lists(
        st.one_of(st.builds(lambda t: json.dumps({"text": "ok " + t}), one_line), hostile_line),
        max_size=15,
    ),
    extension=st.sampled_from([".jsonl", ".log", ".txt", ".csv", ".tsv", ".json"]),
    chunk=st.integers(1, 6),
    compress=st.booleans(),
)
# Found by Hypothesis: a JSON document whose string escape is a lone surrogate.
@example(lines=['{"text": "x\\ud800"}'], extension=".json", chunk=1, compress=False)
def test_hostile_lines_never_fail_the_file_and_every_record_is_accounted_for(
    lines: list[str], extension: str, chunk: int, compress: bool
) -> None:
    body = ("text\n" if extension in (".csv", ".tsv") else "") + "\n".join(lines)
    data = body.encode("utf-8", "surrogateescape")
    stream = io.BytesIO(gzip.compress(data) if compress else data)
    tally = DropTally()
    settings_ = IngestSettings(chunk_records=chunk, max_line_bytes=HOSTILE_LIMIT)
    account_in_chunks(
        parse_stream(f"drops/x/f{extension}", stream, ReadOptions(max_line_bytes=HOSTILE_LIMIT)),
        drop_id="d",
        store=_MemoryStore(),
        settings=settings_,
        on_chunk=tally.add,
    )
    assert tally.reconciles
    # Nothing failed the file: every JSONL line is one record, each accounted for
    if extension == ".jsonl":
        assert tally.received == len(lines)
    assert "processing_error" not in tally.reasons
