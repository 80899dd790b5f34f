"""A fast parametric detector response on ``Particles``: tracks and calorimeter towers.

Pure numpy; every function takes the configuration and a ``numpy.random.Generator``. The output
is a particle-flow-like list per event: charged tracks (PDG id kept, so electrons and muons stay
identifiable), ECAL towers (``pid`` 22) and HCAL towers (``pid`` 130), each tower massless and
pointing at its cell centre. Parameters and their sources are in ``DetectorConfig``.

Which particle goes where:
- charged, |eta| < track_eta_max, pT > track_pt_min, and found (track_efficiency): a track with
  smeared pT; its calorimeter deposit is taken as subtracted (particle flow);
- muons: tracks only (they pass the calorimeters); muons outside the tracker are lost;
- photons, electrons and positrons not tracked: ECAL; every other visible particle not tracked
  (neutral hadrons, lost or forward charged hadrons): HCAL; nothing beyond calo_eta_max.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from training.config import DetectorConfig
from training.data.particles import Particles, merge_particles

__all__ = [
    "ECAL_TOWER_PID",
    "HCAL_TOWER_PID",
    "Calorimeter",
    "detector_response",
    "smear_tracks",
    "towers",
]

ECAL_TOWER_PID = 22
HCAL_TOWER_PID = 130
_MUON, _ELECTRON, _PHOTON = 13, 11, 22


def detector_response(
    particles: Particles,
    config: DetectorConfig,
    rng: np.random.Generator,
    *,
    electrons_in_ecal: bool = False,
) -> Particles:
    """Tracks followed by ECAL and HCAL towers, events kept in order.

    ``electrons_in_ecal``: tracked electrons keep the track's direction but take their energy
    from the ECAL (its resolution instead of the tracker's), as electron reconstruction does;
    off (the default) keeps the output and the random stream of earlier samples unchanged."""
    abs_pid = np.abs(particles.pid)
    eta = particles.eta
    in_tracker = (
        (particles.charge != 0)
        & (np.abs(eta) < config.track_eta_max)
        & (particles.pt > config.track_pt_min_gev)
    )
    tracked = in_tracker & (rng.random(len(abs_pid)) < config.track_efficiency)
    # Muons never shower: untracked muons are simply lost.
    to_calo = ~tracked & (abs_pid != _MUON) & (np.abs(eta) < config.calo_eta_max)
    em = (abs_pid == _PHOTON) | (abs_pid == _ELECTRON)
    if electrons_in_ecal:
        ecal_electron = tracked & (abs_pid == _ELECTRON)
        track_parts = [
            smear_tracks(particles.select(tracked & ~ecal_electron), config, rng),
            _ecal_electrons(particles.select(ecal_electron), _ecal(config), rng),
        ]
    else:
        track_parts = [smear_tracks(particles.select(tracked), config, rng)]
    return merge_particles(
        [
            *track_parts,
            towers(particles.select(to_calo & em), _ecal(config), rng=rng),
            towers(particles.select(to_calo & ~em), _hcal(config), rng=rng),
        ]
    )


class Calorimeter(NamedTuple):
    """One calorimeter layer: cell size, acceptance, sigma/E terms, threshold, tower PDG id."""

    cell_eta: float
    cell_phi: float  # [rad]
    eta_max: float
    stochastic: float  # [sqrt(GeV)]
    constant: float
    threshold_gev: float
    pid: int


def _ecal(config: DetectorConfig) -> Calorimeter:
    return Calorimeter(
        config.ecal_cell_eta,
        config.ecal_cell_phi,
        config.calo_eta_max,
        config.ecal_stochastic,
        config.ecal_constant,
        config.ecal_threshold_gev,
        ECAL_TOWER_PID,
    )


def _hcal(config: DetectorConfig) -> Calorimeter:
    return Calorimeter(
        config.hcal_cell_eta,
        config.hcal_cell_phi,
        config.calo_eta_max,
        config.hcal_stochastic,
        config.hcal_constant,
        config.hcal_threshold_gev,
        HCAL_TOWER_PID,
    )


def smear_tracks(tracks: Particles, config: DetectorConfig, rng: np.random.Generator) -> Particles:
    """Scale each track's 3-momentum by a Gaussian pT resolution; the mass is kept."""
    pt = tracks.pt
    sigma = np.hypot(config.track_resolution_constant, config.track_resolution_slope_per_gev * pt)
    scale = np.clip(1.0 + sigma * rng.standard_normal(len(pt)), 0.0, None)
    mass2 = np.clip(tracks.e**2 - tracks.px**2 - tracks.py**2 - tracks.pz**2, 0.0, None)
    px, py, pz = tracks.px * scale, tracks.py * scale, tracks.pz * scale
    return Particles(
        event=tracks.event,
        px=px,
        py=py,
        pz=pz,
        e=np.sqrt(px**2 + py**2 + pz**2 + mass2),
        pid=tracks.pid,
        charge=tracks.charge,
        n_events=tracks.n_events,
    )


def _ecal_electrons(electrons: Particles, calo: Calorimeter, rng: np.random.Generator) -> Particles:
    """Tracked electrons whose energy the ECAL measures: the momentum scaled by
    1 + sigma_E(E)/E x a standard normal (the mass is negligible), the track's direction and
    PDG id kept, so they stay identifiable electrons."""
    resolution = np.sqrt(calo.stochastic**2 / np.maximum(electrons.e, 1e-9) + calo.constant**2)
    scale = np.clip(1.0 + resolution * rng.standard_normal(len(electrons.e)), 0.0, None)
    return Particles(
        event=electrons.event,
        px=electrons.px * scale,
        py=electrons.py * scale,
        pz=electrons.pz * scale,
        e=electrons.e * scale,
        pid=electrons.pid,
        charge=electrons.charge,
        n_events=electrons.n_events,
    )


def towers(deposits: Particles, calo: Calorimeter, *, rng: np.random.Generator) -> Particles:
    """Sum energies in eta x phi cells per event, smear, apply the threshold, and return one
    massless pseudo-particle per surviving cell at the cell centre."""
    cell_eta, cell_phi, eta_max = calo.cell_eta, calo.cell_phi, calo.eta_max
    n_eta = int(np.ceil(2 * eta_max / cell_eta))
    n_phi = int(np.round(2 * np.pi / cell_phi))
    i_eta = np.clip(((deposits.eta + eta_max) / cell_eta).astype(np.int64), 0, n_eta - 1)
    i_phi = ((deposits.phi + np.pi) / (2 * np.pi) * n_phi).astype(np.int64) % n_phi
    key = (deposits.event * n_eta + i_eta) * n_phi + i_phi
    cells, inverse = np.unique(key, return_inverse=True)
    energy = np.bincount(inverse, weights=deposits.e, minlength=len(cells))
    resolution = np.sqrt(calo.stochastic**2 / np.maximum(energy, 1e-9) + calo.constant**2)
    energy = energy * (1.0 + resolution * rng.standard_normal(len(cells)))
    keep = energy > calo.threshold_gev
    cells, energy = cells[keep], energy[keep]

    event = cells // (n_eta * n_phi)
    eta = -eta_max + (cells // n_phi % n_eta + 0.5) * cell_eta
    phi = -np.pi + (cells % n_phi + 0.5) * (2 * np.pi / n_phi)
    pt = energy / np.cosh(eta)
    return Particles(
        event=event,
        px=pt * np.cos(phi),
        py=pt * np.sin(phi),
        pz=pt * np.sinh(eta),
        e=energy,
        pid=np.full(len(cells), calo.pid, dtype=np.int32),
        charge=np.zeros(len(cells), dtype=np.float32),
        n_events=deposits.n_events,
    )
