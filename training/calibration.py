"""Trigger thresholds at target background efficiencies, with Clopper-Pearson intervals and rates
in Hz. numpy/scipy only.

A working point is a threshold on the anomaly score; an event triggers when
``score > threshold``, the rule of ``service.runtime.OnnxModel.fired``. The threshold is the score
order statistic at which the target fraction of a background sample passes
(``training.metrics.threshold_at_efficiency``); that sample must be apart from the training and
validation data, or the efficiency is biased low where the model has learned its events.

What is stored per working point, and why:

- the background efficiency measured on the calibration sample (``n_passing / n_background``)
  and its exact Clopper-Pearson 95% interval: the threshold is the (n - k)-th order statistic,
  whose true efficiency follows Beta(k + 1, n - k), and the Clopper-Pearson interval of k of n
  covers it with at least 95% probability (tested by repetition);
- the threshold's own interval: the thresholds at the interval's ends, i.e. how far the threshold
  could move for a sample of this size;
- the expected trigger rate = efficiency x reference input rate, and its interval; the rate is
  the rate of events *passing the threshold*, which is what the service's ``nae_trigger_rate_hz``
  measures;
- a prescale (keep one of every ``prescale`` passing events), recorded apart from the threshold
  and applied downstream of it, with the accepted rate it implies.

Fewer than ``training.metrics.MIN_PASSING_EVENTS`` expected passing events are refused with the
sample size needed: a threshold set by a handful of events has an interval too wide to serve.

``check_rate`` is the one rule by which a fresh background sample (other seeds) confirms a
calibrated working point, at 99% where the fresh sample expects at least
``MIN_EXPECTED_PASSING`` passing events and at 99.9% below (too few to measure a rate, but
enough to catch a gross miscalibration). Given the calibration sample's size, the two counts
are compared as two samples: conditional on their sum, the fresh count is binomial with the
fresh sample's share of all events when both samples have the same efficiency, and the exact
two-sided p-value of that must reach 1 - confidence. Without it, the calibrated efficiency must
lie inside the fresh count's Clopper-Pearson interval, which treats the calibration as exact:
right for a fresh sample much smaller than the calibration sample, but with equal sizes a
right threshold fails it far more often than 1% (session 23, simulated with 4,000 thresholds
set on 20,000 events at 1e-2, each checked on 20,000 fresh ones: 6.4%, 6.2% in another run;
the two-sample test 0.75%).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from training.errors import BadSample
from training.metrics import Interval, clopper_pearson, threshold_at_efficiency

__all__ = [
    "CONFIDENCE",
    "MIN_EXPECTED_PASSING",
    "Efficiency",
    "RateCheck",
    "WorkingPointCalibration",
    "calibrate",
    "check_rate",
    "measure_efficiency",
    "working_point_name",
]

CONFIDENCE = 0.95  # the bundle contract's ``background_efficiency_ci95``
MIN_EXPECTED_PASSING = 5  # fresh events expected to pass for the 99% check (``check_rate``)
RATE_CHECK_CONFIDENCE = 0.99
RATE_CHECK_CONFIDENCE_SPARSE = 0.999


class Efficiency(NamedTuple):
    """``n_passing`` of ``n_events`` pass; ``value`` their ratio, ``ci95`` its Clopper-Pearson
    95% interval."""

    n_passing: int
    n_events: int
    value: float
    ci95: Interval


class WorkingPointCalibration(NamedTuple):
    """One calibrated working point; ``bundle_fields()`` gives the bundle's working point."""

    name: str
    target_background_efficiency: float
    threshold: float
    threshold_ci95: Interval  # (at the efficiency interval's high end, at its low end)
    background: Efficiency
    reference_rate_hz: float
    prescale: int

    @property
    def expected_rate_hz(self) -> float:
        """Rate of events passing the threshold [Hz], before the prescale."""
        return self.background.value * self.reference_rate_hz

    def bundle_fields(self) -> dict[str, object]:
        """The fields of ``service.bundle.WorkingPoint``, plus the optional intervals, prescale
        and accepted rate (contract 2 allows extra fields)."""
        low, high = self.background.ci95
        return {
            "name": self.name,
            "target_background_efficiency": self.target_background_efficiency,
            "threshold": self.threshold,
            "background_efficiency": self.background.value,
            "background_efficiency_ci95": [low, high],
            "n_background": self.background.n_events,
            "expected_rate_hz": self.expected_rate_hz,
            "n_background_passing": self.background.n_passing,
            "threshold_ci95": list(self.threshold_ci95),
            "expected_rate_hz_ci95": [low * self.reference_rate_hz, high * self.reference_rate_hz],
            "prescale": self.prescale,
            "accepted_rate_hz": self.expected_rate_hz / self.prescale,
        }


def calibrate(
    background_scores: np.ndarray,
    target_efficiencies: Sequence[float],
    *,
    reference_rate_hz: float,
    prescales: Sequence[int] | None = None,
) -> list[WorkingPointCalibration]:
    """Working points at ``target_efficiencies`` on a held-out background sample ``(N,)``.

    ``reference_rate_hz`` is the input event rate (``service.bundle.REFERENCE_RATE_HZ`` for the
    LHC); ``prescales`` one integer >= 1 per target (default all 1). Raises ``TooFewEvents``
    when a target leaves fewer than ten expected passing events, naming the sample size needed.
    """
    scores = np.sort(np.asarray(background_scores, dtype=np.float64))
    targets = [float(target) for target in target_efficiencies]
    prescales = [1] * len(targets) if prescales is None else [int(p) for p in prescales]
    if len(prescales) != len(targets) or any(p < 1 for p in prescales):
        raise BadSample(
            f"prescales {prescales} must be one integer >= 1 per target efficiency {targets}"
        )
    if len(set(map(working_point_name, targets))) != len(targets):
        raise BadSample(f"target efficiencies {targets} must be distinct")
    if not reference_rate_hz > 0:
        raise BadSample(f"reference_rate_hz must be positive, got {reference_rate_hz}")
    calibrations = []
    for target, prescale in zip(targets, prescales, strict=True):
        threshold = threshold_at_efficiency(scores, target)
        background = measure_efficiency(scores, threshold)
        low, high = background.ci95  # 0 < low, high < 1: at least ten pass, one does not
        threshold_ci95 = Interval(
            threshold_at_efficiency(scores, high, min_passing=0),
            threshold_at_efficiency(scores, low, min_passing=0),
        )
        calibrations.append(
            WorkingPointCalibration(
                name=working_point_name(target),
                target_background_efficiency=target,
                threshold=threshold,
                threshold_ci95=threshold_ci95,
                background=background,
                reference_rate_hz=float(reference_rate_hz),
                prescale=prescale,
            )
        )
    return calibrations


def measure_efficiency(scores: np.ndarray, threshold: float) -> Efficiency:
    """The fraction of ``scores`` ``(N,)`` with ``score > threshold`` and its 95% interval.

    Scores are compared as given; the service compares float32 scores with the threshold cast
    to float32, so pass float32 scores and a threshold that is one of them (as ``calibrate``
    makes) for counts that agree exactly.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1 or len(scores) == 0:
        raise BadSample(f"scores must be a non-empty (N,) array, got shape {list(scores.shape)}")
    if not np.isfinite(scores).all():
        raise BadSample("scores hold non-finite values: the model produced NaN or infinity")
    n_passing = int(np.count_nonzero(scores > threshold))
    return Efficiency(
        n_passing,
        len(scores),
        n_passing / len(scores),
        clopper_pearson(n_passing, len(scores), confidence=CONFIDENCE),
    )


class RateCheck(NamedTuple):
    """``check_rate``'s verdict: ``n_passing`` of ``n_events`` fresh events pass, ``interval``
    is their Clopper-Pearson interval at ``confidence``, ``consistent`` whether it holds the
    calibrated ``efficiency``."""

    n_passing: int
    n_events: int
    efficiency: float
    confidence: float
    interval: Interval
    consistent: bool
    p_value: float | None = None  # the two-sample test's, where the calibration size was given


def check_rate(
    n_passing: int, n_events: int, efficiency: float, *, n_calibration: int | None = None
) -> RateCheck:
    """Whether ``n_passing`` of ``n_events`` fresh background events passing a working point
    agree with its calibrated background ``efficiency``, measured on ``n_calibration`` events
    where given (the rule of the module docstring)."""
    from scipy import stats

    if n_events < 1 or not 0 <= n_passing <= n_events:
        raise BadSample(f"{n_passing} passing of {n_events} events is not a count")
    sparse = n_events * efficiency < MIN_EXPECTED_PASSING
    confidence = RATE_CHECK_CONFIDENCE_SPARSE if sparse else RATE_CHECK_CONFIDENCE
    interval = clopper_pearson(n_passing, n_events, confidence=confidence)
    if n_calibration is None:
        consistent = bool(interval.low <= efficiency <= interval.high)
        return RateCheck(n_passing, n_events, efficiency, confidence, interval, consistent)
    calibration_passing = round(efficiency * n_calibration)
    both = n_passing + calibration_passing
    p_value = (
        1.0
        if both == 0
        else float(stats.binomtest(n_passing, both, n_events / (n_events + n_calibration)).pvalue)
    )
    consistent = p_value >= 1 - confidence
    return RateCheck(n_passing, n_events, efficiency, confidence, interval, consistent, p_value)


def working_point_name(efficiency: float) -> str:
    """``eff_1e-3`` for 0.001, ``eff_2.5e-4`` for 0.00025: the bundle's working point name."""
    mantissa, exponent = f"{efficiency:.6e}".split("e")
    return f"eff_{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
