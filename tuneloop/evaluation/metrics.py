"""Aggregate metrics, as lm-evaluation-harness computes them."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the sample (n-1) standard deviation; 0.0 for n < 2."""
    n = len(values)
    if n < 2:
        return 0.0
    mu = mean(values)
    variance = math.fsum((v - mu) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first on ties (as numpy.argmax)."""
    best = 0
    for index, value in enumerate(values):
        if value > values[best]:
            best = index
    return best
