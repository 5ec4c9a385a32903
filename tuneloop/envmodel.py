"""Typed environment models for Lambda handlers.

A handler declares a frozen dataclass whose fields are its environment variables (field
``records_table`` is read from ``RECORDS_TABLE``). ``load_env`` reads and converts them on
every call, so a missing or malformed variable fails with a message naming it. The infra
tests compare these fields with the variables the CDK app sets on each function.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, TypeVar, get_type_hints

EnvT = TypeVar("EnvT")


class EnvError(ValueError):
    """An environment variable is missing or cannot be converted."""


def env_var_names(model: type[Any]) -> set[str]:
    """The environment variable names a model reads (upper-cased field names)."""
    return {field.name.upper() for field in dataclasses.fields(model)}


def _convert(name: str, raw: str, target: Any) -> Any:
    try:
        if target is bool:
            if raw.lower() in {"1", "true", "yes"}:
                return True
            if raw.lower() in {"0", "false", "no"}:
                return False
            raise ValueError("expected true/false")
        if target is int:
            return int(raw)
        if target is float:
            return float(raw)
        if target == tuple[str, ...]:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError as exc:
        raise EnvError(f"environment variable {name}={raw!r}: {exc}") from exc


def load_env(model: type[EnvT], environ: Mapping[str, str] | None = None) -> EnvT:
    """Build ``model`` from the environment; raise EnvError naming any bad variable."""
    source = os.environ if environ is None else environ
    hints = get_type_hints(model)
    values: dict[str, Any] = {}
    missing: list[str] = []
    for field in dataclasses.fields(model):  # type: ignore[arg-type]
        name = field.name.upper()
        if name not in source:
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                missing.append(name)
            continue
        values[field.name] = _convert(name, source[name], hints[field.name])
    if missing:
        raise EnvError(f"missing environment variables: {', '.join(sorted(missing))}")
    return model(**values)
