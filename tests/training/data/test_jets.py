"""Jets: the contract-1b layout, the landscape selection, truth labels and features."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest

from training.config import JetSampleConfig
from training.data.images import images_from_constituents
from training.data.jets import (
    FEATURE_NAMES,
    features_from_constituents,
    generate_jets,
    jets_from_constituents,
)
from training.data.pythia import jet_process_settings
from training.errors import NaeError

ATTRS = (
    "process",
    "seed",
    "settings",
    "n_tried",
    "n_events_generated",
    "cross_section_pb",
    "selection_efficiency",
    "versions",
    "machine",
)


def _pt(constituents: np.ndarray) -> np.ndarray:
    return np.hypot(constituents[..., 1].astype(np.float64), constituents[..., 2])


@pytest.mark.pythia
@pytest.mark.parametrize("name", ["qcd_jets", "top_jets"])
def test_shard_follows_contract(name, request):
    shard = request.getfixturevalue(name)
    n = len(shard)
    expected = {
        "constituents": (np.float32, (n, 200, 4)),
        "images": (np.float32, (n, 40, 40)),
        "jet": (np.float32, (n, 4)),
        "label": (np.int8, (n,)),
        **{f"features/{f}": (np.float32, (n,)) for f in FEATURE_NAMES},
    }
    assert set(shard.arrays) == set(expected)
    for key, (dtype, shape) in expected.items():
        assert shard.arrays[key].dtype == dtype, key
        assert shard.arrays[key].shape == shape, key
        assert np.isfinite(shard.arrays[key]).all(), key
    assert set(ATTRS) <= set(shard.attrs)
    assert shard.attrs["n_events_generated"] >= n
    assert shard.attrs["cross_section_pb"] > 0
    versions = json.loads(shard.attrs["versions"])
    assert set(versions) == {"pythia8mc", "fastjet", "numpy", "nae-trigger"}
    assert shard.attrs["machine"].startswith(platform.machine())


@pytest.mark.pythia
def test_labels_follow_the_truth_tag(qcd_jets, top_jets):
    assert (qcd_jets.arrays["label"] == 0).all()
    assert (top_jets.arrays["label"] == 1).all()


@pytest.mark.pythia
@pytest.mark.parametrize("name", ["qcd_jets", "top_jets"])
def test_constituents_are_pt_ordered_and_zero_padded(name, request):
    constituents = request.getfixturevalue(name).arrays["constituents"]
    pt = _pt(constituents)
    assert (np.diff(pt, axis=1) <= 1e-4 * pt[:, :-1]).all()
    present = constituents[..., 0] > 0
    n = present.sum(axis=1)
    assert (present == (np.arange(200) < n[:, None])).all()  # padding only at the end
    assert (constituents[~present] == 0).all()
    np.testing.assert_array_equal(
        request.getfixturevalue(name).arrays["features/n_constituents"], n
    )


@pytest.mark.pythia
@pytest.mark.parametrize("name", ["qcd_jets", "top_jets"])
def test_jets_are_in_the_landscape_selection(name, request):
    shard = request.getfixturevalue(name)
    jet = shard.arrays["jet"]
    np.testing.assert_array_equal(jet, jets_from_constituents(shard.arrays["constituents"]))
    assert ((jet[:, 0] >= 550) & (jet[:, 0] < 650)).all()
    assert (np.abs(jet[:, 1]) < 2).all()


@pytest.mark.pythia
def test_stored_features_and_images_are_reproduced_from_constituents(qcd_jets):
    """What the landscape converter relies on: constituents alone give the same arrays."""
    constituents = qcd_jets.arrays["constituents"]
    features = features_from_constituents(constituents)
    for name in FEATURE_NAMES:
        np.testing.assert_array_equal(features[name], qcd_jets.arrays[f"features/{name}"])
    image_config = JetSampleConfig(process="qcd").image
    np.testing.assert_array_equal(
        images_from_constituents(constituents, image_config), qcd_jets.arrays["images"]
    )


@pytest.mark.pythia
@pytest.mark.parametrize("name", ["qcd_jets", "top_jets"])
def test_features_are_consistent(name, request):
    arrays = request.getfixturevalue(name).arrays
    f = {n: arrays[f"features/{n}"].astype(np.float64) for n in FEATURE_NAMES}
    np.testing.assert_array_equal(arrays["features/mass"], arrays["jet"][:, 3])
    assert (f["msd"] <= f["mass"] * (1 + 1e-5) + 1e-3).all()
    np.testing.assert_allclose(f["log_msd"], np.log(np.maximum(f["msd"], 1.0)), rtol=1e-6)
    for ratio in ("tau21", "tau32"):
        assert ((f[ratio] >= 0) & (f[ratio] <= 1)).all(), ratio
    assert (f["tau3"] <= f["tau2"] + 1e-6).all() and (f["tau2"] <= f["tau1"] + 1e-6).all()
    assert ((f["ptd"] > 0) & (f["ptd"] <= 1)).all()
    assert (f["minor_axis"] <= f["major_axis"]).all()
    assert (f["girth"] > 0).all()


@pytest.mark.pythia
def test_top_jets_are_heavier_and_three_pronged(qcd_jets, top_jets):
    top, qcd = top_jets.arrays, qcd_jets.arrays
    assert np.median(top["features/mass"]) > np.median(qcd["features/mass"]) + 40
    assert np.median(top["features/tau32"]) < np.median(qcd["features/tau32"])


def test_two_particle_jet_features():
    """A jet of two massless particles: analytic mass, pT_D, and tau2 = tau3 = 0."""
    e1, e2, angle = 300.0, 200.0, 0.3
    constituents = np.zeros((1, 200, 4), dtype=np.float32)
    constituents[0, 0] = [e1, e1, 0.0, 0.0]
    constituents[0, 1] = [e2, e2 * np.cos(angle), e2 * np.sin(angle), 0.0]
    f = features_from_constituents(constituents)
    expected_mass = np.sqrt(2 * e1 * e2 * (1 - np.cos(angle)))
    np.testing.assert_allclose(f["mass"], expected_mass, rtol=1e-5)
    np.testing.assert_allclose(f["ptd"], np.hypot(e1, e2) / (e1 + e2), rtol=1e-5)
    assert f["n_constituents"][0] == 2
    assert f["tau2"][0] == pytest.approx(0.0, abs=1e-6) and f["tau32"][0] == 0.0
    assert f["tau1"][0] > 0


def test_a_jet_without_constituents_is_refused():
    with pytest.raises(NaeError, match="jet 1 has no constituents"):
        features_from_constituents(np.ones((2, 3, 4), dtype=np.float32) * [[[1]], [[0]]])


@pytest.mark.pythia
def test_same_seed_same_jets_and_progress_counts():
    config = JetSampleConfig(process="qcd", pthat_min_gev=440.0)  # fast; the path is the same
    steps: list[int] = []
    first = generate_jets(config, n_jets=6, seed=5, progress=steps.append)
    second = generate_jets(config, n_jets=6, seed=5)
    other = generate_jets(config, n_jets=6, seed=6)
    assert sum(steps) == 6 and len(first) == 6
    for key, value in first.arrays.items():
        np.testing.assert_array_equal(value, second.arrays[key], err_msg=key)
    assert first.attrs == second.attrs
    assert not np.array_equal(first.arrays["constituents"], other.arrays["constituents"])


@pytest.mark.pythia
def test_dark_jets_are_matched_to_dark_quarks():
    shard = generate_jets(JetSampleConfig(process="dark", detector=None), n_jets=8, seed=3)
    assert len(shard) == 8
    assert shard.arrays["label"].mean() >= 0.5  # most leading jets come from a dark quark


@pytest.mark.parametrize("r_inv", [0.0, 0.3, 1.0])
def test_dark_meson_decays_have_r_inv_invisible(r_inv):
    lines = jet_process_settings(JetSampleConfig(process="dark", r_inv=r_inv))
    for meson in ("4900111", "4900113"):
        channels = [line.split("=")[1].split() for line in lines if line.startswith(f"{meson}:")]
        channels = [c for c in channels if len(c) == 5]  # onMode, BR, meMode, two products
        invisible = sum(float(c[1]) for c in channels if c[3] == "51")
        assert invisible == pytest.approx(r_inv)
        assert sum(float(c[1]) for c in channels) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image": {"n_pixels": 32}}, "40 x 40 images"),
        ({"n_constituents": 100}, "200 constituents"),
    ],
)
def test_a_config_the_shard_layout_cannot_hold_is_refused_before_generation(overrides, message):
    with pytest.raises(ValueError, match=message):
        JetSampleConfig(process="qcd", **overrides)
