"""Paired bootstrap and McNemar's test in pure Python (the Gate Lambda has no numpy)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def paired_bootstrap_ci(
    diffs: Sequence[float], samples: int, confidence: float, rng: random.Random
) -> tuple[float, float]:
    """Percentile CI of the mean of per-item differences, resampling items with replacement.

    Resampling the paired differences keeps each item's candidate and champion scores
    together, which is what makes the interval paired.
    """
    n = len(diffs)
    if n == 0:
        raise ValueError("no items to bootstrap")
    values = list(diffs)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(samples))
    alpha = 1.0 - confidence
    return quantile(means, alpha / 2), quantile(means, 1 - alpha / 2)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    weight = position - low
    return sorted_values[low] * (1 - weight) + sorted_values[high] * weight


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts ``b`` and ``c``.

    Under "no difference" the discordant pairs split as Binomial(b + c, 1/2); exact
    integers avoid the chi-square approximation's error at small counts.
    """
    n = b + c
    if n == 0:
        return 1.0
    # C(n, k) built incrementally: one small multiplication per term instead of a fresh
    # comb() each time (seconds at n = 10,000).
    term = tail = 1
    for k in range(1, min(b, c) + 1):
        term = term * (n - k + 1) // k
        tail += term
    return min(1.0, 2 * tail / 2**n)
