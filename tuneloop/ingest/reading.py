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


@dataclass(frozen=True)
class Line:
    """One line of a file: its number, its text (None when not valid UTF-8), its bytes."""

    number: int
    text: str | None
    data: bytes

    @property
    def blank(self) -> bool:
        """Nothing but whitespace (Unicode whitespace, as ``str.strip`` sees it)."""
        return not (self.text.strip() if self.text is not None else self.data.strip())

    @property
    def shown(self) -> str:
        """The text, or the bytes with invalid sequences replaced (for messages only)."""
        return self.text if self.text is not None else self.data.decode("utf-8", "replace")


def numbered_lines(stream: IO[bytes], first_line: int = 1) -> Iterator[Line]:
    """Lines split at ``\\n`` only (no ``\\r`` or U+2028 splitting), without the line end.

    A UTF-8 byte order mark at the very start of the file is dropped (``first_line == 1``).
    """
    number = first_line
    source = iter(stream)
    while True:
        try:
            data = next(source)
        except StopIteration:
            return
        except DECOMPRESSION_ERRORS as exc:
            raise DamagedStreamError(
                number, f"the file cannot be read from line {number} on: {exc}"
            ) from exc
        if number == 1 and data.startswith(UTF8_BOM):
            data = data[len(UTF8_BOM) :]
        data = data.removesuffix(b"\n").removesuffix(b"\r")
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
