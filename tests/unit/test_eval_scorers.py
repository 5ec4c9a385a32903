"""Unknown scorers: the error names the bad value and the known scorers."""

from __future__ import annotations

import pytest

from tuneloop.evaluation.custom import parse_item
from tuneloop.evaluation.errors import BenchmarkError
from tuneloop.evaluation.scorers import SCORERS, UnknownScorerError, score_generation


def test_an_unknown_scorer_in_a_custom_benchmark_names_the_value_and_the_scorers() -> None:
    # Given a generative item whose scorer is misspelled
    line = '{"id": "a", "prompt": "Q?", "references": ["x"], "scorer": "exactt"}'

    # When it is parsed
    with pytest.raises(BenchmarkError) as caught:
        parse_item(line, "faq.jsonl", 3)

    # Then the message names the field, the bad value and every known scorer
    message = str(caught.value)
    assert caught.value.field == "scorer"
    assert "'exactt'" in message
    assert all(name in message for name in SCORERS)


def test_a_missing_scorer_says_it_is_missing() -> None:
    line = '{"id": "a", "prompt": "Q?", "references": ["x"]}'
    with pytest.raises(BenchmarkError, match=r"scorer.*missing; must be one of exact"):
        parse_item(line, "faq.jsonl", 1)


def test_scoring_with_an_unknown_scorer_names_it() -> None:
    with pytest.raises(UnknownScorerError, match=r"unknown scorer 'fuzzy'; the scorers are exact"):
        score_generation("fuzzy", "text", ["text"], {})
