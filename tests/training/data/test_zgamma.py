"""The Z-gamma feature table: features of hand-made events, the selection, real Pythia."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from training.config import ZGAMMA_FEATURES, ZgammaSampleConfig
from training.data.generation import generate_shards
from training.data.particles import Particles
from training.data.pythia import zgamma_process_settings
from training.data.shards import read_shard, shard_info
from training.data.zgamma import FEATURE_RANGES, features_from_candidates, generate_zgamma

TRUTH = ZgammaSampleConfig(process="zgamma", detector=None)
COLUMN = {name: i for i, name in enumerate(ZGAMMA_FEATURES)}


def _particles(rows: list[tuple[int, int, float, float, float]]) -> Particles:
    """(event, pid, pT, eta, phi) rows -> massless Particles; charge from the lepton's sign."""
    event, pid, pt, eta, phi = (np.array(column) for column in zip(*rows, strict=True))
    charge = np.where(np.isin(np.abs(pid), (11, 13)), -np.sign(pid), 0).astype(np.float32)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return Particles(
        event=event.astype(np.int64),
        px=px,
        py=py,
        pz=pz,
        e=np.sqrt(px**2 + py**2 + pz**2),
        pid=pid.astype(np.int32),
        charge=charge,
        n_events=int(event.max()) + 1,
    )


def _four(pt: float, eta: float, phi: float) -> np.ndarray:
    return np.array([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)])


def test_features_of_a_hand_made_event_equal_the_formulas():
    rows = [(0, 11, 50.0, 0.3, 0.1), (0, -11, 40.0, -0.5, 2.9), (0, 22, 30.0, 1.0, -1.5)]
    table, passed = features_from_candidates(_particles(rows), TRUTH)
    assert passed.tolist() == [True]
    e1, e2, gamma = _four(50.0, 0.3, 0.1), _four(40.0, -0.5, 2.9), _four(30.0, 1.0, -1.5)
    ll, llg = e1 + e2, e1 + e2 + gamma

    def mass(p):
        return np.sqrt(p[3] ** 2 - p[0] ** 2 - p[1] ** 2 - p[2] ** 2)

    met = -llg[:2]  # MET balances every candidate
    expected = {
        "m_ll": mass(ll),
        "m_llg": mass(llg),
        "pt_ll": np.hypot(*ll[:2]),
        "e_llg": llg[3],
        "dr_ll": np.hypot(0.8, 2.8),
        "dphi_ll": 2.8,
        "met": np.hypot(*met),
        "met_phi": np.arctan2(met[1], met[0]),
        "n_jets": 0.0,
        "pt_ll_over_m_llg": np.hypot(*ll[:2]) / mass(llg),
    }
    for name, value in expected.items():
        assert table[0, COLUMN[name]] == pytest.approx(value, rel=1e-5, abs=1e-5), name
    # MET points opposite the Z-gamma system's pT
    assert table[0, COLUMN["dphi_met_llg"]] == pytest.approx(np.pi, abs=1e-5)


def test_selection_needs_opposite_sign_same_flavour_and_a_photon_away_from_the_leptons():
    rows = [
        (0, 11, 50.0, 0.0, 0.0),  # same-sign ee: no pair
        (0, 11, 40.0, 0.0, 3.0),
        (0, 22, 30.0, 1.0, 1.5),
        (1, 13, 50.0, 0.0, 0.0),  # e mu: no pair
        (1, -11, 40.0, 0.0, 3.0),
        (1, 22, 30.0, 1.0, 1.5),
        (2, 13, 50.0, 0.0, 0.0),  # mumu, photon 0.2 from a muon: no photon
        (2, -13, 40.0, 0.0, 3.0),
        (2, 22, 30.0, 0.2, 0.0),
        (3, 13, 50.0, 0.0, 0.0),  # mumu and a far photon: passes
        (3, -13, 40.0, 0.0, 3.0),
        (3, 22, 30.0, 1.0, 1.5),
        (4, 13, 20.0, 0.0, 0.0),  # leading lepton below 25 GeV: fails
        (4, -13, 18.0, 0.0, 3.0),
        (4, 22, 30.0, 1.0, 1.5),
    ]
    _, passed = features_from_candidates(_particles(rows), TRUTH)
    assert passed.tolist() == [False, False, False, True, False]


def test_of_an_ee_and_a_mumu_pair_the_one_nearer_the_z_mass_is_chosen():
    # ee back to back at 45.6 GeV each: m_ll = 91.2; mumu: m_ll = 2 x 30 = 60 GeV
    rows = [
        (0, 13, 30.0, 0.0, 1.0),
        (0, -13, 30.0, 0.0, 1.0 - np.pi),
        (0, 11, 45.6, 0.0, 0.0),
        (0, -11, 45.6, 0.0, np.pi),
        (0, 22, 30.0, 1.5, 2.2),
    ]
    table, passed = features_from_candidates(_particles(rows), TRUTH)
    assert passed.tolist() == [True]
    assert table[0, COLUMN["m_ll"]] == pytest.approx(91.2, rel=1e-5)


def test_lepton_cuts_must_be_ordered_and_unknown_keys_are_refused():
    with pytest.raises(ValidationError, match="leading >= subleading"):
        ZgammaSampleConfig(process="zgamma", lepton_pt_min_gev=(10.0, 20.0))
    with pytest.raises(ValidationError):
        ZgammaSampleConfig(process="zgamma", photon_pt=5.0)


def test_signal_card_forces_a_narrow_width_and_the_gamma_z_channel():
    lines = zgamma_process_settings(ZgammaSampleConfig(process="h_zgamma", scalar_mass_gev=400))
    assert "25:m0 = 400.0" in lines and "25:onIfMatch = 22 23" in lines
    assert "25:doForceWidth = on" in lines


@pytest.mark.pythia
def test_real_pythia_background_and_signal_have_their_peaks(tmp_path):
    """Tiny real samples: m_ll of selected events near m_Z, m_llg of the signal at its mass."""
    paths = generate_shards(
        "zgamma", ZgammaSampleConfig(process="zgamma"), n=40, out_dir=tmp_path, seed=3,
        shard_size=40,
    )  # fmt: skip
    info = shard_info(paths[0])
    assert info.kind == "table" and info.n == 40
    background = read_shard(paths[0]).arrays
    assert set(background) == {"label", *(f"features/{name}" for name in ZGAMMA_FEATURES)}
    m_ll = background["features/m_ll"]
    assert 85.0 < np.median(m_ll) < 97.0
    assert (background["features/n_jets"] == np.round(background["features/n_jets"])).all()
    for name, (low, high) in FEATURE_RANGES.items():
        values = background[f"features/{name}"]
        assert low is None or values.min() >= low, name
        assert high is None or values.max() <= high, name
    assert 0 < info.attrs["filter_efficiency"] < 1 and info.attrs["cpu_seconds"] > 0

    signal = generate_zgamma(
        ZgammaSampleConfig(process="h_zgamma", scalar_mass_gev=250.0), n_events=20, seed=4
    )
    m_llg = signal.arrays["features/m_llg"]
    assert abs(np.median(m_llg) - 250.0) < 5.0  # detector resolution ~1-2%
    assert (signal.arrays["label"] == 1).all()
