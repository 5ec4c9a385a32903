"""Drift statistics in pure Python: PSI, chi-square, Mann-Whitney U, ROC AUC.

Pure Python because the drift check runs in a Lambda without numpy or scipy (those live in
the ``ml`` group; with them the package exceeds what a zip Lambda carries). The tests check
each against a direct computation and, where installed, against scipy.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence

# The bands the common tools (Evidently, NannyML) use: < 0.1 stable, 0.1-0.2 moderate,
# >= 0.2 a significant shift.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2
# An empty bin would make PSI infinite; Evidently replaces a zero share with 0.0001.
EMPTY_BIN_SHARE = 1e-4


def quantile_edges(reference: Sequence[float], bins: int = 10) -> list[float]:
    """Inner bin edges at the reference's quantiles (duplicates dropped for tied data)."""
    if not reference:
        raise ValueError("quantile_edges needs a non-empty reference")
    ordered = sorted(reference)
    edges: list[float] = []
    for i in range(1, bins):
        edge = ordered[min(len(ordered) - 1, (i * len(ordered)) // bins)]
        if not edges or edge > edges[-1]:
            edges.append(edge)
    return edges


def _shares(values: Sequence[float], edges: Sequence[float]) -> list[float]:
    counts = [0] * (len(edges) + 1)
    for value in values:
        # Bin i holds edges[i-1] <= value < edges[i].
        counts[bisect.bisect_right(edges, value)] += 1
    return [max(count / len(values), EMPTY_BIN_SHARE) for count in counts]


def psi_from_shares(expected: Sequence[float], actual: Sequence[float]) -> float:
    """sum((a - e) * ln(a / e)) over bins."""
    return sum((a - e) * math.log(a / e) for e, a in zip(expected, actual, strict=True))


def psi_numeric(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    """PSI over quantile bins of the reference (Evidently's and NannyML's binning)."""
    if not current:
        raise ValueError("psi_numeric needs a non-empty current sample")
    edges = quantile_edges(reference, bins)
    return psi_from_shares(_shares(reference, edges), _shares(current, edges))


def category_shares(values: Sequence[str], categories: Sequence[str]) -> list[float]:
    counts = Counter(values)
    return [max(counts[c] / len(values), EMPTY_BIN_SHARE) for c in categories]


def psi_categorical(reference: Sequence[str], current: Sequence[str]) -> float:
    if not reference or not current:
        raise ValueError("psi_categorical needs non-empty samples")
    categories = sorted(set(reference) | set(current))
    return psi_from_shares(
        category_shares(reference, categories), category_shares(current, categories)
    )


def _regularized_upper_gamma(a: float, x: float) -> float:
    """Q(a, x) = Γ(a, x) / Γ(a): a series below a + 1, a continued fraction above
    (Numerical Recipes, gser / gcf)."""
    if x <= 0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(500):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return math.exp(log_prefix) * h


def chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for a chi-square variable with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError(f"chi-square needs at least 1 degree of freedom, got {dof}")
    return _regularized_upper_gamma(dof / 2, statistic / 2)


def chi_square_test(reference: Sequence[str], current: Sequence[str]) -> tuple[float, float]:
    """Pearson's chi-square test of homogeneity on the 2 x k table: (statistic, p-value).

    With a single category there is nothing to compare: (0, 1)."""
    categories = sorted(set(reference) | set(current))
    if len(categories) < 2:
        return 0.0, 1.0
    rows = [Counter(reference), Counter(current)]
    totals = [len(reference), len(current)]
    grand = sum(totals)
    statistic = 0.0
    for category in categories:
        column = rows[0][category] + rows[1][category]
        for row, total in zip(rows, totals, strict=True):
            expected = total * column / grand
            statistic += (row[category] - expected) ** 2 / expected
    return statistic, chi2_sf(statistic, len(categories) - 1)


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_u(reference: Sequence[float], current: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test, normal approximation with tie correction (scipy's
    ``method="asymptotic"``, with continuity correction): (U of the reference, p-value)."""
    n1, n2 = len(reference), len(current)
    if n1 == 0 or n2 == 0:
        raise ValueError("mann_whitney_u needs two non-empty samples")
    combined = [*reference, *current]
    ranks = _ranks(combined)
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    ties = sum(t**3 - t for t in Counter(combined).values())
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return u1, 1.0
    mean = n1 * n2 / 2
    z = (abs(u1 - mean) - 0.5) / math.sqrt(variance)
    return u1, min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties half),
    from the rank-sum (Mann-Whitney) identity."""
    positives = sum(1 for label in labels if label == 1)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("roc_auc needs both classes among the labels")
    ranks = _ranks(scores)
    rank_sum = sum(rank for rank, label in zip(ranks, labels, strict=True) if label == 1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
