"""The parametric detector on hand-made particles: where each particle goes, and what survives."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from training.config import DetectorConfig
from training.data.detector import ECAL_TOWER_PID, HCAL_TOWER_PID, detector_response
from training.data.particles import Particles

MakeParticles = Callable[..., Particles]

# No smearing and no inefficiency, so every number below follows from the geometry alone.
PERFECT = DetectorConfig(
    track_efficiency=1.0,
    track_resolution_constant=0.0,
    track_resolution_slope_per_gev=0.0,
    ecal_stochastic=0.0,
    ecal_constant=0.0,
    hcal_stochastic=0.0,
    hcal_constant=0.0,
)


def test_each_particle_goes_to_its_subdetector(massless_particles: MakeParticles) -> None:
    particles = massless_particles(
        [
            (0, 211, 1, 20.0, 0.5, 0.1),  # charged pion in the tracker: a track
            (0, 22, 0, 30.0, -1.0, 2.0),  # photon: an ECAL tower
            (1, 2112, 0, 40.0, 1.5, -2.0),  # neutron: an HCAL tower
            (1, 13, -1, 25.0, 3.5, 0.0),  # muon beyond the tracker: lost
            (1, 211, 1, 15.0, 3.5, 1.0),  # pion beyond the tracker: HCAL
        ]
    )
    out = detector_response(particles, PERFECT, np.random.default_rng(0))

    assert sorted(zip(out.event.tolist(), out.pid.tolist(), strict=True)) == [
        (0, 22),
        (0, 211),
        (1, HCAL_TOWER_PID),
        (1, HCAL_TOWER_PID),
    ]
    track = out.select(out.pid == 211)
    np.testing.assert_allclose(track.pt, [20.0])  # no resolution: momentum unchanged
    np.testing.assert_allclose(out.select(out.event == 1).e.sum(), particles.e[[2, 4]].sum())
    assert np.all(np.diff(out.event) >= 0)


def test_towers_sum_a_cell_point_at_its_centre_and_apply_the_threshold(
    massless_particles: MakeParticles,
) -> None:
    cell = PERFECT.ecal_cell_eta
    particles = massless_particles(
        [
            (0, 22, 0, 10.0, 0.2 * cell, 0.01),  # two photons in one ECAL cell ...
            (0, 22, 0, 5.0, 0.7 * cell, 0.02),
            (0, 22, 0, 0.05, 2.0, 1.0),  # ... and one of 0.19 GeV, below the 0.5 GeV threshold
        ]
    )
    out = detector_response(particles, PERFECT, np.random.default_rng(0))

    assert out.pid.tolist() == [ECAL_TOWER_PID]
    np.testing.assert_allclose(out.e, particles.e[:2].sum())
    assert 0.0 < out.eta[0] < cell  # the cell centre, not either photon's direction


def test_resolution_and_inefficiency_follow_the_config(massless_particles: MakeParticles) -> None:
    n = 4000
    particles = massless_particles([(0, 211, 1, 100.0, 0.0, 0.0)] * n)
    config = DetectorConfig(track_efficiency=0.5, track_resolution_slope_per_gev=0.0)
    out = detector_response(particles, config, np.random.default_rng(1))
    tracks = out.select(out.pid == 211)

    assert abs(len(tracks.pt) / n - 0.5) < 5 * np.sqrt(0.25 / n)
    relative = tracks.pt / 100.0 - 1.0
    assert abs(relative.std() / config.track_resolution_constant - 1.0) < 0.1


def test_electrons_in_ecal_keep_direction_and_identity_and_leave_the_default_unchanged():
    """The Z-gamma sample's option: tracked electrons take the ECAL's energy resolution; off,
    the response (and its random stream) is exactly the default's."""
    from training.data.particles import Particles

    n = 2000
    rng = np.random.default_rng(5)
    pt = rng.uniform(20, 60, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    electrons = Particles(
        event=np.arange(n, dtype=np.int64),
        px=pt * np.cos(phi),
        py=pt * np.sin(phi),
        pz=np.zeros(n),
        e=pt,
        pid=np.full(n, 11, dtype=np.int32),
        charge=np.full(n, -1.0, dtype=np.float32),
        n_events=n,
    )
    config = DetectorConfig(track_efficiency=1.0)
    default = detector_response(electrons, config, np.random.default_rng(1))
    off = detector_response(electrons, config, np.random.default_rng(1), electrons_in_ecal=False)
    np.testing.assert_array_equal(default.px, off.px)
    ecal = detector_response(electrons, config, np.random.default_rng(1), electrons_in_ecal=True)
    assert (ecal.pid == 11).all() and len(ecal.pid) == n
    np.testing.assert_allclose(ecal.phi, electrons.phi, atol=1e-12)
    relative = ecal.pt / electrons.pt - 1
    expected = np.sqrt(config.ecal_stochastic**2 / electrons.e + config.ecal_constant**2)
    assert np.std(relative / expected) == pytest.approx(1.0, abs=0.05)
