"""The drift verdict on constructed windows: no change, a topic, language and length shift."""

from __future__ import annotations

import random

import pytest

from tuneloop.watch.drift import Prompt, detect_drift
from tuneloop.watch.drift_classifier import domain_classifier, ngrams
from tuneloop.watch.drift_features import oov_rate, vocabulary

_BILLING = ["invoice", "refund", "charge", "payment", "subscription", "receipt"]
_SHIPPING = ["parcel", "courier", "tracking", "delivery", "warehouse", "customs"]
_TEMPLATES = [
    "How do I get a {} for my last order?",
    "Why was my {} different this month?",
    "Can you explain the {} on my account please?",
    "Where can I find the {} in the portal?",
]
_GERMAN = [
    "Wie bekomme ich eine {} für meine letzte Bestellung?",
    "Warum ist die {} in diesem Monat anders und was kann ich tun?",
]


def _prompts(rng: random.Random, n: int, topics: list[str], templates: list[str]) -> list[Prompt]:
    return [Prompt(rng.choice(templates).format(rng.choice(topics))) for _ in range(n)]


def test_no_change_is_no_drift() -> None:
    rng = random.Random(1)
    reference = _prompts(rng, 300, _BILLING, _TEMPLATES)
    current = _prompts(rng, 300, _BILLING, _TEMPLATES)
    result = detect_drift(reference, current)
    assert not result.drift_detected, result.summary
    assert result.summary.startswith("no drift")


def test_topic_shift_is_caught_by_the_classifier_with_its_words() -> None:
    rng = random.Random(2)
    reference = _prompts(rng, 300, _BILLING, _TEMPLATES)
    current = _prompts(rng, 300, _SHIPPING, _TEMPLATES)
    result = detect_drift(reference, current)
    assert result.drift_detected
    assert result.classifier is not None and result.classifier.auc > 0.9
    # The heaviest weights name the topic words, either side's (negative: reference).
    named = " ".join(name for name, _ in result.classifier.top_features)
    assert any(f"w:{word}" in named for word in _SHIPPING + _BILLING)


def test_language_shift_moves_the_language_feature() -> None:
    rng = random.Random(3)
    reference = _prompts(rng, 300, _BILLING, _TEMPLATES)
    current = _prompts(rng, 300, _BILLING, _GERMAN)
    result = detect_drift(reference, current, use_classifier=False)
    language = next(f for f in result.features if f.name == "language")
    assert language.drift and language.psi > 0.2 and language.p_value < 0.01


def test_length_shift_moves_the_token_feature() -> None:
    rng = random.Random(4)
    reference = _prompts(rng, 300, _BILLING, _TEMPLATES)
    tail = " I have tried the portal, the app and the phone line and nothing worked so far."
    current = [Prompt(p.text + tail * 3) for p in _prompts(rng, 300, _BILLING, _TEMPLATES)]
    result = detect_drift(reference, current, use_classifier=False)
    tokens = next(f for f in result.features if f.name == "prompt_tokens")
    assert tokens.drift and tokens.p_value < 0.01


def test_pii_rate_is_a_feature() -> None:
    rng = random.Random(5)
    reference = _prompts(rng, 300, _BILLING, _TEMPLATES)
    current = [Prompt(p.text + " <EMAIL>", redactions=1) for p in reference]
    result = detect_drift(reference, current, use_classifier=False)
    pii = next(f for f in result.features if f.name == "pii_redacted")
    assert pii.drift


def test_small_windows_use_the_bootstrap_lower_bound() -> None:
    rng = random.Random(6)
    reference = [p.text for p in _prompts(rng, 20, _BILLING, _TEMPLATES)]
    current = [p.text for p in _prompts(rng, 20, _BILLING, _TEMPLATES)]
    verdict = domain_classifier(reference, current)
    assert verdict.auc_lower_bound <= verdict.auc
    assert not verdict.drift


def test_oov_and_ngrams() -> None:
    vocab = vocabulary(["refund my order", "refund the order"])
    assert vocab == frozenset({"refund", "order"})
    assert oov_rate("refund my parcel <EMAIL>", vocab) == pytest.approx(2 / 3)
    assert ngrams("Refund now") == [
        "w:refund",
        "w:now",
        "w:refund now",
        *[f"c:{g}" for g in ["ref", "efu", "fun", "und", "nd ", "d n", " no", "now"]],
    ]


def test_too_few_prompts_is_refused() -> None:
    with pytest.raises(ValueError, match="both sides"):
        detect_drift([Prompt("a")], [Prompt("b")])
