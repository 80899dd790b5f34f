"""Separation metrics of anomaly scores, each with its statistical uncertainty. numpy/scipy only.

Conventions, shared with calibration and the service (``service/runtime.py``): a higher score is
more anomalous, and an event *passes* a threshold when ``score > threshold`` (strictly). An
efficiency is the fraction of a sample that passes.

Uncertainties, and why each is the one used:

- AUC: DeLong's non-parametric standard error of the Mann-Whitney statistic (DeLong, DeLong,
  Clarke-Pearson 1988). It is the asymptotic variance of the rank statistic itself, so unlike
  Hanley-McNeil it assumes no score distribution, and unlike a bootstrap it costs one sort.
- Efficiencies (rejection, TPR): exact Clopper-Pearson intervals on the binomial count of events
  passing, which stay honest at the few-event counts of trigger working points. Only the count
  at the chosen threshold is treated as random; the threshold's own fluctuation (from the sample
  that fixed it) is not propagated.

Every result is an ``Estimate(value, error, low, high)``: ``low, high`` is the interval at the
requested confidence (default one standard deviation, 68.27%), ``error`` its half width, for
tables. Where a value is unbounded (no background passes) it is ``inf`` and ``low`` holds the
lower limit: never a finite number that looks like a measurement.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import optimize, spatial, special, stats

from training.errors import BadSample, TooFewEvents

__all__ = [
    "MAX_EMD_POINTS",
    "MIN_PASSING_EVENTS",
    "ONE_SIGMA",
    "Estimate",
    "Interval",
    "RocCurve",
    "clopper_pearson",
    "emd_with_error",
    "energy_movers_distance",
    "fpr_reachable",
    "min_events_for_efficiency",
    "rejection_at_signal_efficiency",
    "roc_auc",
    "roc_curve",
    "threshold_at_efficiency",
    "tpr_at_fpr",
]

ONE_SIGMA = float(special.erf(1 / np.sqrt(2)))  # 0.6827: the coverage of +-1 standard deviation
# Below ~10 passing events an efficiency's relative uncertainty exceeds ~30% and the threshold
# is set by the one or two most extreme events: refuse rather than quote it.
MIN_PASSING_EVENTS = 10
# The exact assignment costs O(N^3) time and an (N, N) float64 matrix (4096 points: 128 MiB).
MAX_EMD_POINTS = 4096


class Estimate(NamedTuple):
    """A measured value with its uncertainty: ``low, high`` is the interval at the requested
    confidence, ``error`` half its width."""

    value: float
    error: float
    low: float
    high: float


class Interval(NamedTuple):
    """A confidence interval ``[low, high]``."""

    low: float
    high: float


class RocCurve(NamedTuple):
    """Efficiencies of ``score > threshold`` at each threshold, thresholds descending, from
    (0, 0) at the highest score to (1, 1) at ``-inf``. Arrays of equal length."""

    thresholds: np.ndarray
    background_efficiency: np.ndarray
    signal_efficiency: np.ndarray


def clopper_pearson(k: int, n: int, *, confidence: float = ONE_SIGMA) -> Interval:
    """Exact (Clopper-Pearson) interval on a binomial efficiency, ``k`` passing of ``n``.

    Central: each tail holds at most (1 - confidence) / 2; ``low = 0`` at ``k = 0`` and
    ``high = 1`` at ``k = n``. Conservative (coverage >= confidence) at every n.
    """
    if not 0 <= k <= n or n < 1:
        raise BadSample(f"a binomial count needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0 < confidence < 1:
        raise BadSample(f"confidence must lie in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return Interval(low, high)


def roc_auc(
    background_scores: np.ndarray, signal_scores: np.ndarray, *, confidence: float = ONE_SIGMA
) -> Estimate:
    """Area under the ROC curve: the probability that a signal event scores above a background
    event, ties counted half (the Mann-Whitney U statistic over n_S n_B).

    Error: DeLong's standard error; ``low, high`` is value +- z error, clipped to [0, 1]. At
    perfect separation the error is 0 (the statistic has no spread there); quote the sample
    sizes with it.
    """
    background = _scores(background_scores, "background_scores")
    signal = _scores(signal_scores, "signal_scores")
    n_b, n_s = len(background), len(signal)
    ranks = stats.rankdata(np.concatenate([background, signal]))  # midranks: ties count half
    # For each event, how many of the other class it beats (ties half): its rank in the pooled
    # sample minus its rank within its own class.
    signal_wins = ranks[n_b:] - stats.rankdata(signal)  # (n_S,), background events below
    background_losses = ranks[:n_b] - stats.rankdata(background)  # (n_B,), signal below
    auc = float(signal_wins.sum() / (n_s * n_b))
    v_signal = signal_wins / n_b  # DeLong's structural components
    v_background = 1.0 - background_losses / n_s
    variance = _variance(v_signal) / n_s + _variance(v_background) / n_b
    error = float(np.sqrt(variance))
    z = _z(confidence)
    return Estimate(auc, error, max(0.0, auc - z * error), min(1.0, auc + z * error))


def roc_curve(background_scores: np.ndarray, signal_scores: np.ndarray) -> RocCurve:
    """The ROC curve of ``score > threshold`` at every distinct score (plus ``-inf``)."""
    background = np.sort(_scores(background_scores, "background_scores"))
    signal = np.sort(_scores(signal_scores, "signal_scores"))
    thresholds = np.concatenate([np.unique(np.concatenate([background, signal]))[::-1], [-np.inf]])
    return RocCurve(
        thresholds,
        _passing_fraction(background, thresholds),
        _passing_fraction(signal, thresholds),
    )


def threshold_at_efficiency(
    scores: np.ndarray, efficiency: float, *, min_passing: int = MIN_PASSING_EVENTS
) -> float:
    """The threshold at which ``round(efficiency * N)`` events of ``scores`` pass.

    It is the largest score that does not pass (an order statistic, not an interpolation): the
    threshold is then one of the scores, so exactly that many pass (barring ties) also after the
    float32 cast the service makes. Raises ``TooFewEvents`` when ``efficiency * N`` is below
    ``min_passing`` (0 allows any efficiency, e.g. for the ends of an interval).
    """
    sorted_scores = np.sort(_scores(scores, "scores"))
    n = len(sorted_scores)
    needed = min_events_for_efficiency(efficiency, min_passing=min_passing)
    if n < needed:
        raise TooFewEvents(
            f"efficiency {efficiency:g} of {n} events leaves {efficiency * n:.3g} passing, "
            f"fewer than {min_passing}: use at least {needed} events"
        )
    k = min(int(np.floor(efficiency * n + 0.5)), n - 1)  # round half up; one event stays below
    return float(sorted_scores[n - k - 1])


def min_events_for_efficiency(efficiency: float, *, min_passing: int = MIN_PASSING_EVENTS) -> int:
    """The smallest sample in which ``efficiency`` leaves ``min_passing`` events passing."""
    if not 0 < efficiency < 1:
        raise BadSample(f"efficiency must lie in (0, 1), got {efficiency}")
    return max(1, int(np.ceil(min_passing / efficiency * (1 - 1e-12))))  # 10 / 1e-3 -> 10000


def fpr_reachable(n_background: int, fpr: float) -> bool:
    """Whether ``n_background`` events allow a threshold at false-positive rate ``fpr``
    (``tpr_at_fpr`` raises ``TooFewEvents`` exactly when this is False)."""
    return 0 < fpr < 1 and n_background >= min_events_for_efficiency(fpr)


def tpr_at_fpr(
    background_scores: np.ndarray,
    signal_scores: np.ndarray,
    fpr: float,
    *,
    confidence: float = ONE_SIGMA,
) -> Estimate:
    """Signal efficiency (true-positive rate) at the threshold where a fraction ``fpr`` of the
    background passes (``threshold_at_efficiency``), with the Clopper-Pearson interval of the
    signal count passing. Raises ``TooFewEvents`` where ``fpr_reachable`` is False."""
    threshold = threshold_at_efficiency(background_scores, fpr)
    signal = _scores(signal_scores, "signal_scores")
    k = int(np.count_nonzero(signal > threshold))
    return _efficiency_estimate(k, len(signal), confidence)


def rejection_at_signal_efficiency(
    background_scores: np.ndarray,
    signal_scores: np.ndarray,
    signal_efficiency: float,
    *,
    confidence: float = ONE_SIGMA,
) -> Estimate:
    """Background rejection 1/eps_B at the threshold where a fraction ``signal_efficiency`` of
    the signal passes, with the Clopper-Pearson interval of the background count passing.

    When no background event passes, the value and ``high`` are ``inf`` and ``low`` is the
    lower limit 1/eps_B,high at the requested confidence: more background is needed to measure it.
    """
    signal = np.sort(_scores(signal_scores, "signal_scores"))
    background = _scores(background_scores, "background_scores")
    if not 0 < signal_efficiency < 1:
        raise BadSample(f"signal_efficiency must lie in (0, 1), got {signal_efficiency}")
    k_signal = max(1, round(signal_efficiency * len(signal)))
    threshold = signal[len(signal) - k_signal - 1] if k_signal < len(signal) else -np.inf
    k = int(np.count_nonzero(background > threshold))
    n = len(background)
    low, high = clopper_pearson(k, n, confidence=confidence)
    rejection_low = 1.0 / high
    if k == 0:
        return Estimate(np.inf, np.inf, rejection_low, np.inf)
    rejection_high = 1.0 / low if low > 0 else np.inf
    return Estimate(n / k, (rejection_high - rejection_low) / 2, rejection_low, rejection_high)


def energy_movers_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Exact earth mover's distance between two equal-size point sets: the mean Euclidean
    distance of the optimal one-to-one matching (``scipy.optimize.linear_sum_assignment``).

    With equal weights the optimal transport plan is a permutation, so this is the exact
    Wasserstein-1 distance of the two empirical distributions. ``a`` and ``b`` are ``(N, ...)``;
    trailing axes are flattened (images become pixel vectors). The NAE's signal-agnostic model
    selection compares positive (data) and negative (model) samples with it (the CMS
    semi-visible-jet NAE study). At most ``MAX_EMD_POINTS`` points per set.
    """
    return emd_with_error(a, b)[0]


def emd_with_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``energy_movers_distance`` and its standard error, the spread of the matched distances
    over sqrt(N) (it ignores that the matching itself would change with the sample, so it is
    a lower bound). The error lets the NAE's checkpoint selection tell a real rise of the EMD
    from the noise of 256 points."""
    a = _points(a, "a")
    b = _points(b, "b")
    if a.shape != b.shape:
        raise BadSample(
            f"point sets must have equal shapes, got {list(a.shape)} and {list(b.shape)}: "
            "subsample the larger one"
        )
    if len(a) > MAX_EMD_POINTS:
        raise BadSample(
            f"{len(a)} points per set exceed {MAX_EMD_POINTS} (the exact matching is O(N^3)): "
            f"subsample to at most {MAX_EMD_POINTS}"
        )
    cost = spatial.distance.cdist(a, b)  # (N, N) Euclidean
    rows, columns = optimize.linear_sum_assignment(cost)
    matched = cost[rows, columns]
    error = float(matched.std(ddof=1) / math.sqrt(len(matched))) if len(matched) > 1 else 0.0
    return float(matched.mean()), error


def _efficiency_estimate(k: int, n: int, confidence: float) -> Estimate:
    low, high = clopper_pearson(k, n, confidence=confidence)
    return Estimate(k / n, (high - low) / 2, low, high)


def _passing_fraction(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    n_below = np.searchsorted(sorted_scores, thresholds, side="right")
    return 1.0 - n_below / len(sorted_scores)


def _variance(values: np.ndarray) -> float:
    return float(values.var(ddof=1)) if len(values) > 1 else 0.0


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise BadSample(f"confidence must lie in (0, 1), got {confidence}")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def _scores(scores: np.ndarray, name: str) -> np.ndarray:
    """A non-empty, finite, one-dimensional float64 copy of ``scores``."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise BadSample(f"{name} must be a non-empty (N,) array, got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise BadSample(f"{name} holds {bad} non-finite values: drop or fix them first")
    return array


def _points(points: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim < 2 or len(array) == 0:
        raise BadSample(f"{name} must be a non-empty (N, d) array, got shape {list(array.shape)}")
    array = array.reshape(len(array), -1)
    if not np.isfinite(array).all():
        raise BadSample(f"{name} holds non-finite values: drop or fix them first")
    return array
