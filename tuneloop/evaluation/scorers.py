"""Scorers for generative items: ``exact``, ``regex``, ``includes`` and ``json``.

Each scorer returns 1.0 when the generated text matches any reference, else 0.0.

- ``exact``: the stripped text equals a reference (stripped).
- ``regex``: a reference (a Python regular expression) is found in the text (``re.search``).
- ``includes``: a reference occurs in the text.
- ``json``: the first JSON value in the text (code fences allowed) equals a reference (a
  JSON value); with ``scorer_args.keys`` only those keys of an object are compared.

``scorer_args.ignore_case`` (bool) applies to exact, regex and includes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

SCORERS = ("exact", "regex", "includes", "json")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```\s*$")


class UnknownScorerError(ValueError):
    """A scorer name none of ``SCORERS`` is; the message names it and the known ones."""

    def __init__(self, scorer: object) -> None:
        super().__init__(f"unknown scorer {scorer!r}; the scorers are {', '.join(SCORERS)}")
        self.scorer = scorer


def score_generation(
    scorer: str, prediction: str, references: Sequence[Any], args: dict[str, Any]
) -> float:
    """1.0 if ``prediction`` matches one of ``references`` under ``scorer``, else 0.0."""
    score = _SCORERS.get(scorer)
    if score is None:
        raise UnknownScorerError(scorer)
    return 1.0 if score(prediction, references, args) else 0.0


def _fold(text: str, args: dict[str, Any]) -> str:
    return text.casefold() if args.get("ignore_case") else text


def _exact(prediction: str, references: Sequence[Any], args: dict[str, Any]) -> bool:
    text = _fold(prediction.strip(), args)
    return any(text == _fold(str(ref).strip(), args) for ref in references)


def _regex(prediction: str, references: Sequence[Any], args: dict[str, Any]) -> bool:
    flags = re.IGNORECASE if args.get("ignore_case") else 0
    return any(re.search(str(ref), prediction, flags) for ref in references)


def _includes(prediction: str, references: Sequence[Any], args: dict[str, Any]) -> bool:
    text = _fold(prediction, args)
    return any(_fold(str(ref), args) in text for ref in references)


def _json(prediction: str, references: Sequence[Any], args: dict[str, Any]) -> bool:
    value = extract_json(prediction)
    if value is _NO_JSON:
        return False
    keys = args.get("keys")
    if keys:
        if not isinstance(value, dict):
            return False
        return any(
            isinstance(ref, dict) and all(value.get(k) == ref.get(k) for k in keys)
            for ref in references
        )
    return any(value == ref for ref in references)


_NO_JSON = object()


def extract_json(text: str) -> Any:
    """The first JSON value in ``text`` (after stripping code fences), or ``_NO_JSON``."""
    stripped = _FENCE.sub("", text.strip())
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for start, char in enumerate(stripped):
        if char in "{[":
            try:
                return decoder.raw_decode(stripped, start)[0]
            except ValueError:
                continue
    return _NO_JSON


_SCORERS: dict[str, Callable[[str, Sequence[Any], dict[str, Any]], bool]] = {
    "exact": _exact,
    "regex": _regex,
    "includes": _includes,
    "json": _json,
}
