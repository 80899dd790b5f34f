"""``OnnxModel`` on real tiny ONNX graphs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.bundle import InvalidBundle, load_bundle
from service.runtime import OnnxModel


def test_scores_match_numpy_and_triggers_follow_thresholds(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    directory = bundle_factory(tmp_path, "ev", 1, (19, 4), {"loose": 70.0, "tight": 90.0}, mu=0.5)
    model = OnnxModel(load_bundle(directory), directory)
    x = np.random.default_rng(1).normal(size=(500, 19, 4)).astype(np.float32)
    scores = model.score(x)
    expected = ((x.astype(np.float64) - 0.5) ** 2).sum(axis=(1, 2))
    assert scores.dtype == np.float32 and scores.shape == (500,)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    triggers = model.triggers(scores)
    assert list(triggers) == ["loose", "tight"]
    np.testing.assert_array_equal(triggers["loose"], scores > 70.0)
    np.testing.assert_array_equal(triggers["tight"], scores > 90.0)
    assert 0 < triggers["tight"].sum() < triggers["loose"].sum() < 500


def test_a_graph_that_disagrees_with_bundle_json_is_refused(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    directory = bundle_factory(tmp_path, "ev", 1, (19, 4))
    bundle = load_bundle(directory)
    wrong_shape = bundle.model_copy(
        update={"input": bundle.input.model_copy(update={"shape": [19, 3]})}
    )
    with pytest.raises(InvalidBundle, match="input shape"):
        OnnxModel(wrong_shape, directory)
    wrong_output = bundle.model_copy(
        update={"output": bundle.output.model_copy(update={"name": "y"})}
    )
    with pytest.raises(InvalidBundle, match="outputs"):
        OnnxModel(wrong_output, directory)


def test_an_unreadable_graph_is_refused(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    directory = bundle_factory(tmp_path, "ev", 1, (19, 4))
    bundle = load_bundle(directory)
    (directory / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(InvalidBundle, match="ONNX Runtime cannot load"):
        OnnxModel(bundle, directory)


def _ranged_model(tmp_path: Path, bundle_factory: Callable[..., Path], ranges: object) -> OnnxModel:
    features = ["pt [GeV]", "eta", "phi", "class id"]
    directory = bundle_factory(tmp_path, "ev", 1, (19, 4), features=features, ranges=ranges)
    return OnnxModel(load_bundle(directory), directory)


@pytest.mark.parametrize("n_events", [1, 53, 54, 200, 1000])  # below, at and above a block
def test_input_ranges_agree_with_a_plain_comparison(
    tmp_path: Path, bundle_factory: Callable[..., Path], n_events: int
) -> None:
    model = _ranged_model(
        tmp_path, bundle_factory, {"pt [GeV]": [0, None], "eta": [-5, 5], "class id": [0, 4]}
    )
    ranges = model.ranges
    assert ranges is not None
    rng = np.random.default_rng(n_events)
    x = rng.random((n_events, 19, 4), dtype=np.float32)  # inside every range
    assert ranges.contains(x) and ranges.first_violation(x) is None
    for value, column in [(-0.1, 0), (5.5, 1), (4.5, 3), (np.nan, 2), (np.inf, 0)]:
        bad = x.copy()
        event, row = n_events - 1, 7
        bad[event, row, column] = value
        assert not ranges.contains(bad)
        if np.isfinite(value):
            assert ranges.first_violation(bad) == (event, (row, column))
    assert ranges.describe((7, 1)) == ("row 7, 'eta'", "[-5, 5]")
    assert ranges.describe((0, 0)) == ("row 0, 'pt [GeV]'", "[0, inf]")


def test_one_range_applies_to_every_value(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    model = _ranged_model(tmp_path, bundle_factory, [[0.0, 1.0]])
    assert model.ranges is not None
    x = np.full((3, 19, 4), 0.5, np.float32)
    assert model.ranges.contains(x)
    x[2, 18, 3] = 1.01
    assert model.ranges.first_violation(x) == (2, (18, 3))
