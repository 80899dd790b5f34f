"""How close generated events are to simulated ones, each number with a bootstrap uncertainty.
numpy/scipy only.

Per feature: the two-sample Kolmogorov-Smirnov statistic (the largest distance between the
two empirical CDFs) and the 1-Wasserstein distance (the area between them, in the feature's
units, and divided by the reference's standard deviation so features compare). Across
features: the Spearman rank-correlation matrices of both samples, their largest absolute
difference and the Frobenius norm of the difference. Discrete features also get their
category frequencies side by side.

Uncertainties: both samples are resampled with replacement ``n_bootstrap`` times and each
statistic recomputed; ``error`` is the standard deviation of those replicas. A distance
between two samples is biased upwards by their finite sizes (two samples of one distribution
have KS > 0), so ``ks_null_95`` gives the KS that two independent samples of these sizes stay
below with 95% probability (the asymptotic Kolmogorov critical value): a generator's KS near
it is as good as these sample sizes can tell.

The classifier two-sample test lives in ``generator_evaluation`` (it trains a torch network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from training.errors import BadSample

__all__ = [
    "Bootstrapped",
    "bootstrap",
    "fidelity_metrics",
    "ks_null_95",
    "ks_statistic",
    "spearman_differences",
    "spearman_matrix",
    "wasserstein_1",
]


class Bootstrapped(NamedTuple):
    """A statistic on the full samples and the standard deviation of its bootstrap replicas."""

    value: float
    error: float


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """sup_x |F_a(x) - F_b(x)| of the two empirical CDFs (ties handled exactly): both CDFs are
    right-continuous steps, so the supremum is reached at one of the pooled values. (The
    statistic of ``scipy.stats.ks_2samp`` without its p-value, which is all this needs.)"""
    a, b = np.sort(_column(a, "a")), np.sort(_column(b, "b"))
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / len(a)
    cdf_b = np.searchsorted(b, pooled, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def ks_null_95(n_a: int, n_b: int) -> float:
    """The KS two independent samples of sizes n_a, n_b exceed with 5% probability:
    1.358 sqrt((n_a + n_b) / (n_a n_b)) (Kolmogorov's asymptotic distribution)."""
    return float(stats.kstwobign.ppf(0.95) * np.sqrt((n_a + n_b) / (n_a * n_b)))


def wasserstein_1(a: np.ndarray, b: np.ndarray) -> float:
    """The 1-Wasserstein (earth mover's) distance of two 1-d samples, in their units."""
    return float(stats.wasserstein_distance(_column(a, "a"), _column(b, "b")))


def spearman_matrix(x: np.ndarray) -> np.ndarray:
    """(k, k) Spearman rank correlations of the columns of ``x`` (N, k); a constant column
    correlates 0 with the others (and 1 with itself) instead of NaN."""
    ranks = np.apply_along_axis(stats.rankdata, 0, _table(x, "x"))
    ranks -= ranks.mean(axis=0)
    norms = np.sqrt((ranks**2).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    matrix = (ranks.T @ ranks) / np.outer(safe, safe)
    np.fill_diagonal(matrix, 1.0)
    return matrix


def spearman_differences(generated: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """max |rho_gen - rho_ref| over feature pairs, and the Frobenius norm of the difference."""
    difference = spearman_matrix(generated) - spearman_matrix(reference)
    return float(np.abs(difference).max()), float(np.linalg.norm(difference))


def bootstrap(
    statistic: Any,
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> list[Bootstrapped]:
    """``statistic(a, b) -> sequence of floats`` on the full samples, with the standard
    deviation of ``n_bootstrap`` replicas, both samples resampled (rows) with replacement."""
    value = np.asarray(statistic(a, b), dtype=np.float64)
    if n_bootstrap < 2:
        return [Bootstrapped(float(v), float("nan")) for v in value]
    replicas = np.array(
        [
            statistic(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
            for _ in range(n_bootstrap)
        ],
        dtype=np.float64,
    )
    errors = replicas.std(axis=0, ddof=1)
    return [Bootstrapped(float(v), float(e)) for v, e in zip(value, errors, strict=True)]


def fidelity_metrics(
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    features: Sequence[str],
    discrete: Sequence[str] = (),
    n_bootstrap: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Every distance of this module between ``generated`` and ``reference`` (N, k), columns
    named by ``features``. JSON-ready: ``{"features": {name: {ks, ks_null_95, w1,
    w1_over_std, discrete, [frequencies]}}, "spearman": {max_abs_difference, frobenius,
    generated, reference}, "n_generated", "n_reference", "n_bootstrap"}``."""
    generated, reference = _table(generated, "generated"), _table(reference, "reference")
    if generated.shape[1] != reference.shape[1] or len(features) != reference.shape[1]:
        raise BadSample(
            f"generated {generated.shape[1]} and reference {reference.shape[1]} columns, "
            f"{len(features)} feature names: they must agree"
        )
    rng = np.random.default_rng(seed)
    null = ks_null_95(len(generated), len(reference))
    result: dict[str, Any] = {}
    for i, name in enumerate(features):
        a, b = generated[:, i], reference[:, i]
        scale = float(b.std()) or 1.0
        ks, w1 = bootstrap(
            lambda g, r: (ks_statistic(g, r), wasserstein_1(g, r)),
            a,
            b,
            n_bootstrap=n_bootstrap,
            rng=rng,
        )
        entry = {
            "ks": ks._asdict(),
            "ks_null_95": null,
            "w1": w1._asdict(),
            "w1_over_std": {"value": w1.value / scale, "error": w1.error / scale},
            "discrete": name in discrete,
        }
        if name in discrete:
            entry["frequencies"] = _frequencies(a, b)
        result[name] = entry
    max_difference, frobenius = bootstrap(
        spearman_differences, generated, reference, n_bootstrap=n_bootstrap, rng=rng
    )
    return {
        "n_generated": len(generated),
        "n_reference": len(reference),
        "n_bootstrap": n_bootstrap,
        "features": result,
        "spearman": {
            "max_abs_difference": max_difference._asdict(),
            "frobenius": frobenius._asdict(),
            "generated": spearman_matrix(generated).tolist(),
            "reference": spearman_matrix(reference).tolist(),
        },
    }


def _frequencies(generated: np.ndarray, reference: np.ndarray) -> dict[str, list[float]]:
    """Fraction of each integer value in both samples (values of either)."""
    values = np.union1d(np.unique(generated), np.unique(reference))
    return {
        "values": values.tolist(),
        "generated": [float(np.mean(generated == v)) for v in values],
        "reference": [float(np.mean(reference == v)) for v in values],
    }


def _column(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or not np.isfinite(array).all():
        raise BadSample(f"{name} must be a non-empty finite (N,) array, got shape {array.shape}")
    return array


def _table(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2 or not np.isfinite(array).all():
        raise BadSample(
            f"{name} must be a finite (N, k) array with N >= 2, got shape {list(array.shape)}"
        )
    return array
