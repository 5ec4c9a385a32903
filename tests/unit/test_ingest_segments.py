"""Segments of large drops: cuts at record starts, the same records as the whole file."""

from __future__ import annotations

import csv
import io
import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tuneloop.ingest.drops import summed_counts
from tuneloop.ingest.events import DropObject
from tuneloop.ingest.model import Entry, Rejection
from tuneloop.ingest.parsing import ReadOptions, parse_file
from tuneloop.ingest.segments import (
    Segment,
    SegmentMessage,
    parse_segment_message,
    plan_line_segments,
    plan_parquet_segments,
)


def located(items: list[Entry | Rejection]) -> list[tuple[int, str]]:
    return [(item.line, item.raw) for item in items]


def by_segments(name: str, body: bytes, file_format: str, size: int) -> list[Entry | Rejection]:
    """Parse each planned segment on its own, as the segment invocations do."""
    items: list[Entry | Rejection] = []
    for segment in plan_line_segments(io.BytesIO(body), file_format, size):
        options = ReadOptions(first_line=segment.first_line, csv_header=segment.csv_header)
        items.extend(parse_file(name, body[segment.start : segment.end], options).items)
    return items


def test_jsonl_segments_start_at_lines_and_cover_the_file() -> None:
    body = b"".join(b'{"text": "record %d"}\n' % n for n in range(10))
    segments = plan_line_segments(io.BytesIO(body), "jsonl", 60)
    assert len(segments) > 2
    assert segments[0].start == 0 and segments[-1].end == len(body)
    for before, after in itertools.pairwise(segments):
        assert before.end == after.start
        assert body[after.start - 1 : after.start] == b"\n"
        assert after.first_line == body[: after.start].count(b"\n") + 1


def test_csv_cut_never_falls_inside_a_quoted_cell_and_carries_the_header() -> None:
    body = b'\xef\xbb\xbftext,id\n"long\ncell\nspanning\nlines",1\nnext,2\nlast,3\n'
    segments = plan_line_segments(io.BytesIO(body), "csv", 10)
    starts = [body[s.start : s.end].split(b"\n")[0] for s in segments]
    assert starts[0].startswith(b"\xef\xbb\xbftext") and b'"long' in body[segments[0].start :]
    assert all(not line.startswith((b"cell", b"spanning", b'lines"')) for line in starts)
    assert all(s.csv_header == "text,id" for s in segments[1:])
    assert located(by_segments("a.csv", body, "csv", 10)) == located(
        list(parse_file("a.csv", body).items)
    )


def test_text_segments_cut_only_between_paragraphs() -> None:
    body = b"one\ntwo\nthree\n\nfour\nfive\n\nsix\n"
    items = by_segments("a.txt", body, "text", 4)
    assert [item.raw for item in items] == ["one\ntwo\nthree", "four\nfive", "six"]
    assert [item.line for item in items] == [1, 5, 8]


def test_log_segments_keep_tracebacks_with_their_entry() -> None:
    body = b"ERROR:a:x\nTraceback (most recent call last):\n  line\n  line\nINFO:a:y\n"
    items = by_segments("a.log", body, "log", 5)
    assert [(item.line, item.raw.count("\n")) for item in items] == [(1, 3), (5, 0)]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.tuples(st.text(max_size=30), st.integers()), max_size=25),
    size=st.integers(1, 200),
    tsv=st.booleans(),
)
def test_delimited_segments_give_exactly_the_whole_file_records(
    rows: list[tuple[str, int]], size: int, tsv: bool
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t" if tsv else ",")
    writer.writerow(["text", "n"])
    writer.writerows(rows)
    body = out.getvalue().encode("utf-8", "surrogatepass")
    name, file_format = ("a.tsv", "tsv") if tsv else ("a.csv", "csv")
    whole = list(parse_file(name, body).items)
    assert located(by_segments(name, body, file_format, size)) == located(whole)


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.builds(lambda t: json.dumps({"text": t}), st.text(max_size=30)),
            st.text(st.characters(blacklist_characters="\n\r"), max_size=20),
        ),
        max_size=25,
    ),
    size=st.integers(1, 200),
)
def test_jsonl_segments_give_exactly_the_whole_file_records(lines: list[str], size: int) -> None:
    body = "\n".join(lines).encode("utf-8", "surrogatepass")
    whole = list(parse_file("a.jsonl", body).items)
    assert located(by_segments("a.jsonl", body, "jsonl", size)) == located(whole)


def test_parquet_segments_are_runs_of_row_groups_with_their_first_row() -> None:
    groups = [(10, 40), (10, 40), (5, 30), (20, 90)]
    segments = plan_parquet_segments(groups, 80)
    assert [(s.row_groups, s.first_row) for s in segments] == [
        ((0, 2), 1),
        ((2, 3), 21),
        ((3, 4), 26),
    ]


def test_segment_messages_round_trip_and_other_messages_are_not_segments() -> None:
    obj = DropObject("raw", "drops/a/big.csv", "etag", 1000)
    segment = Segment(2, 100, 200, first_line=7, csv_header="text", row_groups=None)
    message = SegmentMessage(obj, segment, 3)
    assert parse_segment_message(json.loads(message.to_json())) == message
    assert message.segment_id == f"{obj.drop_id}#2"
    assert parse_segment_message({"detail-type": "Object Created"}) is None
    parquet = SegmentMessage(obj, Segment(0, 0, 0, row_groups=(0, 2)), 2)
    assert parse_segment_message(json.loads(parquet.to_json())) == parquet


def test_summed_counts_add_segments_and_reconcile() -> None:
    segments = [
        {
            "received": 5,
            "stored": 3,
            "duplicate": 1,
            "near_duplicate": 0,
            "quarantined": 1,
            "reasons": {"invalid_json": 1},
            "redactions": {"EMAIL": 2},
            "quarantine_uri": "s3://raw/quarantine/d/big.csv.00000.jsonl",
        },
        {
            "received": 4,
            "stored": 2,
            "duplicate": 0,
            "near_duplicate": 1,
            "quarantined": 1,
            "reasons": {"invalid_json": 1},
            "redactions": {"EMAIL": 1, "PHONE": 1},
            "near_duplicates": [{"line": 9}],
        },
    ]
    counts = summed_counts(segments)
    assert (counts["received"], counts["stored"], counts["duplicate"]) == (9, 5, 1)
    assert (counts["near_duplicate"], counts["quarantined"]) == (1, 2)
    assert counts["reasons"] == {"invalid_json": 2}
    assert counts["redactions"] == {"EMAIL": 3, "PHONE": 1}
    assert counts["near_duplicates"] == [{"line": 9}]
    assert counts["quarantine_uri"] == "s3://raw/quarantine/d/"
