"""Calibration: hand-counted thresholds, refusal of small samples, and interval coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from service.bundle import REFERENCE_RATE_HZ, WorkingPoint
from training.calibration import calibrate, check_rate, measure_efficiency, working_point_name
from training.errors import BadSample, TooFewEvents
from training.metrics import clopper_pearson


def test_threshold_interval_and_rate_counted_by_hand() -> None:
    (point,) = calibrate(np.arange(1000.0), [0.01], reference_rate_hz=1000.0)
    assert point.name == "eff_1e-2"
    assert point.threshold == 989.0  # 990 ... 999 pass
    assert point.background[:3] == (10, 1000, 0.01)
    low, high = clopper_pearson(10, 1000, confidence=0.95)
    assert point.background.ci95 == pytest.approx((low, high))
    assert point.expected_rate_hz == pytest.approx(10.0)
    # The threshold's interval: where round(high * 1000) and round(low * 1000) events pass.
    assert point.threshold_ci95 == (999 - round(high * 1000), 999 - round(low * 1000))
    assert point.threshold_ci95.low < point.threshold < point.threshold_ci95.high


def test_bundle_fields_are_a_valid_working_point_with_prescale() -> None:
    scores = np.random.default_rng(2).normal(size=20_000).astype(np.float32)
    points = calibrate(scores, [1e-2, 1e-3], reference_rate_hz=REFERENCE_RATE_HZ, prescales=[1, 4])
    fields = points[1].bundle_fields()
    working_point = WorkingPoint(**fields)
    assert working_point.name == "eff_1e-3"
    assert working_point.n_background == 20_000
    assert working_point.expected_rate_hz == pytest.approx(REFERENCE_RATE_HZ * 20 / 20_000)
    assert fields["prescale"] == 4
    assert fields["accepted_rate_hz"] == pytest.approx(working_point.expected_rate_hz / 4)
    # The service compares float32 scores with the float32 threshold: the same events pass.
    served = np.count_nonzero(scores > np.float32(working_point.threshold))
    assert served == fields["n_background_passing"] == 20


def test_too_small_a_sample_is_refused_with_the_size_needed() -> None:
    with pytest.raises(TooFewEvents, match="at least 1000 events"):
        calibrate(np.arange(999.0), [1e-2], reference_rate_hz=1.0)
    with pytest.raises(BadSample, match="one integer >= 1 per target"):
        calibrate(np.arange(1000.0), [1e-2], reference_rate_hz=1.0, prescales=[0])


def test_intervals_cover_the_true_efficiency_in_95_percent_of_repeats() -> None:
    """Thresholds from one seeded normal sample each; the true efficiency of a threshold t is
    norm.sf(t) (the limit of an infinitely large fresh sample)."""
    rng = np.random.default_rng(11)
    repeats, covered = 400, np.zeros(2)
    for _ in range(repeats):
        points = calibrate(rng.normal(size=20_000), [1e-2, 1e-3], reference_rate_hz=1.0)
        for i, point in enumerate(points):
            low, high = point.background.ci95
            covered[i] += low <= stats.norm.sf(point.threshold) <= high
    coverage = covered / repeats
    assert np.all(coverage >= 0.92), coverage  # Clopper-Pearson is conservative: >= 95%
    assert np.all(coverage <= 0.995), coverage


def test_measure_efficiency_and_names() -> None:
    efficiency = measure_efficiency(np.array([0.0, 1.0, 2.0, 3.0]), 1.0)
    assert efficiency[:3] == (2, 4, 0.5)
    with pytest.raises(BadSample, match="non-finite"):
        measure_efficiency(np.array([0.0, np.nan]), 1.0)
    assert working_point_name(1e-4) == "eff_1e-4"
    assert working_point_name(2.5e-4) == "eff_2.5e-4"
    assert working_point_name(0.3) == "eff_3e-1"


@pytest.mark.parametrize(("efficiency", "n_events"), [(1e-2, 1_000), (1e-3, 1_000), (1e-3, 20_000)])
def test_the_fresh_sample_rate_check_rarely_fails_a_right_rate_and_catches_wrong_ones(
    efficiency: float, n_events: int
) -> None:
    """Repeated fresh samples at the calibrated efficiency fail at most ~1% (the 99% check) or
    ~0.1% (the 99.9% check below 5 expected); most fail at 4x the efficiency (10x where the
    fresh sample expects a single event: the sparse check only catches gross errors)."""
    rng = np.random.default_rng(5)

    def failure_rate(true_efficiency: float) -> float:
        counts = rng.binomial(n_events, true_efficiency, size=2_000)
        verdicts = {k: check_rate(int(k), n_events, efficiency) for k in np.unique(counts)}
        return float(np.mean([not verdicts[k].consistent for k in counts]))

    check = check_rate(0, n_events, efficiency)
    assert check.confidence == (0.99 if n_events * efficiency >= 5 else 0.999)
    assert failure_rate(efficiency) <= (1 - check.confidence) + 0.006
    assert failure_rate((4 if n_events * efficiency >= 5 else 10) * efficiency) > 0.5


def test_with_the_calibration_size_the_check_allows_for_the_calibration_samples_spread() -> None:
    """A threshold set on 20,000 background events at 1e-2 has a true efficiency that scatters
    by ~7% around its calibrated one; a fresh sample of the same size sees that scatter too.
    The one-sample rule then fails right thresholds far more often than 1%, the two-sample
    test about 1%, and both still catch a rate off by 1.5x in most samples."""
    rng = np.random.default_rng(7)
    n, k = 20_000, 200
    # the efficiency above the k-th highest of n background scores is Beta(k + 1, n - k)
    true_efficiencies = rng.beta(k + 1, n - k, size=3_000)

    def failure_rate(scale: float, n_calibration: int | None) -> float:
        counts = rng.binomial(n, np.minimum(scale * true_efficiencies, 1.0))
        return float(
            np.mean([not check_rate(int(m), n, k / n, n_calibration=n_calibration).consistent
                     for m in counts])
        )  # fmt: skip

    assert failure_rate(1.0, None) > 0.03
    assert failure_rate(1.0, n) <= 0.01 + 0.006
    assert failure_rate(1.5, n) > 0.5
    check = check_rate(251, n, k / n, n_calibration=n)
    assert check.p_value is not None and 0.01 < check.p_value < 0.05 and check.consistent
