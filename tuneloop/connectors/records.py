"""Turn a source row or API record into the record written to the drop (field mapping)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Mapping
from typing import Any

_MISSING = object()


def get_path(value: Any, path: str) -> Any:
    """``value["a"]["b"]`` for ``"a.b"``; ``""`` is ``value`` itself; a missing key is None."""
    found = lookup(value, path)
    return None if found is _MISSING else found


def lookup(value: Any, path: str) -> Any:
    """Like :func:`get_path` but returns the module's ``_MISSING`` sentinel when absent."""
    current = value
    for part in path.split(".") if path else ():
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def is_missing(value: Any) -> bool:
    return value is _MISSING


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def map_fields(source: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """A record with ``fields`` (record field → source path); no mapping keeps ``source``."""
    if not fields:
        return dict(source)
    record: dict[str, Any] = {}
    for target, path in fields.items():
        value = get_path(source, path)
        if value is not None:
            _set_path(record, target, value)
    return record


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_jsonl(records: list[dict[str, Any]]) -> bytes:
    """One JSON object per line; database types (timestamps, decimals, bytes) as JSON."""
    lines = [
        json.dumps(record, ensure_ascii=False, default=_json_default, separators=(",", ":"))
        for record in records
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")
