"""Drop formats beyond JSONL: TSV, CSV details, Parquet, logs, transcripts, gzip."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tuneloop.ingest.logs import UNRECOGNISED, parse_log_line
from tuneloop.ingest.model import Entry, Rejection
from tuneloop.ingest.parsing import ReadOptions, parse_file

FILE = "drops/support/data"


def entries(items: Iterable[Entry | Rejection]) -> list[Entry]:
    return [item for item in items if isinstance(item, Entry)]


def rejections(items: Iterable[Entry | Rejection]) -> list[Rejection]:
    return [item for item in items if isinstance(item, Rejection)]


def parquet_bytes(rows: list[dict[str, Any]], row_group_size: int = 2) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink, row_group_size=row_group_size)
    return sink.getvalue()


def test_tsv_reads_tab_separated_columns_with_the_text_column() -> None:
    body = b"id\tText\tlang\n1\tfirst, with a comma\ten\n2\tsecond\tde\n"
    parsed = parse_file(f"{FILE}.tsv", body)
    assert parsed.format == "tsv"
    assert [(e.line, e.payload) for e in entries(parsed.items)] == [
        (2, {"text": "first, with a comma"}),
        (3, {"text": "second"}),
    ]


def test_csv_with_bom_crlf_and_quoted_newlines_keeps_whole_file_line_numbers() -> None:
    body = '\ufefftext,id\r\n"line one\r\nline two",1\r\nplain,2\r\n'.encode()
    parsed = parse_file(f"{FILE}.csv", body)
    assert [(e.line, e.payload["text"]) for e in entries(parsed.items)] == [
        (2, "line one\nline two"),
        (4, "plain"),
    ]


def test_csv_field_mapping_reads_the_mapped_columns_case_insensitively() -> None:
    body = b"Question,Answer,extra\nWhat is 2+2?,4,x\n"
    options = ReadOptions(field_mapping={"prompt": "question", "completion": "ANSWER"})
    parsed = parse_file(f"{FILE}.csv", body, options)
    assert [e.payload for e in entries(parsed.items)] == [
        {"prompt": "What is 2+2?", "completion": "4"}
    ]


def test_csv_mapping_to_a_missing_column_rejects_each_row_naming_field_and_column() -> None:
    body = b"question,reply\nq,a\n"
    parsed = parse_file(f"{FILE}.csv", body, ReadOptions(field_mapping={"text": "body"}))
    (bad,) = rejections(parsed.items)
    assert (bad.line, bad.reason, bad.field) == (2, "missing_field", "text")
    assert "mapped to column 'body'" in bad.message and "header: question, reply" in bad.message


def test_csv_broken_quote_quarantines_the_rest_from_the_row_it_starts() -> None:
    body = b'text\nok\n"never closed\nmore\n'
    parsed = parse_file(f"{FILE}.csv", body)
    assert [e.payload["text"] for e in entries(parsed.items)] == ["ok"]
    # The csv module reads to the end of the file looking for the closing quote.
    (bad,) = rejections(parsed.items)
    assert (bad.line, bad.reason) == (3, "invalid_csv")
    assert "never closed" in bad.message and bad.raw == '"never closed\nmore'


def test_jsonl_field_mapping_follows_dotted_paths() -> None:
    body = b'{"ticket": {"body": "Printer is on fire"}, "id": 1}\n'
    parsed = parse_file(f"{FILE}.jsonl", body, ReadOptions(field_mapping={"text": "ticket.body"}))
    (entry,) = entries(parsed.items)
    assert entry.payload["text"] == "Printer is on fire"


def test_declared_format_overrides_the_extension() -> None:
    parsed = parse_file(f"{FILE}.dat", b'{"text": "a"}\n', ReadOptions(format="jsonl"))
    assert [e.payload for e in entries(parsed.items)] == [{"text": "a"}]


def test_parquet_rows_are_records_counted_by_row_across_row_groups() -> None:
    rows = [{"text": f"row {n}", "n": n} for n in range(5)]
    parsed = parse_file(f"{FILE}.parquet", parquet_bytes(rows))
    assert parsed.unit == "row"
    assert [(e.line, e.payload["text"]) for e in entries(parsed.items)] == [
        (n + 1, f"row {n}") for n in range(5)
    ]


def test_parquet_segment_reads_only_its_row_groups_with_file_row_numbers() -> None:
    rows = [{"text": f"row {n}"} for n in range(5)]
    options = ReadOptions(row_groups=(1, 2), first_row=3)
    parsed = parse_file(f"{FILE}.parquet", parquet_bytes(rows), options)
    assert [(e.line, e.payload["text"]) for e in entries(parsed.items)] == [
        (3, "row 2"),
        (4, "row 3"),
    ]


def test_parquet_with_nested_messages_and_mapping() -> None:
    rows = [{"conv": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
    options = ReadOptions(field_mapping={"messages": "conv"})
    (entry,) = entries(parse_file(f"{FILE}.parquet", parquet_bytes(rows), options).items)
    assert entry.payload["messages"][1] == {"role": "assistant", "content": "yo"}


def test_damaged_parquet_is_one_rejection_naming_the_file() -> None:
    parsed = parse_file(f"{FILE}.parquet", b"PAR1 not really")
    (bad,) = parsed.items
    assert isinstance(bad, Rejection)
    assert (bad.line, bad.reason) == (0, "invalid_parquet")
    assert bad.message.startswith(f"{FILE}.parquet: not a readable Parquet file")


def test_parquet_without_pyarrow_is_rejected_with_the_missing_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    parsed = parse_file(f"{FILE}.parquet", parquet_bytes([{"text": "a"}]))
    (bad,) = parsed.items
    assert isinstance(bad, Rejection)
    assert bad.reason == "unsupported_format" and "pyarrow" in bad.message


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("a.jsonl.gz", b'{"text": "one"}\n{"text": "two"}\n'),
        ("a.csv.gz", b"text\none\ntwo\n"),
        ("a.tsv.gz", b"text\tx\none\t1\ntwo\t2\n"),
        ("a.txt.gz", b"one\n\ntwo\n"),
        ("a.md.gz", b"one\n\ntwo\n"),
        ("a.log.gz", b"INFO:app:one\nINFO:app:two\n"),
        ("a.json.gz", b'[{"text": "one"}, {"text": "two"}]'),
        ("a.parquet.gz", parquet_bytes([{"text": "one"}, {"text": "two"}])),
        # Recognised by the magic bytes, whatever the name says.
        ("a.jsonl", b'{"text": "one"}\n{"text": "two"}\n'),
        ("a.parquet", parquet_bytes([{"text": "one"}, {"text": "two"}])),
    ],
)
def test_gzip_compressed_files_read_like_their_plain_versions(name: str, body: bytes) -> None:
    parsed = parse_file(f"drops/x/{name}", gzip.compress(body))
    assert [e.payload["text"] for e in entries(parsed.items)] == ["one", "two"]
    assert not rejections(parsed.items)


def test_json_array_of_transcripts_and_bare_transcript_lines() -> None:
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    body = json.dumps([{"messages": turns}, turns]).encode()
    parsed = parse_file(f"{FILE}.json", body)
    assert [e.payload["messages"] for e in entries(parsed.items)] == [turns, turns]

    jsonl = (json.dumps(turns) + "\n" + json.dumps({"messages": turns}) + "\n[1, 2]\n").encode()
    parsed = parse_file(f"{FILE}.jsonl", jsonl)
    assert [e.payload["messages"] for e in entries(parsed.items)] == [turns, turns]
    (bad,) = rejections(parsed.items)
    assert (bad.line, bad.reason) == (3, "not_an_object")


def test_json_file_holding_one_transcript_is_one_record() -> None:
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    parsed = parse_file(f"{FILE}.json", json.dumps({"messages": turns}).encode())
    assert [e.payload for e in entries(parsed.items)] == [{"messages": turns}]


@pytest.mark.parametrize(
    ("line", "message", "metadata"),
    [
        (
            '{"level": "error", "ts": "2024-01-01T00:00:00Z", "logger": "api", "msg": "boom"}',
            "boom",
            {"level": "error", "timestamp": "2024-01-01T00:00:00Z", "logger": "api"},
        ),
        (
            "<165>1 2003-10-11T22:14:15.003Z host.example.com evntslog - ID47 "
            '[exampleSDID@32473 iut="3"] An application event',
            "An application event",
            {"level": "notice", "timestamp": "2003-10-11T22:14:15.003Z", "logger": "evntslog"},
        ),
        (
            "<34>Oct 11 22:14:15 mymachine su[123]: 'su root' failed on /dev/pts/8",
            "'su root' failed on /dev/pts/8",
            {"level": "crit", "timestamp": "Oct 11 22:14:15", "logger": "su"},
        ),
        (
            "Jan  5 01:02:03 web1 sshd: session opened",
            "session opened",
            {"timestamp": "Jan  5 01:02:03", "logger": "sshd"},
        ),
        (
            '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 404 '
            '2326 "http://www.example.com/start.html" "Mozilla/4.08"',
            '"GET /apache_pb.gif HTTP/1.0" 404 "Mozilla/4.08"',
            {"timestamp": "10/Oct/2000:13:55:36 -0700", "level": "warning", "status": "404"},
        ),
        (
            "2024-01-01T00:00:00Z WARN billing.worker: retry scheduled",
            "retry scheduled",
            {"timestamp": "2024-01-01T00:00:00Z", "level": "WARN", "logger": "billing.worker"},
        ),
        (
            "ERROR:payments.api:card declined",
            "card declined",
            {"level": "ERROR", "logger": "payments.api"},
        ),
        (
            "2024-03-04 05:06:07,890 - app.db - INFO - connected",
            "connected",
            {"timestamp": "2024-03-04 05:06:07,890", "logger": "app.db", "level": "INFO"},
        ),
    ],
)
def test_log_line_formats_give_message_and_metadata(
    line: str, message: str, metadata: dict[str, str]
) -> None:
    entry = parse_log_line(line)
    assert not isinstance(entry, str)
    assert entry.message == message
    assert entry.metadata.items() >= metadata.items()


def test_log_file_keeps_tracebacks_with_their_entry_and_quarantines_unknown_lines() -> None:
    body = (
        b"ERROR:app:failed\n"
        b"Traceback (most recent call last):\n"
        b'  File "x.py", line 1\n'
        b"just some words\n"
        b'{"message": "json entry", "level": "info"}\n'
        b'{"level": "info"}\n'
    )
    parsed = parse_file(f"{FILE}.log", body)
    assert [(e.line, e.payload["text"]) for e in entries(parsed.items)] == [
        (1, 'failed\nTraceback (most recent call last):\n  File "x.py", line 1'),
        (5, "json entry"),
    ]
    assert entries(parsed.items)[0].payload["metadata"]["level"] == "ERROR"
    bad = rejections(parsed.items)
    assert [(r.line, r.reason) for r in bad] == [
        (4, "unparseable_log_line"),
        (6, "unparseable_log_line"),
    ]
    assert bad[0].message == f"{FILE}.log, line 4: {UNRECOGNISED}"
    assert "needs a message field" in bad[1].message


def test_csv_writer_output_round_trips_with_tsv_dialect() -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t")
    writer.writerows([["text"], ["tab\tinside"], ["new\nline"]])
    parsed = parse_file(f"{FILE}.tsv", out.getvalue().encode())
    assert [e.payload["text"] for e in entries(parsed.items)] == ["tab\tinside", "new\nline"]


def test_truncated_gzip_keeps_the_lines_before_the_damage_and_rejects_the_rest() -> None:
    # Larger than the 1 MB read-ahead, so that the damage is found after some lines.
    body = b"".join(b'{"text": "record %d"}\n' % n for n in range(100_000))
    damaged = gzip.compress(body)[:-200]
    items = list(parse_file(f"{FILE}.jsonl.gz", damaged).items)
    *good, bad = items
    assert isinstance(bad, Rejection) and bad.reason == "damaged_file"
    assert all(isinstance(item, Entry) for item in good) and len(good) > 1000
    assert bad.line == good[-1].line + 1
    assert f"cannot be read from line {bad.line}" in bad.message
