"""Metrics against cases counted by hand, and uncertainties against their own definitions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from training.errors import BadSample, TooFewEvents
from training.metrics import (
    MAX_EMD_POINTS,
    ONE_SIGMA,
    clopper_pearson,
    energy_movers_distance,
    fpr_reachable,
    min_events_for_efficiency,
    rejection_at_signal_efficiency,
    roc_auc,
    roc_curve,
    threshold_at_efficiency,
    tpr_at_fpr,
)

# Pairs (signal, background): 2 vs 1 win, 2 vs 2 tie, 2 vs 3 loss, 4 beats all three -> 4.5 / 6.
TINY_BACKGROUND = np.array([1.0, 2.0, 3.0])
TINY_SIGNAL = np.array([2.0, 4.0])


def test_auc_of_a_table_counted_by_hand() -> None:
    auc = roc_auc(TINY_BACKGROUND, TINY_SIGNAL)
    assert auc.value == pytest.approx(0.75)
    # DeLong: signal components [0.5, 1] (variance 0.125, / 2), background components
    # [1, 0.75, 0.5] (variance 0.0625, / 3).
    assert auc.error == pytest.approx(np.sqrt(0.125 / 2 + 0.0625 / 3))
    assert auc.low == pytest.approx(max(0.0, 0.75 - auc.error))
    assert auc.high == 1.0  # clipped


def test_auc_of_perfect_and_inverted_separation() -> None:
    background, signal = np.arange(100.0), np.arange(100.0) + 1000
    assert roc_auc(background, signal)[:2] == (1.0, 0.0)
    assert roc_auc(signal, background).value == 0.0


def test_auc_equals_mann_whitney_with_ties() -> None:
    rng = np.random.default_rng(3)
    background = rng.integers(0, 20, 500).astype(float)  # many ties
    signal = rng.integers(3, 25, 300).astype(float)
    u = stats.mannwhitneyu(signal, background).statistic
    assert roc_auc(background, signal).value == pytest.approx(u / (500 * 300))


def test_auc_of_identical_distributions_and_its_error_match_the_spread_of_repeats() -> None:
    rng = np.random.default_rng(7)
    estimates = [roc_auc(rng.normal(size=200), rng.normal(0.5, 1, size=150)) for _ in range(300)]
    values = np.array([estimate.value for estimate in estimates])
    errors = np.array([estimate.error for estimate in estimates])
    assert errors.mean() == pytest.approx(values.std(ddof=1), rel=0.15)
    same = roc_auc(rng.normal(size=20_000), rng.normal(size=20_000))
    assert abs(same.value - 0.5) < 3 * same.error


def test_roc_curve_of_the_hand_table() -> None:
    curve = roc_curve(TINY_BACKGROUND, TINY_SIGNAL)
    np.testing.assert_array_equal(curve.thresholds, [4, 3, 2, 1, -np.inf])
    np.testing.assert_allclose(curve.background_efficiency, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.signal_efficiency, [0, 0.5, 0.5, 1, 1])
    area = np.trapezoid(curve.signal_efficiency, curve.background_efficiency)
    assert area == pytest.approx(roc_auc(TINY_BACKGROUND, TINY_SIGNAL).value)


def test_clopper_pearson_limits_and_exact_coverage() -> None:
    assert clopper_pearson(0, 10, confidence=0.95) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(10, 10, confidence=0.95) == pytest.approx((0.025 ** (1 / 10), 1.0))
    n = 40
    for p in (0.02, 0.3, 0.5):
        intervals = [clopper_pearson(k, n, confidence=0.95) for k in range(n + 1)]
        covered = [low <= p <= high for low, high in intervals]
        assert stats.binom.pmf(np.arange(n + 1), n, p)[covered].sum() >= 0.95
    with pytest.raises(BadSample, match="k=11, n=10"):
        clopper_pearson(11, 10)


def test_rejection_at_signal_efficiency_counts_background_above_the_signal_quantile() -> None:
    background = np.arange(1000.0)  # 0 ... 999
    signal = np.arange(10) * 100 + 50.5  # 20% of 10 pass above signal[7] = 750.5
    rejection = rejection_at_signal_efficiency(background, signal, 0.2)
    assert rejection.value == pytest.approx(1000 / 249)  # 751 ... 999 pass
    low, high = clopper_pearson(249, 1000)
    assert (rejection.low, rejection.high) == pytest.approx((1 / high, 1 / low))


def test_rejection_with_no_background_passing_is_a_lower_limit() -> None:
    rejection = rejection_at_signal_efficiency(np.arange(1000.0), np.arange(10.0) + 5000, 0.3)
    assert rejection.value == np.inf and rejection.high == np.inf
    assert rejection.low == pytest.approx(1 / clopper_pearson(0, 1000).high)
    assert np.isfinite(rejection.low)


def test_tpr_at_fpr_and_reachability() -> None:
    background = np.arange(1000.0)
    signal = np.array([980.0, 989.0, 989.5, 995.0, 2000.0])  # threshold 989: three above
    tpr = tpr_at_fpr(background, signal, 0.01)
    assert tpr.value == pytest.approx(3 / 5)
    assert (tpr.low, tpr.high) == pytest.approx(clopper_pearson(3, 5))
    assert fpr_reachable(1000, 1e-2) and not fpr_reachable(999, 1e-2)
    assert not fpr_reachable(10**6, 0.0)
    with pytest.raises(TooFewEvents, match="at least 10000 events"):
        tpr_at_fpr(background, signal, 1e-3)


def test_threshold_passes_exactly_its_events_after_the_float32_cast() -> None:
    scores = np.random.default_rng(1).exponential(size=50_000).astype(np.float32)
    for efficiency in (1e-2, 1e-3, 2e-4):
        threshold = np.float32(threshold_at_efficiency(scores, efficiency))
        assert np.count_nonzero(scores > threshold) == round(efficiency * len(scores))
    assert min_events_for_efficiency(1e-3) == 10_000


def test_emd_of_point_sets_matched_by_hand() -> None:
    a = np.array([[0.0, 0.0], [10.0, 0.0]])
    b = np.array([[10.0, 1.0], [0.0, 1.0]])  # the best matching crosses the index order
    assert energy_movers_distance(a, b) == pytest.approx(1.0)
    c = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    d = np.array([[1.0, 1.0], [0.0, 0.0], [6.0, 8.0]])  # two identical points, one 5 away
    assert energy_movers_distance(c, d) == pytest.approx(5 / 3)
    images = np.random.default_rng(0).random((5, 2, 2))
    assert energy_movers_distance(images, images[::-1]) == pytest.approx(0.0)


def test_emd_refuses_unequal_or_oversize_sets() -> None:
    with pytest.raises(BadSample, match="equal shapes"):
        energy_movers_distance(np.zeros((3, 2)), np.zeros((4, 2)))
    too_many = np.zeros((MAX_EMD_POINTS + 1, 1))
    with pytest.raises(BadSample, match="subsample"):
        energy_movers_distance(too_many, too_many)


def test_bad_scores_are_refused_by_name() -> None:
    with pytest.raises(BadSample, match="signal_scores holds 1 non-finite"):
        roc_auc(np.zeros(3), np.array([1.0, np.nan]))
    with pytest.raises(BadSample, match="background_scores must be a non-empty"):
        roc_auc(np.zeros(0), np.zeros(3))
    assert pytest.approx(0.682689, abs=1e-6) == ONE_SIGMA
