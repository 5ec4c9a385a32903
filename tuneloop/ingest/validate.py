"""Turn a parsed entry into normalized content, or a rejection naming file, line and field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tuneloop.ingest.model import (
    LINE,
    Candidate,
    Content,
    Entry,
    Message,
    Rejection,
    reject,
)
from tuneloop.ingest.normalize import normalize_text

ROLES = frozenset({"system", "user", "assistant"})
# A record's upper bound (memory per record). Bodies too large for a DynamoDB item (400 KB)
# are stored in the curated bucket with a pointer on the item (records.py).
MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_METADATA_FIELDS = 20
MAX_METADATA_CHARS = 200

# fail(reason, detail, field) -> the rejection for the entry being validated
Fail = Callable[[str, str, str | None], Rejection]


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def validate_entry(
    file: str, entry: Entry, *, text_field: str = "text", unit: str = LINE
) -> Candidate | Rejection:
    """Pick the training content out of ``entry.payload`` and normalize it.

    Accepted shapes: ``{text_field: str}``, ``{"messages": [{"role", "content"}, ...]}``
    and ``{"prompt": str, "completion": str}`` (becomes a user/assistant exchange).
    """
    payload = entry.payload

    def fail(reason: str, detail: str, field: str | None) -> Rejection:
        return reject(file, entry.line, reason, detail, entry.raw, field=field, unit=unit)

    content: Content | Rejection
    if "messages" in payload:
        content = _messages(payload["messages"], fail)
    elif text_field in payload:
        content = _text(payload[text_field], text_field, fail)
    elif "prompt" in payload or "completion" in payload:
        content = _prompt_completion(payload, fail)
    else:
        return fail(
            "missing_field",
            f"missing; a record needs '{text_field}' (string), 'messages' (array) "
            "or 'prompt' and 'completion' (strings)",
            text_field,
        )
    if isinstance(content, Rejection):
        return content
    try:
        size = len(content.canonical().encode("utf-8"))
    except UnicodeEncodeError as exc:
        # A JSON "\ud800" escape decodes to a lone surrogate, which no store can hold.
        detail = f"holds a lone surrogate at character {exc.start}, which UTF-8 cannot encode"
        return fail("invalid_encoding", detail, None)
    if size > MAX_RECORD_BYTES:
        return fail(
            "too_large",
            f"record is {size} bytes after normalization; the limit is {MAX_RECORD_BYTES}",
            None,
        )
    return Candidate(line=entry.line, content=content, metadata=_metadata(payload))


def _metadata(payload: dict[str, Any]) -> dict[str, str]:
    """String metadata the parser attached (log level, timestamp, logger), bounded."""
    value = payload.get("metadata")
    if not isinstance(value, dict):
        return {}
    return {
        _storable(str(key)[:MAX_METADATA_CHARS]): _storable(str(item)[:MAX_METADATA_CHARS])
        for key, item in list(value.items())[:MAX_METADATA_FIELDS]
        if item is not None
    }


def _storable(text: str) -> str:
    """The text with lone surrogates replaced: metadata is kept, not judged."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _text(value: Any, field: str, fail: Fail) -> Content | Rejection:
    if not isinstance(value, str):
        return fail("invalid_field", f"must be a string, got {_type_name(value)}", field)
    text = normalize_text(value)
    if not text:
        return fail("empty_text", "is empty after normalization", field)
    return Content(text=text)


def _prompt_completion(payload: dict[str, Any], fail: Fail) -> Content | Rejection:
    turns: list[Message] = []
    for field, role in (("prompt", "user"), ("completion", "assistant")):
        if field not in payload:
            return fail("missing_field", "missing; 'prompt' and 'completion' go together", field)
        checked = _text(payload[field], field, fail)
        if isinstance(checked, Rejection):
            return checked
        turns.append(Message(role=role, content=checked.text or ""))
    return Content(messages=tuple(turns))


def _messages(value: Any, fail: Fail) -> Content | Rejection:
    if not isinstance(value, list) or not value:
        return fail("invalid_field", "must be a non-empty array of {role, content}", "messages")
    turns: list[Message] = []
    for index, message in enumerate(value):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            return fail("invalid_field", f"must be an object, got {_type_name(message)}", field)
        for key in ("role", "content"):
            if key not in message:
                return fail("missing_field", "missing", f"{field}.{key}")
        role = message["role"]
        if not isinstance(role, str) or role.strip().lower() not in ROLES:
            return fail(
                "invalid_field",
                f"must be one of {', '.join(sorted(ROLES))}, got {role!r}",
                f"{field}.role",
            )
        checked = _text(message["content"], f"{field}.content", fail)
        if isinstance(checked, Rejection):
            return checked
        turns.append(Message(role=role.strip().lower(), content=checked.text or ""))
    return Content(messages=tuple(turns))
