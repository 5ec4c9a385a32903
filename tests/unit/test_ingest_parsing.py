"""Reading drop files: every format, and errors that name file, line and field."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from tuneloop.ingest.model import Entry, Rejection
from tuneloop.ingest.parsing import parse_file

FILE = "drops/support/tickets"


def entries(items: Iterable[Entry | Rejection]) -> list[Entry]:
    return [item for item in items if isinstance(item, Entry)]


def rejections(items: Iterable[Entry | Rejection]) -> list[Rejection]:
    return [item for item in items if isinstance(item, Rejection)]


def test_jsonl_reads_objects_skips_blank_lines_and_rejects_bad_json_by_line() -> None:
    # Given a JSONL file with a blank line, a broken line and a non-object line
    body = b'{"text": "a"}\n\n{"text": \n["list"]\n{"messages": []}\n'

    # When it is parsed
    parsed = parse_file(f"{FILE}.jsonl", body)

    # Then the objects keep their line numbers and each bad line is a rejection naming it
    assert [(e.line, e.payload) for e in entries(parsed.items)] == [
        (1, {"text": "a"}),
        (5, {"messages": []}),
    ]
    bad = rejections(parsed.items)
    assert [(r.line, r.reason) for r in bad] == [(3, "invalid_json"), (4, "not_an_object")]
    assert bad[0].message.startswith(f"{FILE}.jsonl, line 3: invalid JSON")
    assert bad[0].raw == '{"text": '


def test_jsonl_keeps_unicode_line_separators_inside_strings() -> None:
    body = json.dumps({"text": "one\u2028two"}, ensure_ascii=False).encode() + b"\r\n"
    parsed = parse_file(f"{FILE}.jsonl", body)
    assert [e.payload["text"] for e in entries(parsed.items)] == ["one\u2028two"]


def test_json_array_counts_items() -> None:
    body = json.dumps([{"text": "a"}, 3, {"prompt": "p", "completion": "c"}]).encode()
    parsed = parse_file(f"{FILE}.json", body)
    assert parsed.unit == "item"
    assert [e.line for e in entries(parsed.items)] == [1, 3]
    (bad,) = rejections(parsed.items)
    assert (bad.line, bad.reason) == (2, "not_an_object")
    assert f"{FILE}.json, item 2" in bad.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"text": "a"', "invalid JSON"),
        (b'"just a string"', "expected a JSON array"),
    ],
)
def test_json_that_is_not_an_array_of_objects_rejects_the_whole_file(
    body: bytes, expected: str
) -> None:
    parsed = parse_file(f"{FILE}.json", body)
    (bad,) = parsed.items
    assert isinstance(bad, Rejection)
    assert (bad.line, bad.reason) == (0, "invalid_json")
    assert expected in bad.message and FILE in bad.message


def test_csv_text_column_with_multiline_quoted_cell_reports_the_starting_line() -> None:
    body = b'id,Text\n1,"first\nstill first"\n2,second\n\n3,"x",extra\n'
    parsed = parse_file(f"{FILE}.csv", body)
    assert [(e.line, e.payload) for e in entries(parsed.items)] == [
        (2, {"text": "first\nstill first"}),
        (4, {"text": "second"}),
    ]
    (bad,) = rejections(parsed.items)
    assert (bad.line, bad.reason) == (6, "invalid_csv")
    assert bad.raw == '3,"x",extra'


def test_csv_prompt_completion_columns_become_payloads() -> None:
    body = b"prompt,completion\nHi?,Hello!\n"
    parsed = parse_file(f"{FILE}.csv", body)
    assert [e.payload for e in entries(parsed.items)] == [{"prompt": "Hi?", "completion": "Hello!"}]


def test_csv_without_usable_columns_rejects_each_row_naming_the_field() -> None:
    body = b"question,answer\nq1,a1\nq2,a2\n"
    parsed = parse_file(f"{FILE}.csv", body)
    bad = rejections(parsed.items)
    assert [(r.line, r.reason, r.field) for r in bad] == [
        (2, "missing_field", "text"),
        (3, "missing_field", "text"),
    ]
    assert "header: question, answer" in bad[0].message
    assert bad[0].message.startswith(f"{FILE}.csv, line 2, field 'text'")


@pytest.mark.parametrize("extension", [".txt", ".md"])
def test_text_and_markdown_split_into_paragraphs_at_blank_lines(extension: str) -> None:
    body = b"\n# Title\n\nFirst paragraph\ncontinues.\n   \nLast one."
    parsed = parse_file(f"{FILE}{extension}", body)
    assert [(e.line, e.payload["text"]) for e in entries(parsed.items)] == [
        (2, "# Title"),
        (4, "First paragraph\ncontinues."),
        (7, "Last one."),
    ]


def test_unknown_extension_quarantines_the_whole_file_naming_it() -> None:
    parsed = parse_file("drops/default/data.xlsx", b"PK...")
    (bad,) = parsed.items
    assert isinstance(bad, Rejection)
    assert (bad.file, bad.line, bad.reason) == ("drops/default/data.xlsx", 0, "unsupported_format")
    assert bad.message.startswith("drops/default/data.xlsx: unsupported format '.xlsx'")
    assert ".jsonl" in bad.message and ".parquet" in bad.message


def test_invalid_utf8_quarantines_only_the_record_holding_it_naming_the_line() -> None:
    # Given a text file whose second paragraph has a byte that is not UTF-8
    parsed = parse_file(f"{FILE}.txt", b"fine\n\nbad \xff byte\nsame paragraph\n\nlast\n")

    # Then the other paragraphs are read and the broken one is quarantined at its start
    assert [e.payload["text"] for e in entries(parsed.items)] == ["fine", "last"]
    (bad,) = rejections(parsed.items)
    assert (bad.line, bad.reason) == (3, "invalid_encoding")
    assert "line 3" in bad.message and "byte 4" in bad.message


def test_utf8_byte_order_mark_is_not_part_of_the_first_record() -> None:
    parsed = parse_file(f"{FILE}.csv", "\ufefftext\nhello\n".encode())
    assert [e.payload for e in entries(parsed.items)] == [{"text": "hello"}]
