"""The in-evolution veto: the hook's decision on hand-made parton records, and the bookkeeping of
real vetoed runs against unvetoed ones."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.config import JetSampleConfig, JetVetoConfig
from training.data.jets import generate_jets

pythia8mc = pytest.importorskip("pythia8mc")
from training.data.veto import ScaleVeto  # noqa: E402 (needs pythia8mc)

pytestmark = pytest.mark.pythia

THRESHOLD_GEV = 440.0
MAIN_EVOLUTION, RESONANCE_DECAY = 2, 5  # doVetoPT's iPos after an ISR step / in t -> b W


@pytest.fixture(scope="module")
def partons():
    """``partons([(pid, pT, eta, phi, mass), ...])``: an outgoing parton record, as Pythia holds
    it during the parton-level evolution (beams system first, outgoing partons status 23)."""
    particle_data = pythia8mc.Pythia("", False).particleData

    def build(rows: list[tuple[int, float, float, float, float]]) -> pythia8mc.Event:
        event = pythia8mc.Event()
        event.init("test", particle_data)
        event.append(90, -11, 0, 0, 0.0, 0.0, 0.0, 13000.0, 13000.0)
        for pid, pt, eta, phi, mass in rows:
            px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
            energy = math.sqrt(px**2 + py**2 + pz**2 + mass**2)
            event.append(pid, 23, 0, 0, px, py, pz, energy, mass)
        return event

    return build


def _hook() -> ScaleVeto:
    return ScaleVeto(JetVetoConfig(), threshold_gev=THRESHOLD_GEV)


def test_an_event_that_can_reach_the_window_is_kept(partons):
    hook = _hook()
    event = partons([(21, 600.0, 0.3, 0.1, 0.0), (21, 590.0, -0.2, 3.0, 0.0)])
    assert hook.doVetoPT(MAIN_EVOLUTION, event) is False
    assert hook.n_vetoed == 0


def test_an_event_without_a_hard_enough_jet_is_stopped(partons):
    hook = _hook()
    event = partons([(21, 300.0, 0.3, 0.1, 0.0), (21, 300.0, 0.3, 2.0, 0.0), (1, 290.0, 0, 4.2, 0)])
    assert hook.doVetoPT(MAIN_EVOLUTION, event) is True
    assert hook.n_vetoed == 1


def test_partons_within_the_radius_count_as_one_jet(partons):
    """Two 300 GeV partons 0.8 apart make one 590 GeV jet with R = 1.0: a window jet can grow
    from them, so the event is kept."""
    event = partons([(21, 300.0, 0.3, 0.1, 0.0), (21, 300.0, 0.3, 0.9, 0.0)])
    assert _hook().doVetoPT(MAIN_EVOLUTION, event) is False


def test_a_hard_jet_outside_the_acceptance_does_not_save_the_event(partons):
    event = partons([(21, 900.0, 3.5, 0.1, 0.0), (21, 300.0, 0.0, 3.0, 0.0)])
    assert _hook().doVetoPT(MAIN_EVOLUTION, event) is True


def test_a_massive_top_counts_with_its_mass(partons):
    """In top events the tops are still undecayed partons during the main evolution."""
    event = partons([(6, 470.0, 0.2, 0.1, 173.0), (-6, 470.0, -0.4, 3.2, 173.0)])
    assert _hook().doVetoPT(MAIN_EVOLUTION, event) is False


def test_resonance_decay_showers_are_never_vetoed(partons):
    """iPos 5 comes after the decision, once per decaying resonance."""
    event = partons([(5, 50.0, 0.0, 0.0, 4.8)])
    hook = _hook()
    assert hook.doVetoPT(RESONANCE_DECAY, event) is False
    assert hook.n_vetoed == 0


# A low window keeps the real runs cheap; the veto threshold follows it (pt_fraction x 200 GeV).
_WINDOW = {"pt_min_gev": 200.0, "pt_max_gev": 260.0}
_N_JETS = 120


@pytest.fixture(scope="module")
def vetoed_and_unvetoed():
    on = generate_jets(JetSampleConfig(process="qcd", **_WINDOW), n_jets=_N_JETS, seed=31)
    off = generate_jets(
        JetSampleConfig(process="qcd", veto=None, **_WINDOW), n_jets=_N_JETS, seed=32
    )
    return on, off


def test_the_veto_setting_is_recorded_and_counted(vetoed_and_unvetoed):
    on, off = vetoed_and_unvetoed
    assert json.loads(on.attrs["settings"])["config"]["veto"] == JetVetoConfig().model_dump()
    assert json.loads(off.attrs["settings"])["config"]["veto"] is None
    assert off.attrs["n_vetoed"] == 0
    # Most events of a low pTHatMin cannot reach the window: the veto stops them.
    assert 0.3 * on.attrs["n_events_generated"] < on.attrs["n_vetoed"]
    assert on.attrs["n_vetoed"] < on.attrs["n_events_generated"]
    assert on.attrs["selection_efficiency"] == _N_JETS / on.attrs["n_events_generated"]


def test_vetoed_jets_pass_the_selection(vetoed_and_unvetoed):
    on, _ = vetoed_and_unvetoed
    pt = on.arrays["jet"][:, 0]
    assert np.all((pt >= _WINDOW["pt_min_gev"]) & (pt < _WINDOW["pt_max_gev"]))


def test_cross_section_times_efficiency_agrees_with_the_veto_off(vetoed_and_unvetoed):
    """sigma x efficiency is the selected jets' cross section: it must not depend on the veto.
    Errors: binomial on the efficiency, Pythia's spread of sigma neglected (~1%)."""
    values, errors = [], []
    for shard in vetoed_and_unvetoed:
        sigma, eff = shard.attrs["cross_section_pb"], shard.attrs["selection_efficiency"]
        n_events = shard.attrs["n_events_generated"]
        values.append(sigma * eff)
        errors.append(sigma * math.sqrt(eff * (1 - eff) / n_events))
    assert abs(values[0] - values[1]) < 3 * math.hypot(*errors)
    # and the cross section itself is the process's, not that of the events passing the veto
    sigma_on, sigma_off = (shard.attrs["cross_section_pb"] for shard in vetoed_and_unvetoed)
    assert sigma_on == pytest.approx(sigma_off, rel=0.1)


def test_dark_jets_are_unvetoed_unless_asked():
    assert JetSampleConfig(process="dark").veto is None
    assert JetSampleConfig(process="dark", veto=JetVetoConfig()).veto == JetVetoConfig()
    assert JetSampleConfig(process="qcd").veto == JetVetoConfig()
    assert JetSampleConfig(process="top").veto == JetVetoConfig(pt_fraction=0.9)
