"""Personal data redaction: typed placeholders (``<EMAIL>``), counts per type.

``redact(text, redactors)`` replaces what the redactors find; ``REGISTRY`` names every
built-in redactor so a deployment can choose (``redactors_named(["email", "ipv4"])``).
``OPTIONAL`` names those a deployment must opt into (they call a service per text), such as
``"comprehend"``: Amazon Comprehend ``DetectPiiEntities`` for names and addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tuneloop.ingest.redaction.base import Finding, Redacted, Redactor, find_all, redact
from tuneloop.ingest.redaction.comprehend import ComprehendRedactor
from tuneloop.ingest.redaction.patterns import PatternRedactor, default_redactors

REGISTRY: dict[str, Redactor] = {redactor.name: redactor for redactor in default_redactors()}


class _LazyComprehend:
    """The Comprehend client, created on the first call (so moto and endpoints apply)."""

    def detect_pii_entities(self, *, Text: str, LanguageCode: str) -> dict[str, Any]:  # noqa: N803
        from tuneloop import aws

        response: dict[str, Any] = aws.client("comprehend").detect_pii_entities(
            Text=Text, LanguageCode=LanguageCode
        )
        return response


# Not in the defaults: each costs a request per text (and, for Comprehend, an IAM grant the
# Ingestion stack adds only when a stage names it).
OPTIONAL: dict[str, Callable[[], Redactor]] = {
    "comprehend": lambda: ComprehendRedactor(_LazyComprehend()),
}


def available_names() -> list[str]:
    return [*REGISTRY, *OPTIONAL]


def register(redactor: Redactor) -> None:
    """Make a redactor available by name (e.g. a company's employee-id pattern)."""
    REGISTRY[redactor.name] = redactor


def redactors_named(names: Iterable[str]) -> list[Redactor]:
    chosen: list[Redactor] = []
    for name in names:
        if name in REGISTRY:
            chosen.append(REGISTRY[name])
        elif name in OPTIONAL:
            chosen.append(OPTIONAL[name]())
        else:
            known = ", ".join(sorted(available_names()))
            raise KeyError(f"unknown redactor {name!r}; registered: {known}")
    return chosen


def all_redactors() -> list[Redactor]:
    return list(REGISTRY.values())


__all__ = [
    "OPTIONAL",
    "REGISTRY",
    "ComprehendRedactor",
    "Finding",
    "PatternRedactor",
    "Redacted",
    "Redactor",
    "all_redactors",
    "available_names",
    "find_all",
    "redact",
    "redactors_named",
    "register",
]
