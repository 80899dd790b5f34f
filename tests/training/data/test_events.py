"""The 19-row trigger format: contract, formatting, isolation, MET, filter, determinism."""

from __future__ import annotations

import json
import platform
from typing import get_args

import numpy as np
import pytest

from training.config import EventProcess, EventSampleConfig
from training.data.events import (
    CLASS_ELECTRON,
    CLASS_JET,
    CLASS_MET,
    CLASS_MUON,
    EventObjects,
    Objects,
    generate_events,
    objects_from_candidates,
    passes_lepton_filter,
    relative_isolation,
    trigger_rows_from_objects,
)
from training.data.pythia import PythiaRun, event_process_settings

# (first row, number of rows, class id) of each object block in the ADC2021 layout
BLOCKS = {
    "met": (0, 1, CLASS_MET),
    "electrons": (1, 4, CLASS_ELECTRON),
    "muons": (5, 4, CLASS_MUON),
    "jets": (9, 10, CLASS_JET),
}
TRUTH = EventSampleConfig(process="z", detector=None)


def _objects(event: list[int], pt: list[float]) -> Objects:
    """Objects at distinct, recognisable eta and phi derived from pT."""
    pt_array = np.asarray(pt, dtype=np.float64)
    return Objects(np.asarray(event, dtype=np.int64), pt_array, pt_array / 100, -pt_array / 100)


# --- pure formatting, isolation and MET on hand-made events ----------------------------------


def test_rows_keep_leading_objects_in_pt_order_and_pad_with_zeros():
    electrons = _objects([0, 0, 0, 0, 0], [12.0, 50.0, 7.0, 30.0, 20.0])  # 5 electrons, 4 fit
    jets = _objects([1] * 12, [float(p) for p in range(20, 140, 10)])  # 12 jets, 10 fit
    objects = EventObjects(
        electrons=electrons,
        muons=_objects([1], [25.0]),
        jets=jets,
        met_pt=np.array([5.0, 60.0]),
        met_phi=np.array([1.0, -2.0]),
    )
    rows = trigger_rows_from_objects(objects)

    assert rows.shape == (2, 19, 4)
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows[:, 0], [[5.0, 0.0, 1.0, 1], [60.0, 0.0, -2.0, 1]])
    np.testing.assert_allclose(rows[0, 1:5, 0], [50.0, 30.0, 20.0, 12.0])
    np.testing.assert_allclose(rows[0, 1:5, 1], [0.5, 0.3, 0.2, 0.12], rtol=1e-6)
    np.testing.assert_allclose(rows[0, 1:5, 2], [-0.5, -0.3, -0.2, -0.12], rtol=1e-6)
    assert (rows[0, 1:5, 3] == CLASS_ELECTRON).all()
    assert not rows[0, 5:].any()  # no muons, no jets in event 0: all zero, class 0 included
    assert not rows[1, 1:5].any()
    np.testing.assert_allclose(rows[1, 5], [25.0, 0.25, -0.25, CLASS_MUON])
    assert not rows[1, 6:9].any()
    np.testing.assert_allclose(rows[1, 9:, 0], np.arange(130.0, 30.0, -10.0))
    assert (rows[1, 9:, 3] == CLASS_JET).all()


def test_lepton_filter_uses_electron_and_muon_rows_only():
    rows = np.zeros((3, 19, 4), dtype=np.float32)
    rows[0, 0, 0] = 100.0  # MET alone does not pass
    rows[0, 9, 0] = 100.0  # nor a jet
    rows[1, 1, 0] = 24.0  # an electron
    rows[2, 5, 0] = 22.0  # a muon below threshold

    np.testing.assert_array_equal(passes_lepton_filter(rows, 23.0), [False, True, False])
    np.testing.assert_array_equal(passes_lepton_filter(rows, None), [True, True, True])


def test_met_is_minus_the_vector_sum_of_all_candidates(massless_particles):
    candidates = massless_particles(
        [
            (0, 13, 0, 40.0, 0.5, 0.0),  # an isolated muon along +x
            (0, 211, 0, 10.0, -1.0, np.pi / 2),  # a pion along +y
            (1, 22, 0, 30.0, 0.0, 1.0),  # a back-to-back, balanced event
            (1, 130, 0, 30.0, 2.0, 1.0 - np.pi),
        ],
    )
    objects = objects_from_candidates(candidates, TRUTH)

    np.testing.assert_allclose(objects.met_pt, [np.hypot(40.0, 10.0), 0.0], atol=1e-9)
    assert objects.met_phi[0] == pytest.approx(np.arctan2(-10.0, -40.0))
    assert len(objects.muons.pt) == 1  # the muon counts in MET as well as being a muon


def test_a_lepton_inside_a_jet_is_not_isolated_and_is_clustered(massless_particles):
    candidates = massless_particles(
        [
            (0, 13, 0, 30.0, 0.0, 0.0),  # muon with 20 GeV of hadrons at Delta R = 0.1
            (0, 211, 0, 20.0, 0.1, 0.0),
            (0, -13, 0, 25.0, 0.0, 2.5),  # muon alone
        ],
    )
    isolation = relative_isolation(candidates, np.array([0, 2]), cone=0.3)
    np.testing.assert_allclose(isolation, [20.0 / 30.0, 0.0])

    objects = objects_from_candidates(candidates, TRUTH)
    np.testing.assert_allclose(objects.muons.pt, [25.0])
    assert len(objects.jets.pt) == 1
    assert objects.jets.pt[0] == pytest.approx(50.0, rel=1e-3)  # the jet holds the muon


def test_isolation_only_counts_candidates_of_the_same_event(massless_particles):
    candidates = massless_particles(
        [(0, 11, 0, 30.0, 0.0, 0.0), (1, 211, 0, 50.0, 0.0, 0.0), (1, 11, 0, 30.0, 1.0, 1.0)],
    )
    np.testing.assert_allclose(relative_isolation(candidates, np.array([0, 2]), cone=0.3), 0.0)


# --- Pythia cards and generated events --------------------------------------------------------


@pytest.mark.pythia
@pytest.mark.parametrize("process", get_args(EventProcess))
def test_every_event_process_card_initialises_pythia(process):
    config = EventSampleConfig(process=process)
    PythiaRun(event_process_settings(config), seed=1)  # raises on a rejected setting


def test_qcd_is_unfiltered_unless_a_filter_is_asked_for():
    assert EventSampleConfig(process="qcd").lepton_filter_pt_gev is None
    assert EventSampleConfig(process="qcd", lepton_filter_pt_gev=23).lepton_filter_pt_gev == 23
    assert EventSampleConfig(process="w").lepton_filter_pt_gev == 23


def test_zprime_mass_goes_into_the_card():
    settings = event_process_settings(EventSampleConfig(process="zprime_mumu", zprime_mass_gev=75))
    assert "32:m0 = 75.0" in settings


@pytest.mark.pythia
def test_event_shard_follows_contract_1b(z_events):
    particles, label = z_events.arrays["particles"], z_events.arrays["label"]
    assert particles.shape == (100, 19, 4)
    assert particles.dtype == np.float32
    assert np.isfinite(particles).all()
    assert label.dtype == np.int8
    assert (label == 0).all()  # Z -> ll is a background
    attrs = z_events.attrs
    assert attrs["process"] == "z"
    assert attrs["seed"] == 21
    settings = json.loads(attrs["settings"])
    assert settings["config"]["process"] == "z"
    assert set(event_process_settings(EventSampleConfig(process="z"))) <= set(settings["pythia"])
    assert attrs["n_events_generated"] >= 100
    assert attrs["filter_efficiency"] == 100 / attrs["n_events_generated"]
    assert attrs["n_tried"] >= attrs["n_events_generated"]
    assert attrs["cross_section_pb"] > 0
    assert set(json.loads(attrs["versions"])) == {"pythia8mc", "fastjet", "numpy", "nae-trigger"}
    assert attrs["machine"].startswith(platform.machine())


@pytest.mark.pythia
@pytest.mark.parametrize("block", BLOCKS)
def test_generated_rows_are_ordered_classed_and_zero_padded(z_events, block):
    first, n_rows, class_id = BLOCKS[block]
    rows = z_events.arrays["particles"][:, first : first + n_rows]  # (N, n_rows, 4)
    filled = rows[:, :, 3] == class_id
    assert ((rows[:, :, 3] == 0) | filled).all()
    assert not rows[~filled].any()  # unused rows are all zero
    assert (rows[:, :, 0][filled] > 0).all()
    assert (np.diff(filled.astype(int), axis=1) <= 0).all()  # filled rows come first
    pt = rows[:, :, 0]
    assert (np.diff(pt, axis=1)[filled[:, 1:]] <= 0).all()  # pT-ordered
    assert (np.abs(rows[:, :, 2]) <= np.pi + 1e-6).all()
    if block == "met":
        assert filled.all()
        assert (rows[:, 0, 1] == 0).all()


@pytest.mark.pythia
def test_every_generated_event_passes_the_lepton_filter(z_events):
    particles = z_events.arrays["particles"]
    assert passes_lepton_filter(particles, 23.0).all()
    assert z_events.attrs["filter_efficiency"] < 1  # some Z -> ll events were rejected
    leptons = particles[:, 1:9]
    lepton_eta = leptons[:, :, 1][leptons[:, :, 3] > 0]
    assert (np.abs(lepton_eta) < 2.5).all()
    jets = particles[:, 9:]
    assert (jets[:, :, 0][jets[:, :, 3] > 0] > 15.0).all()


@pytest.mark.pythia
def test_same_seed_gives_the_same_events_and_progress_counts_them(z_events):
    counted = []
    again = generate_events(
        EventSampleConfig(process="z"), n_events=20, seed=21, progress=counted.append
    )
    np.testing.assert_array_equal(again.arrays["particles"], z_events.arrays["particles"][:20])
    assert sum(counted) == 20


@pytest.mark.pythia
def test_truth_level_signal_is_labelled_and_has_its_muons():
    config = EventSampleConfig(process="zprime_mumu", detector=None)
    shard = generate_events(config, n_events=5, seed=22)
    assert (shard.arrays["label"] == 1).all()
    assert (shard.arrays["particles"][:, 5, 3] == CLASS_MUON).all()
