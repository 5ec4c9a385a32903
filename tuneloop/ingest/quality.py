"""Quality filters: a record that fails one is quarantined with the filter's reason code."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from tuneloop.ingest.features import UNDETERMINED, detect_language
from tuneloop.ingest.minhash import _WORD
from tuneloop.ingest.settings import QualitySettings

_SPACE = re.compile(r"\s+")
_NOT_LETTER = re.compile(r"[\W\d_]+")

TOO_SHORT = "too_short"
TOO_LONG = "too_long"
REPETITIVE = "repetitive"
NOT_TEXT = "not_text"
WRONG_LANGUAGE = "wrong_language"


@dataclass(frozen=True)
class QualityIssue:
    reason: str
    detail: str


def check_quality(
    text: str, settings: QualitySettings, language: str | None = None
) -> QualityIssue | None:
    """The first filter ``text`` fails, or None; cheap checks first. ``language``: the
    text's detected language when the caller has it already."""
    length = len(text)
    if length < settings.min_chars:
        return QualityIssue(
            TOO_SHORT, f"text has {length} characters; the minimum is {settings.min_chars}"
        )
    if length > settings.max_chars:
        return QualityIssue(
            TOO_LONG, f"text has {length} characters; the maximum is {settings.max_chars}"
        )
    visible = len(_SPACE.sub("", text))
    letters = len(_NOT_LETTER.sub("", text))
    if visible and letters / visible < settings.min_alpha_ratio:
        return QualityIssue(
            NOT_TEXT,
            f"only {letters / visible:.0%} of the characters are letters; "
            f"the minimum is {settings.min_alpha_ratio:.0%}",
        )
    words = _WORD.findall(text.lower())
    if len(words) >= settings.repetition_min_words:
        _, count = Counter(words).most_common(1)[0]
        if count / len(words) > settings.max_top_word_ratio:
            return QualityIssue(
                REPETITIVE,
                f"one word makes up {count / len(words):.0%} of the text; "
                f"the maximum is {settings.max_top_word_ratio:.0%}",
            )
        trigrams = list(zip(words, words[1:], words[2:], strict=False))
        repeated = 1 - len(set(trigrams)) / len(trigrams)
        if repeated > settings.max_repeated_trigram_ratio:
            return QualityIssue(
                REPETITIVE,
                f"{repeated:.0%} of the word 3-grams repeat earlier ones; "
                f"the maximum is {settings.max_repeated_trigram_ratio:.0%}",
            )
    if settings.languages:
        language = language or detect_language(text)
        if language != UNDETERMINED and language not in settings.languages:
            return QualityIssue(
                WRONG_LANGUAGE,
                f"the text reads as {language!r}; accepted: {', '.join(settings.languages)}",
            )
    return None
