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
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from tuneloop.ingest.guard import unexpected
from tuneloop.ingest.logs import parse_log_lines
from tuneloop.ingest.model import ITEM, LINE, ROW, Entry, Rejection, kept_raw, reject, too_long
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
from tuneloop.ingest.settings import DEFAULT_SETTINGS

Parsed = Entry | Rejection
# canonical field ("text", "prompt", ...) -> source field, column or dotted JSON path
FieldMapping = Mapping[str, str]

# Whole JSON documents are parsed in memory; larger ones should be JSONL.
MAX_JSON_DOCUMENT_BYTES = 64 * 1024 * 1024
# Temporary copies of non-seekable Parquet streams stay in memory up to this size.
SPOOL_BYTES = 16 * 1024 * 1024
PARQUET_BATCH_ROWS = 1000
# Decoding a Parquet page holds about three times its uncompressed size, and pyarrow
# decodes a page whole, however few of its rows a batch takes. A row group up to this size
# (uncompressed, from the footer) is read as it is; a larger one through a stream in
# batches of about PARQUET_BATCH_BYTES, and not at all when its rows average over
# max_line_bytes: a cell over the limit is in it, and its page cannot be read in bounds.
PARQUET_GROUP_BYTES = 32 * 1024 * 1024
PARQUET_BATCH_BYTES = 8 * 1024 * 1024
# Read-ahead per column of a large row group (instead of its whole compressed chunk).
PARQUET_STREAM_BUFFER = 1024 * 1024

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
    # Larger lines and records are quarantined by size, never held whole (settings.py).
    max_line_bytes: int = DEFAULT_SETTINGS.max_line_bytes
    # Parquet row groups larger than this (uncompressed) are read in small batches or,
    # when their rows average over max_line_bytes, quarantined from the footer.
    parquet_group_bytes: int = PARQUET_GROUP_BYTES


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
    """A damaged compressed stream ends the file with one rejection for the rest of it;
    so does a reader's unexpected error (its records so far are kept)."""
    last = 0
    try:
        for item in items:
            last = max(last, item.line)
            yield item
    except DamagedStreamError as exc:
        yield reject(file, exc.line, "damaged_file", str(exc), "")
    except DECOMPRESSION_ERRORS as exc:
        yield reject(file, 0, "damaged_file", f"the file cannot be read: {exc}", "")
    except Exception as exc:  # a reader's bug must not lose the records already read
        yield unexpected(file, last + 1, "reading the file", exc, "")


def _lines(stream: IO[bytes], options: ReadOptions) -> Iterator[Line]:
    return numbered_lines(
        decompressed(buffered(stream)), options.first_line, options.max_line_bytes
    )


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


def loads_bounded(text: str) -> Any:
    """``json.loads``, with nesting too deep for the parser as ``JSONNestingError``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONNestingError(
            f"nested deeper than the JSON parser allows (about {sys.getrecursionlimit()} levels)"
        ) from None


class JSONNestingError(ValueError):
    """A JSON value nested deeper than the parser's recursion allows."""


def _json_value(file: str, line: Line, unit: str = LINE) -> Any | Rejection:
    text = line.text
    if text is None:
        detail = encoding_problem(line)
        return reject(file, line.number, "invalid_encoding", detail, kept_raw(line.shown))
    try:
        return loads_bounded(text)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg} (column {exc.colno})"
        return reject(file, line.number, "invalid_json", detail, kept_raw(text), unit=unit)
    except JSONNestingError as exc:
        return reject(file, line.number, "too_deep", str(exc), kept_raw(text), unit=unit)
    except ValueError as exc:  # e.g. an integer over Python's 4,300-digit conversion limit
        detail = f"invalid JSON: {exc}"
        return reject(file, line.number, "invalid_json", detail, kept_raw(text), unit=unit)


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
        try:
            item = _jsonl_item(file, line, options)
        except Exception as exc:  # one line's surprise must not end the file
            item = unexpected(file, line.number, "parsing", exc, kept_raw(line.shown))
        yield item


def _jsonl_item(file: str, line: Line, options: ReadOptions) -> Parsed:
    if line.oversized:
        return too_long(file, line.number, line.size, 1, options.max_line_bytes, line.shown)
    value = _json_value(file, line)
    if isinstance(value, Rejection):
        return value
    payload = _record_payload(value)
    raw = kept_raw(line.shown)
    if payload is None:
        detail = "expected a JSON object or a [{role, content}] transcript"
        return reject(file, line.number, "not_an_object", detail, raw)
    return Entry(line.number, apply_mapping(payload, options.field_mapping), raw, line.size)


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
        value = loads_bounded(text)
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        yield reject(file, 0, "invalid_json", detail, kept_raw(text))
        return
    except JSONNestingError as exc:  # the document is one value: the whole file
        yield reject(file, 0, "too_deep", str(exc), kept_raw(text))
        return
    except ValueError as exc:
        yield reject(file, 0, "invalid_json", f"invalid JSON: {exc}", kept_raw(text))
        return
    if isinstance(value, dict) or _is_transcript(value):
        value = [value]  # one record: an object or a single transcript
    if not isinstance(value, list):
        detail = "expected a JSON array of record objects, a record object or a transcript"
        yield reject(file, 0, "invalid_json", detail, kept_raw(text))
        return
    del text
    for number in range(1, len(value) + 1):
        # Each item is let go once read, so the document's objects shrink as it is read.
        item, value[number - 1] = value[number - 1], None
        try:
            yield _json_item(file, number, item, options)
        except Exception as exc:  # one item's surprise must not end the file
            yield unexpected(file, number, "parsing", exc, "", unit=ITEM)


def _json_item(file: str, number: int, item: Any, options: ReadOptions) -> Parsed:
    try:
        raw = json.dumps(item, ensure_ascii=False)
    except RecursionError:
        detail = (
            f"nested deeper than the JSON parser allows (about {sys.getrecursionlimit()} levels)"
        )
        return reject(file, number, "too_deep", detail, "", unit=ITEM)
    try:
        size = len(raw) if raw.isascii() else len(raw.encode("utf-8"))
    except UnicodeEncodeError:  # a \ud800-style escape: a lone surrogate, not text
        detail = "a JSON string escape encodes a lone UTF-16 surrogate, which is not text"
        return reject(file, number, "invalid_encoding", detail, "", unit=ITEM)
    if size > options.max_line_bytes:
        return too_long(file, number, size, 1, options.max_line_bytes, raw, unit=ITEM)
    payload = _record_payload(item)
    if payload is None:
        return reject(
            file, number, "not_an_object", "expected a JSON object", kept_raw(raw), unit=ITEM
        )
    return Entry(number, apply_mapping(payload, options.field_mapping), kept_raw(raw), size)


def _csv_reader(delimiter: str) -> Callable[[str, IO[bytes], ReadOptions], Iterator[Parsed]]:
    def read(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
        return _read_delimited(file, stream, options, delimiter)

    return read


@dataclass
class _Row:
    """The lines of one CSV/TSV record: up to where the quote characters so far are even."""

    lines: list[Line]
    size: int = 0
    count: int = 0  # lines, also those not kept
    too_long: bool = False
    closed: bool = True

    @property
    def start(self) -> int:
        return self.lines[0].number

    @property
    def raw(self) -> str:
        return "\n".join(line.shown for line in self.lines)


def _delimited_rows(lines: Iterator[Line], limit: int) -> Iterator[_Row]:
    """Group lines into records by quote parity (a quoted cell may span lines); a record
    over ``limit`` bytes keeps only its first line while the rest is read past."""
    row: _Row | None = None
    quotes = 0
    for line in lines:
        if row is None:
            row = _Row([line])
        elif not row.too_long:
            row.lines.append(line)
        row.size += line.size + (1 if row.count else 0)
        row.count += 1
        if line.oversized or row.size > limit:
            row.too_long, row.lines = True, row.lines[:1]
        quotes += line.quotes
        if quotes % 2 == 0:
            yield row
            row, quotes = None, 0
    if row is not None:
        row.closed = False
        yield row


def _read_delimited(
    file: str, stream: IO[bytes], options: ReadOptions, delimiter: str
) -> Iterator[Parsed]:
    limit = options.max_line_bytes
    # A cell may hold a whole record; the module's default cap (128 KB) is process-wide.
    if csv.field_size_limit() < limit:
        csv.field_size_limit(limit)
    source = _lines(stream, options)
    if options.csv_header is not None:
        header_line = options.csv_header
        source = _chain(iter([Line(0, header_line, header_line.encode())]), source)
    rows = _delimited_rows(source, limit)
    first = next(rows, None)
    if first is None:
        return
    problem = _unreadable(first, limit)
    parsed_header = [] if problem else _parse_cells(first, delimiter)
    if problem or isinstance(parsed_header, str) or len(parsed_header) > 1:
        detail = problem or (parsed_header if isinstance(parsed_header, str) else "several rows")
        yield reject(
            file, first.start, "invalid_csv", f"unreadable header: {detail}", kept_raw(first.raw)
        )
        return
    header = [name.strip().lower() for name in (parsed_header[0][1] if parsed_header else [])]
    columns = _delimited_columns(header, options.field_mapping)
    for row in rows:
        try:
            yield from _delimited_records(file, row, header, columns, delimiter, limit)
        except Exception as exc:  # one row's surprise must not end the file
            yield unexpected(file, row.start, "parsing", exc, kept_raw(row.raw))


def _unreadable(row: _Row, limit: int) -> str | None:
    if not row.closed:
        return "a quoted field is never closed; the rest of the file was read into it"
    if row.too_long:
        return f"{row.size:,} bytes over {row.count:,} lines; the limit is {limit:,}"
    return None


def _parse_cells(row: _Row, delimiter: str) -> list[tuple[int, list[str]]] | str:
    """(line offset within the row, cells) of each row the csv module reads, or why not."""
    reader = csv.reader((line.shown + "\n" for line in row.lines), delimiter=delimiter)
    found: list[tuple[int, list[str]]] = []
    try:
        before = 0
        for cells in reader:
            found.append((before, cells))
            before = reader.line_num
    except csv.Error as exc:
        return str(exc)
    return found


def _delimited_records(
    file: str,
    row: _Row,
    header: list[str],
    columns: list[tuple[str, str]] | str,
    delimiter: str,
    limit: int,
) -> Iterator[Parsed]:
    if row.too_long:
        yield too_long(file, row.start, row.size, row.count, limit, row.raw, what="row")
        return
    raw = row.raw
    if not row.closed:
        # Only the end of the file stops a quoted field that is never closed.
        detail = "a quoted field is never closed; the rest of the file was read into it"
        yield reject(file, row.start, "invalid_csv", detail, kept_raw(raw))
        return
    broken = next((line for line in row.lines if line.text is None), None)
    if broken is not None:
        yield reject(file, row.start, "invalid_encoding", encoding_problem(broken), kept_raw(raw))
        return
    parsed = _parse_cells(row, delimiter)
    if isinstance(parsed, str):
        yield reject(file, row.start, "invalid_csv", parsed, kept_raw(raw))
        return
    # Quotes inside unquoted cells can make one group hold several rows: each is a record.
    ends = [offset for offset, _ in parsed[1:]] + [len(row.lines)]
    for (offset, cells), end in zip(parsed, ends, strict=True):
        start = row.lines[offset].number
        lines = row.lines[offset:end]
        text = raw if len(parsed) == 1 else "\n".join(line.shown for line in lines)
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            detail = f"row has {len(cells)} fields but the header has {len(header)}"
            yield reject(file, start, "invalid_csv", detail, kept_raw(text))
            continue
        if isinstance(columns, str):
            yield reject(
                file, start, "missing_field", columns, kept_raw(text), field=_missing(columns)
            )
            continue
        named = dict(zip(header, cells, strict=False))
        payload = {name: named[col] for name, col in columns if col in named}
        size = sum(line.size + 1 for line in lines)
        yield Entry(start, payload, kept_raw(text), size)


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
    limit = options.max_line_bytes
    paragraph: list[Line] = []
    size = count = 0
    for line in _chain(_lines(stream, options), iter([Line(-1, "", b"")])):
        if not line.blank:
            size += line.size + (1 if count else 0)
            count += 1
            if not paragraph or (size <= limit and not paragraph[0].oversized):
                paragraph.append(line)
            if line.oversized or size > limit:
                del paragraph[1:]  # read past the rest; keep the start for the excerpt
            continue
        if not paragraph:
            continue
        try:
            yield _paragraph(file, paragraph, size, count, limit)
        except Exception as exc:  # one paragraph's surprise must not end the file
            yield unexpected(file, paragraph[0].number, "parsing", exc, "")
        paragraph, size, count = [], 0, 0


def _paragraph(file: str, paragraph: list[Line], size: int, count: int, limit: int) -> Parsed:
    raw = "\n".join(x.shown for x in paragraph)
    start = paragraph[0].number
    if size > limit or any(x.oversized for x in paragraph):
        return too_long(file, start, size, count, limit, raw, what="paragraph")
    broken = next((x for x in paragraph if x.text is None), None)
    if broken is not None:
        return reject(file, start, "invalid_encoding", encoding_problem(broken), kept_raw(raw))
    return Entry(start, {"text": raw}, kept_raw(raw), size)


def _read_logs(file: str, stream: IO[bytes], options: ReadOptions) -> Iterator[Parsed]:
    for item in parse_log_lines(file, _lines(stream, options), options.max_line_bytes):
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
    streaming: Any = None  # the same file without pre-buffering, for large row groups
    start, stop = options.row_groups or (0, parquet.num_row_groups)
    group_first = options.first_row
    for group in range(start, stop):
        plan = _group_plan(parquet.metadata.row_group(group), group, group_first, options)
        if isinstance(plan, _Unread):
            for number in range(group_first, group_first + plan.rows):
                yield reject(file, number, "line_too_long", plan.detail, "", unit=ROW)
        else:
            reader = parquet
            if plan.streamed:
                if streaming is None:
                    streaming = pq.ParquetFile(
                        source,
                        metadata=parquet.metadata,
                        pre_buffer=False,
                        buffer_size=PARQUET_STREAM_BUFFER,
                    )
                reader = streaming
            yield from _parquet_group(file, reader, group, group_first, plan, options)
        group_first += plan.rows


@dataclass(frozen=True)
class _Batches:
    """How a row group is read: in batches of ``batch_rows``, streamed when it is large."""

    rows: int
    batch_rows: int = PARQUET_BATCH_ROWS
    streamed: bool = False


@dataclass(frozen=True)
class _Unread:
    """A row group not read: its rows are quarantined by the size its footer gives."""

    rows: int
    detail: str


def _group_plan(meta: Any, group: int, first: int, options: ReadOptions) -> _Batches | _Unread:
    """Decide from the footer alone, before any page is decoded, how a row group is read."""
    rows = meta.num_rows
    columns = [meta.column(index) for index in range(meta.num_columns)]
    size = max(meta.total_byte_size, sum(c.total_uncompressed_size for c in columns))
    if rows <= 0 or size <= options.parquet_group_bytes:
        return _Batches(rows)
    limit = options.max_line_bytes
    if size > rows * limit:
        largest = max(columns, key=lambda c: c.total_uncompressed_size)
        where = f"column '{largest.path_in_schema}': {largest.total_uncompressed_size:,} bytes"
        if rows == 1:
            detail = (
                f"row is about {size:,} bytes ({where}, uncompressed, from the file's "
                f"footer); the limit is {limit:,} (max_line_bytes); it is not read"
            )
        else:
            detail = (
                f"row group {group} (rows {first:,} to {first + rows - 1:,}) is {size:,} "
                f"bytes uncompressed ({where}, from the file's footer), {size // rows:,} "
                f"a row on average; the limit is {limit:,} a row (max_line_bytes). It is "
                "not read: which of its rows are too long cannot be told without decoding "
                "them, so all are quarantined; write large values in row groups of their "
                "own (pyarrow: row_group_size)"
            )
        return _Unread(rows, detail)
    batch_rows = max(1, min(PARQUET_BATCH_ROWS, PARQUET_BATCH_BYTES * rows // size))
    return _Batches(rows, batch_rows, streamed=True)


def _parquet_group(
    file: str, reader: Any, group: int, first: int, plan: _Batches, options: ReadOptions
) -> Iterator[Parsed]:
    number = first
    try:
        batches = reader.iter_batches(batch_size=plan.batch_rows, row_groups=[group])
        for batch in batches:
            sizes = _row_sizes(batch)
            # Rows become Python objects a batch at a time, or one by one when a batch
            # holds a row too large to copy.
            whole = max(sizes, default=0) <= options.max_line_bytes
            rows = batch.to_pylist() if whole else None
            for index in range(batch.num_rows):
                try:
                    row = None
                    if sizes[index] <= options.max_line_bytes:
                        row = rows[index] if rows is not None else _row_of(batch, index)
                    yield _parquet_row(file, number, row, sizes[index], options)
                except Exception as exc:  # one row's surprise must not end the file
                    yield unexpected(file, number, "parsing", exc, "", unit=ROW)
                number += 1
            del batch
    except Exception as exc:  # a damaged row group spoils its rows, not the others
        detail = f"row group {group} is unreadable: {exc}"
        for row_number in range(number, first + plan.rows):
            yield reject(file, row_number, "invalid_parquet", detail, "", unit=ROW)


def _row_sizes(batch: Any) -> list[int]:
    """Bytes of each row's string and binary cells, read from Arrow without copying them
    into Python: a huge cell is quarantined by its size, never turned into a str."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = pa.array([0] * batch.num_rows, pa.int64())
    for column in batch.columns:
        kind = column.type
        if (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind)
        ):
            lengths = pc.fill_null(pc.binary_length(column), 0).cast(pa.int64())
            total = pc.add(total, lengths)
    return [int(size) for size in total.to_pylist()]


def _row_of(batch: Any, index: int) -> dict[str, Any]:
    row: dict[str, Any] = batch.slice(index, 1).to_pylist()[0]
    return row


def _parquet_row(
    file: str, number: int, row: dict[str, Any] | None, size: int, options: ReadOptions
) -> Parsed:
    if row is None or size > options.max_line_bytes:
        return too_long(file, number, size, 1, options.max_line_bytes, "", unit=ROW)
    raw = json.dumps(row, ensure_ascii=False, default=str)
    size = len(raw) if raw.isascii() else len(raw.encode("utf-8"))
    if size > options.max_line_bytes:
        return too_long(file, number, size, 1, options.max_line_bytes, raw, unit=ROW)
    return Entry(number, apply_mapping(row, options.field_mapping), kept_raw(raw), size)


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
