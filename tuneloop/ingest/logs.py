"""Application log files: one record per log entry, its message as the text.

Recognised per line (the first that matches wins): JSON objects (``message``/``msg``…,
``level``, ``timestamp``, ``logger``), syslog RFC 5424 and RFC 3164, the Apache/Nginx
combined access log, ``<ISO timestamp> LEVEL logger: message``, and Python logging's
default ``LEVEL:logger:message`` and ``<asctime> - logger - LEVEL - message``.

A line that starts with whitespace, or a ``Traceback`` line, continues the entry above it
(stack traces stay with their message). Any other line no format matches is quarantined
with the reason ``unparseable_log_line``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tuneloop.ingest.guard import unexpected
from tuneloop.ingest.model import Entry, Rejection, kept_raw, reject, too_long
from tuneloop.ingest.reading import Line, encoding_problem

MESSAGE_KEYS = ("message", "msg", "text", "log", "@message", "event")
LEVEL_KEYS = ("level", "severity", "levelname", "lvl", "log.level")
TIMESTAMP_KEYS = ("timestamp", "time", "ts", "@timestamp", "asctime", "datetime")
LOGGER_KEYS = ("logger", "logger_name", "name", "module", "component")
SYSLOG_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
UNRECOGNISED = (
    "not a recognised log line (JSON, syslog RFC 3164/5424, combined access log, "
    "'<timestamp> LEVEL logger: message', Python logging)"
)

_LEVEL = r"TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|CRITICAL|FATAL|SEVERE"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_SD_ELEMENT = r"\[(?:[^\]\\]|\\.)*\]"
_RFC5424 = re.compile(
    rf"^<(\d{{1,3}})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:{_SD_ELEMENT})+)(?: (.*))?$"
)
_RFC3164 = re.compile(
    r"^(?:<(\d{1,3})>)?([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([^:\[\s]+)(?:\[\d+\])?: ?(.*)$"
)
_COMBINED = re.compile(
    rf"^\S+ \S+ \S+ \[([^\]]+)\] {_QUOTED} (\d{{3}}) (?:\d+|-)(?: {_QUOTED} {_QUOTED})?.*$"
)
_ISO_LEVEL = re.compile(
    r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+"
    rf"\[?({_LEVEL})\]?\s+([^\s:]+):\s?(.*)$",
    re.IGNORECASE,
)
_PYTHON_DEFAULT = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL):([^:]*):(.*)$")
_PYTHON_ASCTIME = re.compile(
    rf"^(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}}) - (\S+) - ({_LEVEL}) - (.*)$"
)
_CONTINUATION = re.compile(r"^(?:\s|Traceback \(most recent call last\))")


@dataclass
class LogEntry:
    message: str
    metadata: dict[str, str] = field(default_factory=dict)


def _first(record: dict[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if key in record and record[key] is not None:
            return record[key]
    return None


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _json_line(text: str) -> LogEntry | str | None:
    """A JSON log entry, the reason a JSON-looking line is not one, or None (not JSON)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return "invalid JSON: nested deeper than the JSON parser allows"
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        return f"invalid JSON: {exc}"
    if not isinstance(record, dict):
        return None
    message = _first(record, MESSAGE_KEYS)
    if message is None:
        return f"a JSON log line needs a message field ({', '.join(MESSAGE_KEYS)})"
    metadata = {
        name: _as_text(value)
        for name, keys in (
            ("level", LEVEL_KEYS),
            ("timestamp", TIMESTAMP_KEYS),
            ("logger", LOGGER_KEYS),
        )
        if (value := _first(record, keys)) is not None
    }
    return LogEntry(_as_text(message), {**metadata, "log_format": "json"})


def _rfc5424(match: re.Match[str]) -> LogEntry:
    severity = SYSLOG_SEVERITIES[int(match[1]) % 8]
    metadata = {"level": severity, "timestamp": match[2], "logger": match[4]}
    return LogEntry(match[8] or "", {**metadata, "log_format": "rfc5424"})


def _rfc3164(match: re.Match[str]) -> LogEntry:
    metadata = {"timestamp": match[2], "logger": match[4], "log_format": "rfc3164"}
    if match[1] is not None:
        metadata["level"] = SYSLOG_SEVERITIES[int(match[1]) % 8]
    return LogEntry(match[5], metadata)


def _combined(match: re.Match[str]) -> LogEntry:
    # The whole request line is the text (redaction removes client addresses later); the
    # client address and user are not copied into metadata, which is not redacted twice.
    status = int(match[3])
    level = "error" if status >= 500 else "warning" if status >= 400 else "info"
    message = f'"{match[2]}" {match[3]}'
    if match[5]:
        message += f' "{match[5]}"'
    metadata = {"timestamp": match[1], "level": level, "status": match[3]}
    return LogEntry(message, {**metadata, "logger": "access", "log_format": "combined"})


def _iso_level(match: re.Match[str]) -> LogEntry:
    metadata = {"timestamp": match[1], "level": match[2].upper(), "logger": match[3]}
    return LogEntry(match[4], {**metadata, "log_format": "iso"})


def _python_default(match: re.Match[str]) -> LogEntry:
    metadata = {"level": match[1], "logger": match[2], "log_format": "python"}
    return LogEntry(match[3], metadata)


def _python_asctime(match: re.Match[str]) -> LogEntry:
    metadata = {"timestamp": match[1], "logger": match[2], "level": match[3].upper()}
    return LogEntry(match[4], {**metadata, "log_format": "python"})


_LINE_FORMATS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], LogEntry]], ...] = (
    (_RFC5424, _rfc5424),
    (_RFC3164, _rfc3164),
    (_COMBINED, _combined),
    (_ISO_LEVEL, _iso_level),
    (_PYTHON_ASCTIME, _python_asctime),
    (_PYTHON_DEFAULT, _python_default),
)


def parse_log_line(text: str) -> LogEntry | str:
    """The entry one line holds, or why it is not a log line."""
    found = _json_line(text)
    if found is not None:
        return found
    for pattern, build in _LINE_FORMATS:
        match = pattern.match(text)
        if match:
            return build(match)
    return UNRECOGNISED


def parse_log_lines(
    file: str, lines: Iterable[Line], max_entry_bytes: int | None = None
) -> Iterator[Entry | Rejection]:
    """Entries of a log file, each with the continuation lines that follow it.

    An entry (a line, or a line with its continuation lines) over ``max_entry_bytes`` is
    quarantined by its size; its continuation lines are read past, not kept.
    """
    limit = max_entry_bytes if max_entry_bytes is not None else sys.maxsize
    pending: _Pending | None = None

    def emit() -> Entry | Rejection:
        assert pending is not None
        start = pending.start
        if pending.size > limit:
            return too_long(
                file,
                start.number,
                pending.size,
                pending.count,
                limit,
                start.shown,
                what="log entry",
            )
        text = "\n".join([pending.entry.message, *pending.more])
        raw = kept_raw("\n".join([start.shown, *pending.more]))
        return Entry(
            start.number, {"text": text, "metadata": pending.entry.metadata}, raw, pending.size
        )

    for line in lines:
        if line.blank:
            continue
        if line.oversized:
            head = line.shown
            if pending is not None and _CONTINUATION.match(head):
                pending.add(line)
                continue
            if pending is not None:
                yield emit()
                pending = None
            yield too_long(file, line.number, line.size, 1, limit, head)
            continue
        if line.text is None:
            if pending is not None:
                yield emit()
                pending = None
            detail = encoding_problem(line)
            yield reject(file, line.number, "invalid_encoding", detail, kept_raw(line.shown))
            continue
        if pending is not None and _CONTINUATION.match(line.text):
            pending.add(line)
            continue
        parsed: LogEntry | str | Rejection
        try:
            parsed = parse_log_line(line.text)
        except Exception as exc:  # one line's surprise must not end the file
            parsed = unexpected(file, line.number, "parsing", exc, kept_raw(line.text))
        if pending is not None:
            yield emit()
            pending = None
        if isinstance(parsed, Rejection):
            yield parsed
        elif isinstance(parsed, str):
            yield reject(file, line.number, "unparseable_log_line", parsed, kept_raw(line.text))
        else:
            pending = _Pending(line, parsed, size=line.size, limit=limit)
    if pending is not None:
        yield emit()


@dataclass
class _Pending:
    """A log entry being read: its first line, what it parsed to, its continuation lines."""

    start: Line
    entry: LogEntry
    more: list[str] = field(default_factory=list)
    size: int = 0
    count: int = 1
    limit: int = sys.maxsize

    def add(self, line: Line) -> None:
        self.size += 1 + line.size
        self.count += 1
        if self.size > self.limit:  # also every oversized line: its size is over the limit
            self.more.clear()  # read past the rest; only the size is kept
        else:
            self.more.append(line.text or "")
