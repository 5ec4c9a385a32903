"""Read a drop file into entries (one per record) or rejections, by format.

The format comes from the drop manifest, else the file extension (``.gz`` stripped);
gzip is recognised by its magic bytes whatever the name. Files are read as streams: the
entries come out one at a time, so memory does not grow with the file.

Line numbers are 1-based and point at the line a record starts on; JSON arrays count
items and Parquet counts rows instead. A problem that spoils the whole file (unknown
format, a JSON document that does not parse) is one rejection at line 0.
"""

from __future__ import annotations

import csv
import json
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from tuneloop.ingest.logs import parse_log_lines
from tuneloop.ingest.model import ITEM, LINE, ROW, Entry, Rejection, reject
from tuneloop.ingest.reading import (
    DECOMPRESSION_ERRORS,
    GZIP_MAGIC,
    DamagedStreamError,
    Line,
    buffered,
    decompressed,
    encoding_problem,
    numbered_lines,
)

Parsed = Entry | Rejection
# canonical field ("text", "prompt", ...) -> source field, column or dotted JSON path
FieldMapping = Mapping[str, str]

# Whole JSON documents are parsed in memory; larger ones should be JSONL.
MAX_JSON_DOCUMENT_BYTES = 64 * 1024 * 1024
# Temporary copies of non-seekable Parquet streams stay in memory up to this size.
SPOOL_BYTES = 16 * 1024 * 1024
PARQUET_BATCH_ROWS = 1000

# format name -> unit its locations count
FORMATS: dict[str, str] = {
    "jsonl": LINE,
    "json": ITEM,
    "csv": LINE,
    "tsv": LINE,
    "text": LINE,
    "log": LINE,
    "parquet": ROW,
}
EXTENSIONS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "text",
    ".md": "text",
    ".log": "log",
    ".parquet": "parquet",
}
# Names a drop manifest may use for ``format`` besides the format names themselves.
FORMAT_ALIASES: dict[str, str] = {
    **{ext.lstrip("."): name for ext, name in EXTENSIONS.items()},
    **{name: name for name in FORMATS},
    "markdown": "text",
}


@dataclass(frozen=True)
class ParsedFile:
    file: str
    unit: str  # "line", "item" or "row": what the numbers in this file's locations count
    items: Iterable[Parsed]  # a list from parse_file, a one-pass iterator from parse_stream
    format: str = ""


@dataclass(frozen=True)
class ReadOptions:
    """How to read one file: from its drop manifest, and for a segment where it starts."""

    format: str | None = None  # a FORMAT_ALIASES key; None: from the extension
    field_mapping: FieldMapping = field(default_factory=dict)
    first_line: int = 1  # number of the stream's first line within the whole file
    csv_header: str | None = None  # a segment after the first: the file's header line
    row_groups: tuple[int, int] | None = None  # Parquet segment: [start, stop) row groups
    first_row: int = 1


def data_extension(file: str) -> str:
    """The extension that names the format: ``a.jsonl.gz`` → ``.jsonl``."""
    name = posixpath.basename(file).lower()
    if name.endswith(".gz"):
        name = name.removesuffix(".gz")
    return posixpath.splitext(name)[1]


def format_of(file: str, declared: str | None = None) -> str | None:
    if declared:
        return FORMAT_ALIASES.get(declared.lower())
    return EXTENSIONS.get(data_extension(file))


def parse_file(file: str, body: bytes, options: ReadOptions | None = None) -> ParsedFile:
    """Split ``body`` (the bytes of S3 object ``file``) into entries and rejections."""
    import io

    parsed = parse_stream(file, io.BytesIO(body), options)
    return ParsedFile(parsed.file, parsed.unit, list(parsed.items), parsed.format)


def parse_stream(file: str, stream: IO[bytes], options: ReadOptions | None = None) -> ParsedFile:
    """Entries and rejections of ``stream`` (the content of S3 object ``file``), lazily."""
    options = options or ReadOptions()
    name = format_of(file, options.format)
    if name is None:
        shown = options.format or data_extension(file) or "(no extension)"
        supported = ", ".join(sorted(EXTENSIONS)) + " (each also as .gz)"
        detail = f"unsupported format {shown!r}; supported: {supported}"
        return ParsedFile(file, LINE, [reject(file, 0, "unsupported_format", detail, "")])
    reader = _READERS[name]
    return ParsedFile(file, FORMATS[name], _guarded(file, reader(file, stream, options)), name)


def _guarded(file: str, items: Iterator[Parsed]) -> Iterator[Parsed]:
    """A damaged compressed stream ends the file with one rejection for the rest of it."""
    try:
        yield from items
    except DamagedStreamError as exc:
        yield reject(file, exc.line, "damaged_file", str(exc), "")
    except DECOMPRESSION_ERRORS as exc:
        yield reject(file, 0, "damaged_file", f"the file cannot be read: {exc}", "")


def _lines(stream: IO[bytes], options: ReadOptions) -> Iterator[Line]:
    return numbered_lines(decompressed(buffered(stream)), options.first_line)


def _lookup(payload: Any, path: str) -> tuple[bool, Any]:
    """``payload[a][b]`` for the dotted path ``a.b`` (an exact key wins over a path)."""
    if isinstance(payload, dict) and path in payload:
        return True, payload[path]
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def apply_mapping(payload: dict[str, Any], mapping: FieldMapping) -> dict[str, Any]:
    """The payload with each canonical field taken from its mapped source field."""
    if not mapping:
        return payload
    mapped = {key: value for key, value in payload.items() if key not in mapping}
    for canonical, source in mapping.items():
        found, value = _lookup(payload, source)
        if found:
            mapped[canonical] = value
    return mapped


def _json_value(file: str, line: Line, unit: str = LINE) -> Any | Rejection:
    text = line.text
    if text is None:
        return reject(file, line.number, "invalid_encoding", encoding_problem(line), line.shown)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg} (column {exc.colno})"
        return reject(file, line.number, "invalid_json", detail, text, unit=unit)


def _record_payload(value: Any) -> dict[str, Any] | None:
    """A JSON value as a record: an object, or a bare transcript ``[{role, content}, ...]``."""
    if isinstance(value, dict):
        return value
    if _is_transcript(value):
        return {"messages": value}
    return None


def _is_transcript(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(turn, dict) and "role" in turn and "content" in turn for turn in value)
    )


def _read_jsonl(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
    for line in _lines(stream, options):
        if line.blank:
            continue  # blank lines separate nothing and are not records
        value = _json_value(file, line)
        if isinstance(value, Rejection):
            yield value
            continue
        payload = _record_payload(value)
        if payload is None:
            yield reject(
                file,
                line.number,
                "not_an_object",
                "expected a JSON object or a [{role, content}] transcript",
                line.shown,
            )
            continue
        yield Entry(line.number, apply_mapping(payload, options.field_mapping), line.shown)


def _read_json(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
    body = decompressed(buffered(stream)).read(MAX_JSON_DOCUMENT_BYTES + 1)
    if len(body) > MAX_JSON_DOCUMENT_BYTES:
        detail = (
            f"a JSON document over {MAX_JSON_DOCUMENT_BYTES // 2**20} MB is not read whole; "
            "drop large data as JSONL (one record per line)"
        )
        yield reject(file, 0, "too_large", detail, "")
        return
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body[: exc.start].count(b"\n") + 1
        detail = f"not valid UTF-8 (byte {exc.start}, line {line}); re-export the file as UTF-8"
        yield reject(file, 0, "invalid_encoding", detail, "")
        return
    del body
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        yield reject(file, 0, "invalid_json", detail, text)
        return
    if isinstance(value, dict) or _is_transcript(value):
        value = [value]  # one record: an object or a single transcript
    if not isinstance(value, list):
        detail = "expected a JSON array of record objects, a record object or a transcript"
        yield reject(file, 0, "invalid_json", detail, text)
        return
    for number, item in enumerate(value, start=1):
        raw = json.dumps(item, ensure_ascii=False)
        payload = _record_payload(item)
        if payload is None:
            yield reject(file, number, "not_an_object", "expected a JSON object", raw, unit=ITEM)
        else:
            yield Entry(number, apply_mapping(payload, options.field_mapping), raw)


def _csv_reader(delimiter: str) -> Callable[[str, IO[bytes], ReadOptions], Iterator[Parsed]]:
    def read(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
        return _read_delimited(file, stream, options, delimiter)

    return read


def _read_delimited(
    file: str, stream: IO[bytes], options: ReadOptions, delimiter: str
) -> Iterator[Parsed]:
    consumed: list[Line] = []

    def feed(lines: Iterator[Line]) -> Iterator[str]:
        for line in lines:
            consumed.append(line)
            yield line.shown + "\n"

    source = _lines(stream, options)
    if options.csv_header is not None:
        source = _chain(iter([Line(0, options.csv_header, b"")]), source)
    reader = csv.reader(feed(source), delimiter=delimiter)
    try:
        header = [name.strip().lower() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        first = consumed[0] if consumed else Line(options.first_line, "", b"")
        yield reject(file, first.number, "invalid_csv", f"unreadable header: {exc}", first.shown)
        return
    columns = _delimited_columns(header, options.field_mapping)
    consumed.clear()
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The reader cannot resynchronise after a broken quote: the rest is one rejection.
            rest = consumed + list(source)
            start = rest[0].number if rest else 0
            yield reject(file, start, "invalid_csv", str(exc), "\n".join(x.shown for x in rest))
            return
        record_lines, consumed[:] = list(consumed), []
        if not record_lines:
            continue
        start = record_lines[0].number
        raw = "\n".join(line.shown for line in record_lines)
        broken = next((line for line in record_lines if line.text is None), None)
        if broken is not None:
            yield reject(file, start, "invalid_encoding", encoding_problem(broken), raw)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if raw.count('"') % 2:
            # Only the end of the file stops a quoted field that is never closed.
            detail = "a quoted field is never closed; the rest of the file was read into it"
            yield reject(file, start, "invalid_csv", detail, raw)
            continue
        if len(row) > len(header):
            detail = f"row has {len(row)} fields but the header has {len(header)}"
            yield reject(file, start, "invalid_csv", detail, raw)
            continue
        if isinstance(columns, str):
            yield reject(file, start, "missing_field", columns, raw, field=_missing(columns))
            continue
        cells = dict(zip(header, row, strict=False))
        yield Entry(start, {name: cells[col] for name, col in columns if col in cells}, raw)


def _missing(detail: str) -> str:
    return detail.split("'")[1] if "'" in detail else "text"


def _chain(first: Iterator[Line], rest: Iterator[Line]) -> Iterator[Line]:
    yield from first
    yield from rest


def _delimited_columns(header: list[str], mapping: FieldMapping) -> list[tuple[str, str]] | str:
    """(canonical field, column) pairs to read, or the reason no row can be read."""
    if mapping:
        pairs = [(canonical, source.strip().lower()) for canonical, source in mapping.items()]
        absent = [(canonical, column) for canonical, column in pairs if column not in header]
        if absent:
            canonical, column = absent[0]
            return (
                f"'{canonical}' is mapped to column '{column}', which the header lacks "
                f"(header: {', '.join(header)})"
            )
        return pairs
    if "text" in header:
        return [("text", "text")]
    if "prompt" in header and "completion" in header:
        return [("prompt", "prompt"), ("completion", "completion")]
    return (
        "'text' missing; a CSV needs a 'text' column or 'prompt' and 'completion' columns, "
        f"or a field_mapping in the drop manifest (header: {', '.join(header)})"
    )


def _read_paragraphs(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
    paragraph: list[Line] = []
    for line in _chain(_lines(stream, options), iter([Line(-1, "", b"")])):
        if not line.blank:
            paragraph.append(line)
            continue
        if not paragraph:
            continue
        raw = "\n".join(x.shown for x in paragraph)
        broken = next((x for x in paragraph if x.text is None), None)
        if broken is not None:
            yield reject(
                file, paragraph[0].number, "invalid_encoding", encoding_problem(broken), raw
            )
        else:
            yield Entry(paragraph[0].number, {"text": raw}, raw)
        paragraph = []


def _read_logs(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
    for item in parse_log_lines(file, _lines(stream, options)):
        if isinstance(item, Entry) and options.field_mapping:
            item = Entry(item.line, apply_mapping(item.payload, options.field_mapping), item.raw)
        yield item


def _read_parquet(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        detail = (
            "Parquet needs pyarrow, which this deployment lacks (on AWS: the AWS SDK for "
            "pandas layer); convert the file to JSONL or CSV"
        )
        yield reject(file, 0, "unsupported_format", detail, "")
        return
    source = _seekable(stream)
    try:
        parquet = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        yield reject(file, 0, "invalid_parquet", f"not a readable Parquet file: {exc}", "")
        return
    start, stop = options.row_groups or (0, parquet.num_row_groups)
    group_first = options.first_row
    for group in range(start, stop):
        number = group_first
        group_end = group_first + parquet.metadata.row_group(group).num_rows
        try:
            batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[group])
            for batch in batches:
                for row in batch.to_pylist():
                    raw = json.dumps(row, ensure_ascii=False, default=str)
                    yield Entry(number, apply_mapping(row, options.field_mapping), raw)
                    number += 1
        except Exception as exc:  # a damaged row group spoils its rows, not the others
            detail = f"row group {group} is unreadable: {exc}"
            for row_number in range(number, group_end):
                yield reject(file, row_number, "invalid_parquet", detail, "", unit=ROW)
        group_first = group_end


def _seekable(stream: IO[bytes]) -> IO[bytes]:
    """Parquet reads its footer first: a seekable plain stream is read in place; a
    compressed or one-pass stream is copied to a spooled temporary file (memory up to
    SPOOL_BYTES, then disk)."""
    if stream.seekable():
        position = stream.tell()
        head = stream.read(2)
        stream.seek(position)
        if head != GZIP_MAGIC:
            return stream
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - returned open
    shutil.copyfileobj(decompressed(buffered(stream)), copy, 1024 * 1024)
    copy.seek(0)
    return copy


_READERS: dict[str, Callable[[str, IO[bytes], ReadOptions], Iterator[Parsed]]] = {
    "jsonl": _read_jsonl,
    "json": _read_json,
    "csv": _csv_reader(","),
    "tsv": _csv_reader("\t"),
    "text": _read_paragraphs,
    "log": _read_logs,
    "parquet": _read_parquet,
}
