"""Plain-text rendering of view dicts for people (scripts use --json)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float]) -> str:
    """A loss curve in one line of block characters."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_BARS[int((v - low) / span * (len(_BARS) - 1))] for v in values)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) for v in value):
            return sparkline([float(v) for v in value])
        return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as aligned columns (scalar fields only when no columns are given)."""
    if not rows:
        return "(none)"
    if columns is None:
        columns = [k for k, v in rows[0].items() if not isinstance(v, (Mapping, list, tuple))]
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def details(data: Mapping[str, Any], indent: str = "") -> str:
    """A nested dict as indented `key: value` lines; lists of dicts become tables."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{indent}{key}:")
            lines.append(details(value, indent + "  "))
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
            lines.append(f"{indent}{key}:")
            lines += [indent + "  " + line for line in table(value).splitlines()]
        else:
            lines.append(f"{indent}{key}: {cell(value)}")
    return "\n".join(lines)
