"""One drift check: the captured prompts of a window against reference prompts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tuneloop.ingest.redaction import Redactor, all_redactors, redact
from tuneloop.watch.capture import CapturedExchange, read_window
from tuneloop.watch.drift import DriftResult, Prompt, detect_drift

# Caps keep a day of heavy traffic within a Lambda's time and memory.
MAX_CURRENT = 5000


def run_drift_check(
    s3: Any,
    capture_bucket: str,
    endpoint: str,
    reference_texts: Sequence[str],
    start: datetime,
    end: datetime,
    variant: str = "AllTraffic",
    redactors: Sequence[Redactor] | None = None,
) -> DriftResult:
    """Redact the reference the same way as the captured prompts (so the PII rate compares
    like with like), read the window and judge it."""
    chosen = list(redactors) if redactors is not None else all_redactors()
    reference = reference_prompts(reference_texts, chosen)
    exchanges = read_window(
        s3, capture_bucket, endpoint, variant, start, end, chosen, limit=MAX_CURRENT
    )
    return detect_drift(reference, current_prompts(exchanges))


def reference_prompts(texts: Sequence[str], redactors: Sequence[Redactor]) -> list[Prompt]:
    """The reference redacted as the captured prompts are, with its redaction counts."""
    reference = []
    for text in texts:
        redacted = redact(text, redactors)
        reference.append(Prompt(redacted.text, sum(redacted.counts.values())))
    return reference


def current_prompts(exchanges: Sequence[CapturedExchange]) -> list[Prompt]:
    return [Prompt(e.prompt, e.prompt_redactions) for e in exchanges]
