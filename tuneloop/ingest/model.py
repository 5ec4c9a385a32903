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

# Raw text kept in a quarantine entry: enough to find and fix the record, bounded in size.
MAX_RAW_CHARS = 20_000


@dataclass(frozen=True)
class Entry:
    """One record as read from a drop file, before validation."""

    line: int
    payload: dict[str, Any]
    raw: str


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
