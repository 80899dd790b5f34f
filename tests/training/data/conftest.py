"""Small real Pythia samples shared by the data tests, generated once per session."""

from __future__ import annotations

import pytest

from training.config import EventSampleConfig, JetSampleConfig

N_JETS = 80
N_EVENTS = 100


@pytest.fixture(scope="session")
def qcd_jets():
    """80 detector-level QCD jets in the landscape selection (seed 11)."""
    from training.data.jets import generate_jets

    return generate_jets(JetSampleConfig(process="qcd"), n_jets=N_JETS, seed=11)


@pytest.fixture(scope="session")
def top_jets():
    """80 detector-level, truth-matched top jets in the landscape selection (seed 12)."""
    from training.data.jets import generate_jets

    return generate_jets(JetSampleConfig(process="top"), n_jets=N_JETS, seed=12)


@pytest.fixture(scope="session")
def z_events():
    """100 lepton-filtered Z -> ll events in the 19-row trigger format (seed 21)."""
    from training.data.events import generate_events

    return generate_events(EventSampleConfig(process="z"), n_events=N_EVENTS, seed=21)
