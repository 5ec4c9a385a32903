"""Read a drop file into entries (one per record) or rejections, by file extension.

Line numbers are 1-based and point at the line a record starts on; JSON arrays count
items instead. A problem that spoils the whole file (unknown format, not UTF-8, a JSON
document that does not parse) is one rejection at line 0.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tuneloop.ingest.model import ITEM, LINE, Entry, Rejection, reject

Parsed = Entry | Rejection


@dataclass(frozen=True)
class ParsedFile:
    file: str
    unit: str  # "line" or "item": what the numbers in this file's locations count
    items: list[Parsed]


def _split_lines(text: str) -> list[str]:
    # Only "\n" ends a line: str.splitlines() would also split inside JSON strings that
    # legally hold U+2028 and friends.
    return [line.removesuffix("\r") for line in text.split("\n")]


def _parse_jsonl(file: str, text: str) -> Iterator[Parsed]:
    for number, line in enumerate(_split_lines(text), start=1):
        if not line.strip():
            continue  # blank lines separate nothing and are not records
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield reject(
                file, number, "invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})", line
            )
            continue
        if not isinstance(value, dict):
            yield reject(file, number, "not_an_object", "expected a JSON object", line)
            continue
        yield Entry(line=number, payload=value, raw=line)


def _parse_json(file: str, text: str) -> Iterator[Parsed]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        yield reject(file, 0, "invalid_json", detail, text)
        return
    if not isinstance(value, list):
        yield reject(file, 0, "invalid_json", "expected a JSON array of record objects", text)
        return
    for number, item in enumerate(value, start=1):
        raw = json.dumps(item, ensure_ascii=False)
        if isinstance(item, dict):
            yield Entry(line=number, payload=item, raw=raw)
        else:
            yield reject(file, number, "not_an_object", "expected a JSON object", raw, unit=ITEM)


def _parse_csv(file: str, text: str) -> Iterator[Parsed]:
    lines = _split_lines(text)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield reject(file, 1, "invalid_csv", f"unreadable header: {exc}", lines[0])
        return
    columns = _csv_columns(header)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader cannot resynchronise after a broken quote: the rest is one rejection.
            yield reject(file, start, "invalid_csv", str(exc), "\n".join(lines[start - 1 :]))
            return
        end = reader.line_num
        raw = "\n".join(lines[start - 1 : end])
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            detail = f"row has {len(row)} fields but the header has {len(header)}"
            yield reject(file, start, "invalid_csv", detail, raw)
            continue
        if columns is None:
            detail = (
                "missing; a CSV needs a 'text' column or 'prompt' and 'completion' columns "
                f"(header: {', '.join(header)})"
            )
            yield reject(file, start, "missing_field", detail, raw, field="text")
            continue
        cells = dict(zip(header, row, strict=False))
        yield Entry(
            line=start, payload={name: cells[name] for name in columns if name in cells}, raw=raw
        )


def _csv_columns(header: list[str]) -> tuple[str, ...] | None:
    if "text" in header:
        return ("text",)
    if "prompt" in header and "completion" in header:
        return ("prompt", "completion")
    return None


def _parse_paragraphs(file: str, text: str) -> Iterator[Parsed]:
    paragraph: list[str] = []
    start = 0
    for number, line in enumerate([*_split_lines(text), ""], start=1):
        if line.strip():
            if not paragraph:
                start = number
            paragraph.append(line)
        elif paragraph:
            raw = "\n".join(paragraph)
            yield Entry(line=start, payload={"text": raw}, raw=raw)
            paragraph = []


PARSERS: dict[str, tuple[str, Callable[[str, str], Iterator[Parsed]]]] = {
    ".jsonl": (LINE, _parse_jsonl),
    ".ndjson": (LINE, _parse_jsonl),
    ".json": (ITEM, _parse_json),
    ".csv": (LINE, _parse_csv),
    ".txt": (LINE, _parse_paragraphs),
    ".md": (LINE, _parse_paragraphs),
}


def parse_file(file: str, body: bytes) -> ParsedFile:
    """Split ``body`` (the bytes of S3 object ``file``) into entries and rejections."""
    extension = posixpath.splitext(file)[1].lower()
    if extension not in PARSERS:
        supported = ", ".join(sorted(PARSERS))
        detail = f"unsupported format {extension or '(no extension)'!r}; supported: {supported}"
        return ParsedFile(file, LINE, [reject(file, 0, "unsupported_format", detail, "")])
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        detail = f"not valid UTF-8 (byte {exc.start}, line {line}); re-export the file as UTF-8"
        return ParsedFile(file, LINE, [reject(file, 0, "invalid_encoding", detail, "")])
    unit, parser = PARSERS[extension]
    return ParsedFile(file, unit, list(parser(file, text)))
