"""Each drift statistic against a direct computation (and scipy where it is installed)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from tuneloop.watch.drift_stats import (
    EMPTY_BIN_SHARE,
    chi2_sf,
    chi_square_test,
    mann_whitney_u,
    psi_categorical,
    psi_numeric,
    quantile_edges,
    roc_auc,
)


def test_psi_by_hand_on_quantile_bins() -> None:
    reference = [1.0, 2.0, 3.0, 4.0]
    current = [1.0, 1.0, 1.0, 4.0]
    # Two bins split at the reference median (3.0): reference 2/2, current 3/1.
    assert quantile_edges(reference, bins=2) == [3.0]
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi_numeric(reference, current, bins=2) == pytest.approx(expected)


def test_psi_is_zero_for_the_same_sample_and_floors_empty_bins() -> None:
    sample = [float(i) for i in range(100)]
    assert psi_numeric(sample, sample) == pytest.approx(0.0)
    # Everything in the top bin: the nine empty bins take the floor share, not log(0).
    shifted = [1000.0] * 50
    e, a = 0.1, EMPTY_BIN_SHARE
    assert psi_numeric(sample, shifted) == pytest.approx(
        9 * (a - e) * math.log(a / e) + 0.9 * math.log(1 / 0.1)
    )


def test_psi_categorical_by_hand() -> None:
    reference = ["en"] * 8 + ["de"] * 2
    current = ["en"] * 5 + ["de"] * 5
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.5 - 0.8) * math.log(0.5 / 0.8)
    assert psi_categorical(reference, current) == pytest.approx(expected)


def test_chi2_survival_against_known_values() -> None:
    # Tabulated critical values: P(X >= 3.841) = 0.05 at 1 dof, P(X >= 5.991) = 0.05 at 2,
    # P(X >= 18.307) = 0.05 at 10; dof 2 has the closed form exp(-x / 2).
    assert chi2_sf(3.841459, 1) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf(5.991465, 2) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf(18.307038, 10) == pytest.approx(0.05, abs=1e-6)
    assert chi2_sf(7.3, 2) == pytest.approx(math.exp(-3.65))
    assert chi2_sf(0.0, 3) == 1.0


def test_chi_square_test_statistic_by_hand() -> None:
    reference = ["en"] * 30 + ["de"] * 10
    current = ["en"] * 10 + ["de"] * 30
    # Expected counts are 20 in every cell; each deviates by 10.
    statistic, p = chi_square_test(reference, current)
    assert statistic == pytest.approx(4 * 10**2 / 20)
    assert p == pytest.approx(chi2_sf(20.0, 1))
    assert chi_square_test(["en"] * 5, ["en"] * 7) == (0.0, 1.0)


def test_mann_whitney_against_a_pair_count_and_scipy() -> None:
    rng = random.Random(3)
    x = [rng.randint(0, 20) for _ in range(40)]
    y = [rng.randint(3, 25) for _ in range(35)]
    u, p = mann_whitney_u(x, y)
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x, y))
    assert u == pytest.approx(pairs)
    stats = pytest.importorskip("scipy.stats")
    reference = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic")
    assert u == pytest.approx(reference.statistic)
    assert p == pytest.approx(reference.pvalue, rel=1e-9)


def test_chi_square_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    reference = ["en"] * 50 + ["de"] * 20 + ["fr"] * 5
    current = ["en"] * 30 + ["de"] * 25 + ["fr"] * 15
    statistic, p = chi_square_test(reference, current)
    table = [[50, 20, 5], [30, 25, 15]]
    expected = stats.chi2_contingency(table, correction=False)
    assert statistic == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-9)


def test_roc_auc_against_a_brute_force_pair_count() -> None:
    rng = random.Random(7)
    labels = [rng.randint(0, 1) for _ in range(80)]
    scores = [round(rng.random() + 0.3 * label, 1) for label in labels]  # rounding makes ties
    positives = [s for s, label in zip(scores, labels, strict=True) if label == 1]
    negatives = [s for s, label in zip(scores, labels, strict=True) if label == 0]
    pairs = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives)
    )
    assert roc_auc(labels, scores) == pytest.approx(pairs / (len(positives) * len(negatives)))


def test_bad_input_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="non-empty"):
        psi_numeric([1.0], [])
    with pytest.raises(ValueError, match="degree of freedom"):
        chi2_sf(1.0, 0)
