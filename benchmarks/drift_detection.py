"""Drift detection on constructed windows: false alarms and detection per shift and size.

A generator of company-style support questions (products, topics, phrasings, the odd
e-mail address) draws a reference (the "training data") and windows of current prompts:
unchanged, a topic shift (a share of questions about a new subject), a language shift (a
share in German and French) and a length shift (a share with a long explanation added).
Each window is judged twice in the same run: univariate PSI + tests alone (the baseline) and
PSI + tests + the domain classifier (ours). Prints the false-alarm rate over the no-change
windows, the detection rate per shift and window size, and the smallest size reaching the
goal (false alarms <= 5%, detection >= 95%).

    .venv/bin/python benchmarks/drift_detection.py [--windows 100] [--trials 20]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from tuneloop.watch.drift import Prompt, detect_drift

_PRODUCTS = [
    "the Acme router",
    "my Acme phone plan",
    "the mobile app",
    "the web portal",
    "my business account",
    "the Pro subscription",
    "the family plan",
    "my SIM card",
]
_TOPICS = [
    "reset my password",
    "change my billing address",
    "get a copy of my invoice",
    "cancel my contract",
    "upgrade my plan",
    "report a slow connection",
    "add a second user",
    "update my payment card",
    "pause my service while travelling",
    "understand an extra charge",
]
_NEW_TOPICS = [
    "connect the smart thermostat",
    "pair the security camera",
    "set up the home alarm sensors",
    "calibrate the thermostat schedule",
    "share camera footage with family",
]
_PHRASES = [
    "How do I {t} for {p}?",
    "Can you help me {t} on {p}?",
    "What is the fastest way to {t} with {p}?",
    "I need to {t} for {p}, what are the steps?",
    "Is it possible to {t} on {p} without calling support?",
    "Hi, I want to {t} ({p}).",
]
_FOREIGN = [
    "Wie kann ich für {p} mein Passwort zurücksetzen und die Rechnung ändern?",
    "Ich möchte meinen Vertrag kündigen, wie geht das mit {p}?",
    "Comment puis-je changer mon adresse de facturation pour {p} ?",
    "Je voudrais annuler mon contrat, que dois-je faire avec {p} ?",
]
_DETAIL = (
    " I already tried restarting everything twice, checked the settings page, read the"
    " help article and waited a day, but the problem is still there and I am not sure"
    " what else to do."
)
SHIFT_SHARE = 0.3


def _question(rng: random.Random, topics: list[str]) -> Prompt:
    text = rng.choice(_PHRASES).format(t=rng.choice(topics), p=rng.choice(_PRODUCTS))
    if rng.random() < 0.05:
        return Prompt(text + " You can reach me at <EMAIL>.", redactions=1)
    return Prompt(text)


def unchanged(rng: random.Random) -> Prompt:
    return _question(rng, _TOPICS)


def topic_shift(rng: random.Random) -> Prompt:
    return _question(rng, _NEW_TOPICS) if rng.random() < SHIFT_SHARE else unchanged(rng)


def language_shift(rng: random.Random) -> Prompt:
    if rng.random() < SHIFT_SHARE:
        return Prompt(rng.choice(_FOREIGN).format(p=rng.choice(_PRODUCTS)))
    return unchanged(rng)


def length_shift(rng: random.Random) -> Prompt:
    prompt = unchanged(rng)
    return (
        Prompt(prompt.text + _DETAIL, prompt.redactions) if rng.random() < SHIFT_SHARE else prompt
    )


def _rates(
    make: Callable[[random.Random], Prompt],
    size: int,
    trials: int,
    reference: list[Prompt],
    seed: int,
) -> tuple[float, float]:
    """(baseline rate, ours rate) of windows judged drifting."""
    rng = random.Random(seed)
    baseline = ours = 0
    for trial in range(trials):
        window = [make(rng) for _ in range(size)]
        result = detect_drift(reference, window, seed=trial)
        univariate = any(f.drift for f in result.features)
        baseline += univariate
        ours += result.drift_detected
    return baseline / trials, ours / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=100, help="no-change windows of 500")
    parser.add_argument("--trials", type=int, default=20, help="windows per shift and size")
    parser.add_argument("--reference", type=int, default=1000)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = random.Random(0)
    reference = [unchanged(rng) for _ in range(args.reference)]
    base_fa, ours_fa = _rates(unchanged, 500, args.windows, reference, seed=1)
    print(f"reference {args.reference} prompts; shifted share {SHIFT_SHARE:.0%} of each window")
    print(
        f"false alarms, {args.windows} no-change windows of 500: "
        f"PSI alone {base_fa:.0%}, PSI + classifier {ours_fa:.0%} (goal <= 5%)"
    )
    print(f"{'shift':<10}{'size':>6}{'PSI alone':>11}{'PSI+clf':>9}")
    smallest: dict[str, int | None] = {}
    for name, make in (
        ("topic", topic_shift),
        ("language", language_shift),
        ("length", length_shift),
    ):
        smallest[name] = None
        for size in (50, 100, 200, 500):
            base, ours = _rates(make, size, args.trials, reference, seed=size)
            print(f"{name:<10}{size:>6}{base:>11.0%}{ours:>9.0%}")
            if ours >= 0.95 and smallest[name] is None:
                smallest[name] = size
    for name, reached in smallest.items():
        print(f"smallest window reaching 95% for {name}: {reached or 'none of 50-500'}")
    print(f"ran in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
