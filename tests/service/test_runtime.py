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
