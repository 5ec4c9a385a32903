"""The redaction contract: redactors find typed spans; ``redact`` replaces them.

A redactor only *finds* spans, so several can run over the same text and their overlaps
are settled in one place (the higher priority wins, then the longer span).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Finding:
    """Personal data found at ``text[start:end]``; ``kind`` names it (``EMAIL``)."""

    start: int
    end: int
    kind: str
    priority: int = 0

    @property
    def placeholder(self) -> str:
        return f"<{self.kind}>"


class Redactor(Protocol):
    """Finds one or more kinds of personal data in a text."""

    @property
    def name(self) -> str:
        """The name it is registered under."""
        ...

    def find(self, text: str) -> Iterable[Finding]: ...


@dataclass(frozen=True)
class Redacted:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep non-overlapping findings: higher priority first, then the longer span."""
    kept: list[Finding] = []
    ranked = sorted(findings, key=lambda f: (-f.priority, -(f.end - f.start), f.start))
    for finding in ranked:
        if finding.end <= finding.start:
            continue
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


def find_all(text: str, redactors: Sequence[Redactor]) -> list[Finding]:
    return resolve_overlaps(finding for redactor in redactors for finding in redactor.find(text))


def redact(text: str, redactors: Sequence[Redactor]) -> Redacted:
    """Replace every finding with its typed placeholder; count findings per kind."""
    findings = find_all(text, redactors)
    if not findings:
        return Redacted(text)
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append(finding.placeholder)
        position = finding.end
    parts.append(text[position:])
    return Redacted("".join(parts), dict(Counter(f.kind for f in findings)))
