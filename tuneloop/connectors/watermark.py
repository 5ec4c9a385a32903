"""Watermark values that survive a round trip through DynamoDB with their type.

A SQL watermark may be an integer, a decimal, a timestamp or a string; it goes back into
the next query as a parameter of the same type (a timestamp compared with a string is not
what the database would do with a timestamp). So it is stored as ``{"type", "value"}``.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from typing import Any


class WatermarkError(ValueError):
    """A watermark value has a type the connector cannot store or compare."""


def encode_value(value: Any) -> dict[str, str]:
    if isinstance(value, bool):
        return {"type": "bool", "value": "true" if value else "false"}
    if isinstance(value, int):
        return {"type": "int", "value": str(value)}
    if isinstance(value, float):
        return {"type": "float", "value": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, str):
        return {"type": "str", "value": value}
    raise WatermarkError(
        f"cannot use a {type(value).__name__} value ({value!r}) as a watermark; "
        "use a number, date, timestamp or text column/field"
    )


def decode_value(stored: Any) -> Any:
    if not isinstance(stored, dict) or "type" not in stored or "value" not in stored:
        raise WatermarkError(f"stored watermark {stored!r} is not {{'type', 'value'}}")
    kind, text = str(stored["type"]), str(stored["value"])
    decoders: dict[str, Any] = {
        "bool": lambda s: s == "true",
        "int": int,
        "float": float,
        "decimal": decimal.Decimal,
        "datetime": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "str": str,
    }
    if kind not in decoders:
        raise WatermarkError(f"stored watermark has unknown type {kind!r}")
    return decoders[kind](text)


@dataclass(frozen=True)
class Position:
    """Where the last pull stopped: the watermark and, for ties, the key of the last row."""

    watermark: Any
    key: Any = None

    def is_after(self, watermark: Any, key: Any) -> bool:
        """Whether a row at (``watermark``, ``key``) comes after this position."""
        try:
            if watermark != self.watermark:
                return bool(watermark > self.watermark)
            return self.key is None or bool(key > self.key)
        except TypeError as exc:
            raise WatermarkError(
                f"cannot compare watermark {watermark!r} with the stored {self.watermark!r}: {exc}"
            ) from exc
