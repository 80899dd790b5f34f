"""Fidelity metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.errors import BadSample
from training.fidelity import (
    bootstrap,
    fidelity_metrics,
    ks_null_95,
    ks_statistic,
    spearman_differences,
    spearman_matrix,
    wasserstein_1,
)


def test_ks_is_the_largest_cdf_gap():
    # F_a jumps by 1/4 at 0, 1, 2, 3 and F_b at 2, 3, 4, 5: the gap is 1/2 on [1, 4)
    assert ks_statistic(np.array([0.0, 1, 2, 3]), np.array([2.0, 3, 4, 5])) == 0.5
    assert ks_statistic(np.array([1.0, 2, 3]), np.array([3.0, 1, 2])) == 0.0
    assert ks_statistic(np.zeros(3), np.ones(5)) == 1.0


def test_wasserstein_is_the_area_between_the_cdfs():
    assert wasserstein_1(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == pytest.approx(2.0)
    x = np.random.default_rng(1).normal(size=1000)
    assert wasserstein_1(x, x + 0.3) == pytest.approx(0.3)
    # one point moved by 4 of four points: 4 / 4
    assert wasserstein_1(np.array([0.0, 1, 2, 3]), np.array([0.0, 1, 2, 7])) == pytest.approx(1.0)


def test_spearman_of_monotone_and_reversed_columns():
    x = np.random.default_rng(2).normal(size=200)
    table = np.stack([x, np.exp(x), -(x**3)], axis=1)
    expected = np.array([[1, 1, -1], [1, 1, -1], [-1, -1, 1]], dtype=float)
    np.testing.assert_allclose(spearman_matrix(table), expected, atol=1e-12)
    flipped = np.stack([x, -np.exp(x), -(x**3)], axis=1)  # column 1 reversed: |delta| 2 twice
    max_difference, frobenius = spearman_differences(flipped, table)
    assert max_difference == pytest.approx(2.0)
    assert frobenius == pytest.approx(math.sqrt(4 * 2**2))  # entries (0,1),(1,0),(1,2),(2,1)


def test_a_constant_column_correlates_zero_not_nan():
    table = np.stack([np.arange(10.0), np.ones(10)], axis=1)
    np.testing.assert_array_equal(spearman_matrix(table), np.eye(2))


def test_ks_null_is_kolmogorovs_critical_value():
    assert ks_null_95(50_000, 50_000) == pytest.approx(1.3581 * math.sqrt(2 / 50_000), rel=1e-4)


def test_bootstrap_errors_match_the_known_spread_of_a_mean():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=4000), rng.normal(size=4000)
    (difference,) = bootstrap(
        lambda x, y: [x.mean() - y.mean()], a, b, n_bootstrap=300, rng=np.random.default_rng(4)
    )
    assert difference.error == pytest.approx(math.sqrt(2 / 4000), rel=0.15)
    (single,) = bootstrap(lambda x, y: [0.0], a, b, n_bootstrap=1, rng=rng)
    assert math.isnan(single.error)


def test_fidelity_metrics_of_a_shifted_sample_and_its_discrete_frequencies():
    rng = np.random.default_rng(5)
    reference = np.stack([rng.normal(size=3000), rng.integers(0, 3, 3000)], axis=1)
    generated = np.stack([rng.normal(size=3000) + 0.5, rng.integers(0, 2, 3000)], axis=1)
    result = fidelity_metrics(
        generated, reference, features=["x", "n"], discrete=["n"], n_bootstrap=20, seed=0
    )
    x = result["features"]["x"]
    # two unit normals 0.5 apart: KS = 2 Phi(0.25) - 1 = 0.197, W1 = 0.5
    assert x["ks"]["value"] == pytest.approx(0.197, abs=3 * x["ks"]["error"] + 0.01)
    assert x["w1"]["value"] == pytest.approx(0.5, abs=0.05)
    assert x["ks"]["value"] > 5 * x["ks_null_95"]
    frequencies = result["features"]["n"]["frequencies"]
    assert frequencies["values"] == [0.0, 1.0, 2.0]
    assert frequencies["generated"][2] == 0.0
    assert frequencies["reference"][2] == pytest.approx(1 / 3, abs=0.03)
    with pytest.raises(BadSample, match="must agree"):
        fidelity_metrics(generated, reference, features=["x"])
