"""Multivariate drift: a domain classifier that tries to tell reference from current prompts.

Features are hashed word 1-2-grams and char 3-grams (the hashing trick, fixed memory);
a reverse map keeps which n-grams fell in each bucket so the heaviest weights can be named.
The model is logistic regression fitted by SGD on sparse dicts: pure Python, as the Lambda
has no numpy. Its ROC AUC on a held-out split says how separable the windows are: Evidently's
rule is drift when AUC > 0.55 with enough samples; below that size a bootstrap lower bound of
the AUC must exceed 0.55 instead.
"""

from __future__ import annotations

import itertools
import math
import random
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tuneloop.watch.drift_features import words
from tuneloop.watch.drift_stats import roc_auc

BUCKETS = 2**18
AUC_THRESHOLD = 0.55
# Below this many held-out prompts per side the AUC is noisy: use its bootstrap lower bound.
ENOUGH_PER_SIDE = 100
BOOTSTRAP_ROUNDS = 200


def ngrams(text: str) -> list[str]:
    tokens = words(text)
    grams = [f"w:{t}" for t in tokens]
    grams += [f"w:{a} {b}" for a, b in itertools.pairwise(tokens)]
    squashed = " ".join(tokens)
    grams += [f"c:{squashed[i : i + 3]}" for i in range(max(0, len(squashed) - 2))]
    return grams


def _bucket(gram: str) -> int:
    return zlib.crc32(gram.encode("utf-8")) % BUCKETS


@dataclass(frozen=True)
class ClassifierVerdict:
    auc: float
    auc_lower_bound: float
    drift: bool
    top_features: list[tuple[str, float]]  # (n-gram, weight): positive means "current"


class _Hashed:
    def __init__(self) -> None:
        self.names: dict[int, set[str]] = defaultdict(set)

    def vector(self, text: str) -> dict[int, float]:
        counts: dict[int, float] = defaultdict(float)
        for gram in ngrams(text):
            bucket = _bucket(gram)
            counts[bucket] += 1.0
            if len(self.names[bucket]) < 3:
                self.names[bucket].add(gram)
        norm = math.sqrt(sum(v * v for v in counts.values())) or 1.0
        return {k: v / norm for k, v in counts.items()}


def _score(weights: dict[int, float], bias: float, x: dict[int, float]) -> float:
    return bias + sum(weights.get(k, 0.0) * v for k, v in x.items())


def _fit(
    rows: Sequence[tuple[dict[int, float], int]], rng: random.Random, epochs: int = 5
) -> tuple[dict[int, float], float]:
    weights: dict[int, float] = defaultdict(float)
    bias = 0.0
    rate, l2 = 0.5, 1e-4
    order = list(range(len(rows)))
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            x, y = rows[i]
            z = max(-30.0, min(30.0, _score(weights, bias, x)))
            gradient = 1 / (1 + math.exp(-z)) - y
            for k, v in x.items():
                weights[k] -= rate * (gradient * v + l2 * weights[k])
            bias -= rate * gradient
    return weights, bias


def bootstrap_lower_bound(
    labels: Sequence[int], scores: Sequence[float], rng: random.Random, quantile: float = 0.05
) -> float:
    aucs = []
    n = len(labels)
    for _ in range(BOOTSTRAP_ROUNDS):
        picks = [rng.randrange(n) for _ in range(n)]
        sample = [labels[i] for i in picks]
        if 0 < sum(sample) < n:
            aucs.append(roc_auc(sample, [scores[i] for i in picks]))
    if not aucs:
        return 0.5
    aucs.sort()
    return aucs[int(quantile * (len(aucs) - 1))]


def domain_classifier(
    reference: Sequence[str],
    current: Sequence[str],
    seed: int = 0,
    holdout: float = 0.3,
    top: int = 10,
) -> ClassifierVerdict:
    """Train on (1 - holdout) of each side, score the rest; label 1 means a current prompt."""
    if len(reference) < 4 or len(current) < 4:
        raise ValueError("the domain classifier needs at least 4 prompts on each side")
    rng = random.Random(seed)
    hashed = _Hashed()
    train: list[tuple[dict[int, float], int]] = []
    test: list[tuple[dict[int, float], int]] = []
    for label, texts in ((0, reference), (1, current)):
        rows = [(hashed.vector(text), label) for text in texts]
        rng.shuffle(rows)
        cut = max(2, int(len(rows) * holdout))
        test += rows[:cut]
        train += rows[cut:]
    weights, bias = _fit(train, rng)
    labels = [y for _, y in test]
    scores = [_score(weights, bias, x) for x, _ in test]
    auc = roc_auc(labels, scores)
    per_side = min(labels.count(0), labels.count(1))
    lower = auc if per_side >= ENOUGH_PER_SIDE else bootstrap_lower_bound(labels, scores, rng)
    heaviest = sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:top]
    named = [(" | ".join(sorted(hashed.names[k])), w) for k, w in heaviest]
    return ClassifierVerdict(
        auc=auc, auc_lower_bound=lower, drift=lower > AUC_THRESHOLD, top_features=named
    )
