"""Personal data redaction: typed placeholders (``<EMAIL>``), counts per type.

``redact(text, redactors)`` replaces what the redactors find; ``REGISTRY`` names every
built-in redactor so a deployment can choose (``redactors_named(["email", "ipv4"])``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tuneloop.ingest.redaction.base import Finding, Redacted, Redactor, find_all, redact
from tuneloop.ingest.redaction.comprehend import ComprehendRedactor
from tuneloop.ingest.redaction.patterns import PatternRedactor, default_redactors

REGISTRY: dict[str, Redactor] = {redactor.name: redactor for redactor in default_redactors()}


def register(redactor: Redactor) -> None:
    """Make a redactor available by name (e.g. a company's employee-id pattern)."""
    REGISTRY[redactor.name] = redactor


def redactors_named(names: Iterable[str]) -> list[Redactor]:
    chosen: list[Redactor] = []
    for name in names:
        if name not in REGISTRY:
            raise KeyError(f"unknown redactor {name!r}; registered: {', '.join(sorted(REGISTRY))}")
        chosen.append(REGISTRY[name])
    return chosen


def all_redactors() -> list[Redactor]:
    return list(REGISTRY.values())


__all__ = [
    "REGISTRY",
    "ComprehendRedactor",
    "Finding",
    "PatternRedactor",
    "Redacted",
    "Redactor",
    "all_redactors",
    "find_all",
    "redact",
    "redactors_named",
    "register",
]
