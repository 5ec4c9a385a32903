"""The values that flow through ingestion: entries, rejections, normalized content."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

# The unit a location refers to: JSON arrays count items, Parquet rows, the rest lines.
LINE = "line"
ITEM = "item"
ROW = "row"

# Raw text a quarantine entry may keep (the setting quarantine_excerpt_chars is at most
# this): enough to find and fix the record, bounded in size.
MAX_RAW_CHARS = 20_000
# Raw text kept beyond that until redaction has run, so that personal data straddling
# the excerpt's end is still recognised whole before the excerpt is cut.
REDACTION_MARGIN_CHARS = 256


def kept_raw(raw: str) -> str:
    """What an entry or rejection holds of its raw text: never the whole of a huge line."""
    return raw[: MAX_RAW_CHARS + REDACTION_MARGIN_CHARS]


@dataclass(frozen=True)
class Entry:
    """One record as read from a drop file, before validation.

    ``raw`` is the start of its source text (``kept_raw``), for the quarantine; ``size``
    the bytes it was read from, which bound a chunk's memory.
    """

    line: int
    payload: dict[str, Any]
    raw: str
    size: int = 0


@dataclass(frozen=True)
class Rejection:
    """A quarantined record (or a whole file, line 0): where it was, and why."""

    file: str
    line: int
    reason: str
    field: str | None
    message: str
    raw: str

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "reason": self.reason,
            "field": self.field,
            "message": self.message,
            "raw": self.raw[:MAX_RAW_CHARS],
        }


def describe(
    file: str, line: int, detail: str, *, field: str | None = None, unit: str = LINE
) -> str:
    """``<file>, line 3, field 'text': <detail>`` — the form every rejection message takes."""
    where = file if line <= 0 else f"{file}, {unit} {line}"
    if field:
        where += f", field '{field}'"
    return f"{where}: {detail}"


def reject(
    file: str,
    line: int,
    reason: str,
    detail: str,
    raw: str,
    *,
    field: str | None = None,
    unit: str = LINE,
) -> Rejection:
    return Rejection(
        file=file,
        line=line,
        reason=reason,
        field=field,
        message=describe(file, line, detail, field=field, unit=unit),
        raw=raw,
    )


def too_long(
    file: str,
    number: int,
    size: int,
    lines: int,
    limit: int,
    raw: str,
    *,
    unit: str = LINE,
    what: str = "record",
) -> Rejection:
    """A line (``line_too_long``), or a record over several lines (``record_too_long``),
    larger than the setting ``max_line_bytes``; quarantined by its size, never held whole."""
    if lines <= 1:
        detail = f"{unit} is {size:,} bytes; the limit is {limit:,} (max_line_bytes)"
        return reject(file, number, "line_too_long", detail, kept_raw(raw), unit=unit)
    detail = (
        f"{what} is {size:,} bytes over {lines:,} lines; the limit is {limit:,} (max_line_bytes)"
    )
    return reject(file, number, "record_too_long", detail, kept_raw(raw), unit=unit)


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Content:
    """Normalized training content: plain text or a chat transcript, never both."""

    text: str | None = None
    messages: tuple[Message, ...] | None = None

    def canonical(self) -> str:
        """The exact string the dedup key is computed from."""
        if self.text is not None:
            return self.text
        return messages_json(self.messages or ())

    @cached_property
    def record_id(self) -> str:
        # Cached: the id is read at every dedup step and a chat's canonical form is JSON.
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()

    def plain_text(self) -> str:
        """What quality filters and near-duplicate detection read: the text, or the turns'
        contents one per line."""
        if self.text is not None:
            return self.text
        return "\n".join(m.content for m in self.messages or ())

    def training_line(self) -> dict[str, Any]:
        """The object the training set holds for this record."""
        if self.text is not None:
            return {"text": self.text}
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages or ()]}


def messages_json(messages: tuple[Message, ...]) -> str:
    """Canonical JSON of a transcript: stable key order, compact, UTF-8."""
    return json.dumps(
        [{"content": m.content, "role": m.role} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Candidate:
    """A record that passed validation, ready to be stored.

    Processing fills in the rest: ``redactions`` (placeholders per type), ``features``
    (tokens, language, tags) and ``minhash`` (the near-duplicate signature, as bytes).
    ``metadata`` holds what the source said about the record besides its content (a log
    line's level, timestamp and logger), redacted like the content.
    """

    line: int
    content: Content
    metadata: dict[str, str] = field(default_factory=dict, compare=False)
    redactions: dict[str, int] = field(default_factory=dict, compare=False)
    features: dict[str, Any] = field(default_factory=dict, compare=False)
    minhash: bytes | None = field(default=None, compare=False)

    @property
    def record_id(self) -> str:
        return self.content.record_id
