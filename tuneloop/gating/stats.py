"""Paired bootstrap and McNemar's test in pure Python (the Gate Lambda has no numpy)."""

from __future__ import annotations

import math
import random
import statistics
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


def paired_bootstrap_ratio_ci(
    numerators: Sequence[tuple[float, float]],
    denominators: Sequence[tuple[float, float]],
    samples: int,
    confidence: float,
    rng: random.Random,
) -> tuple[float, float]:
    """Percentile CI of ``Σa/Σb (candidate) - Σa/Σb (champion)`` resampling paired items.

    ``numerators[i]`` / ``denominators[i]`` are item i's (candidate, champion) values, e.g.
    summed NLL and scored tokens: the statistic is then the difference in token-weighted
    mean NLL, and each resample keeps an item's two models together.
    """
    n = len(numerators)
    if n == 0 or n != len(denominators):
        raise ValueError("no items to bootstrap, or numerators and denominators differ")
    stats: list[float] = []
    for _ in range(samples):
        picks = [rng.randrange(n) for _ in range(n)]
        stats.append(_ratio_diff(numerators, denominators, picks))
    stats.sort()
    alpha = 1.0 - confidence
    return quantile(stats, alpha / 2), quantile(stats, 1 - alpha / 2)


def _ratio_diff(
    numerators: Sequence[tuple[float, float]],
    denominators: Sequence[tuple[float, float]],
    picks: Sequence[int],
) -> float:
    cand_num = math.fsum(numerators[i][0] for i in picks)
    champ_num = math.fsum(numerators[i][1] for i in picks)
    cand_den = math.fsum(denominators[i][0] for i in picks)
    champ_den = math.fsum(denominators[i][1] for i in picks)
    return cand_num / cand_den - champ_num / champ_den


def reliable_margin(
    diffs: Sequence[float], confidence: float, max_false_block: float
) -> tuple[float, float]:
    """(standard error of the mean difference, the smallest reliable margin).

    With a true difference of 0, the CI's lower bound falls below ``-margin`` with chance
    ``Φ(z_conf - margin / se)`` by the normal approximation. Simulated false blocks ran
    about 1.5 times that (the bootstrap bound and the estimated ``se`` are noisy too), so
    the margin ``(z_conf + z_(1 - max_false_block / 2)) * se`` aims at half the allowed
    chance. For 0/1 scores ``se ≈ √(discordance / n)``.
    """
    n = len(diffs)
    if n < 2:
        return 0.0, 0.0
    se = statistics.stdev(diffs) / math.sqrt(n)
    normal = statistics.NormalDist()
    z_sum = normal.inv_cdf((1 + confidence) / 2) + normal.inv_cdf(1 - max_false_block / 2)
    return se, z_sum * se


def false_block_chance(margin: float, se: float, confidence: float) -> float:
    """The chance that a candidate equal to the champion is blocked at ``margin``."""
    if se <= 0:
        return 0.0
    normal = statistics.NormalDist()
    return normal.cdf(normal.inv_cdf((1 + confidence) / 2) - margin / se)
