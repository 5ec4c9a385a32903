"""Byte streams of drop files: gzip detection, numbered lines, S3 bodies without buffering.

Everything here reads incrementally, so a file's size never decides the memory used.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# Read-ahead of the buffered S3 body: large enough that the per-call overhead vanishes.
STREAM_BUFFER_BYTES = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _RawStream(io.RawIOBase):
    """Adapts anything with ``read(n)`` (a botocore ``StreamingBody``) to ``io.RawIOBase``."""

    def __init__(self, source: Readable) -> None:
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        view[: len(data)] = data
        return len(data)


def buffered(source: Readable) -> io.BufferedReader:
    """A buffered binary stream over ``source``; it supports ``peek`` and line iteration."""
    if isinstance(source, io.BufferedReader):
        return source
    return io.BufferedReader(_RawStream(source), STREAM_BUFFER_BYTES)


def is_gzip(stream: io.BufferedReader) -> bool:
    return stream.peek(2)[:2] == GZIP_MAGIC


def decompressed(stream: io.BufferedReader) -> io.BufferedReader:
    """The stream itself, or its decompressed content when it starts with the gzip magic."""
    if not is_gzip(stream):
        return stream
    return io.BufferedReader(gzip.GzipFile(fileobj=stream, mode="rb"), STREAM_BUFFER_BYTES)


# What a damaged compressed stream raises part-way through.
DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error)


class DamagedStreamError(ValueError):
    """The stream cannot be read past ``line`` (a truncated or corrupt gzip file)."""

    def __init__(self, line: int, detail: str) -> None:
        super().__init__(detail)
        self.line = line


# A line longer than the limit is read on in pieces of this size and discarded.
DISCARD_PIECE_BYTES = 1024 * 1024
# Bytes kept of a line longer than the limit: the start of its quarantine excerpt.
KEPT_OF_LONG_LINE = 4096


@dataclass(frozen=True)
class RawLine:
    """One line as read, line end included; a line longer than the read limit is not kept
    whole: ``data`` holds its first bytes, ``length`` and ``quotes`` describe all of it."""

    data: bytes
    length: int
    cut_quotes: int = 0  # '"' characters in the whole line, when it was cut
    cut_ending: int = 0  # bytes of its line end ("\n": 1, "\r\n": 2), when it was cut

    @property
    def whole(self) -> bool:
        return len(self.data) == self.length

    @property
    def quotes(self) -> int:
        """Quote characters in the line (CSV/TSV keep their parity across a cut line)."""
        return self.data.count(b'"') if self.whole else self.cut_quotes


def raw_lines(stream: IO[bytes], max_line_bytes: int | None = None) -> Iterator[RawLine]:
    """The stream's lines, never holding more than about ``max_line_bytes`` of one: a
    longer line is read on in bounded pieces up to its newline and discarded."""
    limit = -1 if max_line_bytes is None else max_line_bytes + 2  # room for "\r\n"
    while True:
        data = stream.readline(limit)
        if not data:
            return
        if limit < 0 or len(data) < limit or data.endswith(b"\n"):
            yield RawLine(data, len(data))
            continue
        length, quotes, head = len(data), data.count(b'"'), data[:KEPT_OF_LONG_LINE]
        tail, ending = data[-1:], 0
        del data
        while piece := stream.readline(DISCARD_PIECE_BYTES):
            length += len(piece)
            quotes += piece.count(b'"')
            if piece.endswith(b"\n"):
                ending = 2 if (tail + piece).endswith(b"\r\n") else 1
                break
            tail = piece[-1:]
        yield RawLine(head, length, quotes, ending)


@dataclass(frozen=True)
class Line:
    """One line of a file: its number, its text (None when not valid UTF-8), its bytes.

    A line over the read limit has ``cut_length`` (its size without the line end) and
    only its first bytes in ``data``; its ``text`` is None and it must not be parsed.
    """

    number: int
    text: str | None
    data: bytes
    cut_length: int | None = None
    cut_quotes: int = 0

    @property
    def oversized(self) -> bool:
        return self.cut_length is not None

    @property
    def size(self) -> int:
        """Bytes of the whole line, without its line end."""
        return len(self.data) if self.cut_length is None else self.cut_length

    @property
    def quotes(self) -> int:
        return self.data.count(b'"') if self.cut_length is None else self.cut_quotes

    @property
    def blank(self) -> bool:
        """Nothing but whitespace (Unicode whitespace, as ``str.strip`` sees it)."""
        if self.oversized:
            return False
        return not (self.text.strip() if self.text is not None else self.data.strip())

    @property
    def shown(self) -> str:
        """The text, or the bytes with invalid sequences replaced (for messages only)."""
        return self.text if self.text is not None else self.data.decode("utf-8", "replace")


def numbered_lines(
    stream: IO[bytes], first_line: int = 1, max_line_bytes: int | None = None
) -> Iterator[Line]:
    """Lines split at ``\\n`` only (no ``\\r`` or U+2028 splitting), without the line end.

    A UTF-8 byte order mark at the very start of the file is dropped (``first_line == 1``).
    A line over ``max_line_bytes`` comes out ``oversized``: never held whole, not decoded.
    """
    number = first_line
    source = raw_lines(stream, max_line_bytes)
    while True:
        try:
            raw = next(source)
        except StopIteration:
            return
        except DECOMPRESSION_ERRORS as exc:
            raise DamagedStreamError(
                number, f"the file cannot be read from line {number} on: {exc}"
            ) from exc
        data, bom = raw.data, 0
        if number == 1 and data.startswith(UTF8_BOM):
            data, bom = data[len(UTF8_BOM) :], len(UTF8_BOM)
        if not raw.whole:
            length = raw.length - raw.cut_ending - bom
            yield Line(number, None, data, length, raw.cut_quotes)
            number += 1
            continue
        data = data.removesuffix(b"\n").removesuffix(b"\r")
        if max_line_bytes is not None and len(data) > max_line_bytes:
            yield Line(number, None, data[:KEPT_OF_LONG_LINE], len(data), data.count(b'"'))
            number += 1
            continue
        try:
            text: str | None = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        yield Line(number, text, data)
        number += 1


def encoding_problem(line: Line) -> str:
    """The rejection detail of a line that is not UTF-8."""
    try:
        line.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"not valid UTF-8 (byte {exc.start} of line {line.number}); re-export the file as UTF-8"
        )
    return ""
