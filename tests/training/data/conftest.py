"""Small real Pythia samples shared by the data tests, generated once per session."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from training.config import EventSampleConfig, JetSampleConfig
from training.data.particles import Particles

N_JETS = 80
N_EVENTS = 100


Row = tuple[int, int, float, float, float, float]


def _massless_particles(rows: Sequence[Row]) -> Particles:
    event, pid, charge, pt, eta, phi = (np.asarray(column) for column in zip(*rows, strict=True))
    return Particles(
        event=event.astype(np.int64),
        px=pt * np.cos(phi),
        py=pt * np.sin(phi),
        pz=pt * np.sinh(eta),
        e=pt * np.cosh(eta),
        pid=pid.astype(np.int32),
        charge=charge.astype(np.float32),
        n_events=int(event.max()) + 1,
    )


@pytest.fixture(scope="session")
def massless_particles() -> Callable[..., Particles]:
    """``massless_particles(rows)``: hand-made particles of events 0 .. last, from rows of
    (event, pid, charge, pT [GeV], eta, phi)."""
    return _massless_particles


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
