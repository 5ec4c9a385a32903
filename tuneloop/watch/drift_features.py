"""Univariate drift features of a prompt, computed the way ingestion computes them.

Length uses ingestion's token estimate and language its heuristic
(tuneloop/ingest/features.py), so the reference (training records) and the captured prompts
are measured by one ruler. The redaction count comes from the capture reader (the prompt is
already redacted); the out-of-vocabulary rate is against the reference's word vocabulary.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tuneloop.ingest.features import detect_language, estimate_tokens

_WORD = re.compile(r"\w+", re.UNICODE)
# A reference word must occur this often to count as vocabulary (one-offs are noise: ids,
# typos), and placeholders like <EMAIL> are never out of vocabulary.
MIN_VOCABULARY_COUNT = 2
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")


@dataclass(frozen=True)
class PromptFeatures:
    tokens: int
    language: str
    redacted: bool
    oov_rate: float


def words(text: str) -> list[str]:
    return _WORD.findall(_PLACEHOLDER.sub(" ", text).lower())


def vocabulary(texts: Iterable[str], min_count: int = MIN_VOCABULARY_COUNT) -> frozenset[str]:
    counts = Counter(word for text in texts for word in words(text))
    return frozenset(word for word, count in counts.items() if count >= min_count)


def oov_rate(text: str, vocab: frozenset[str]) -> float:
    """The share of the prompt's words that are not in the vocabulary (0 for no words)."""
    found = words(text)
    if not found:
        return 0.0
    return sum(1 for word in found if word not in vocab) / len(found)


def prompt_features(text: str, redactions: int, vocab: frozenset[str]) -> PromptFeatures:
    return PromptFeatures(
        tokens=estimate_tokens(text),
        language=detect_language(text),
        redacted=redactions > 0,
        oov_rate=oov_rate(text, vocab),
    )
