"""The ADC2021 trigger format (arXiv:2107.02157) from generated particles: ``nae data events``.

Per event, from the reconstructed candidates (the detector's tracks and towers, or the visible
final state at truth level):

- isolated electrons and muons: candidates with |pid| 11 or 13 in the lepton acceptance whose
  relative isolation (scalar pT sum of every other candidate within ``isolation_cone``, over the
  lepton pT) is below ``isolation_max``;
- anti-kT jets (FastJet) of every candidate except the isolated leptons;
- missing transverse momentum: minus the vector pT sum of all candidates.

The result is one (19, 4) array per event, as in the public ADC2021 files: row 0 MET, rows 1-4
electrons, rows 5-8 muons, rows 9-18 jets; columns pT [GeV], eta, phi [rad], class id (1 MET,
2 electron, 3 muon, 4 jet). Objects are pT-ordered within their type; unused rows are all zero,
class 0 included. MET's eta is 0 and its row is always filled. Events are kept when an isolated
electron or muon passes ``lepton_filter_pt_gev`` (ADC2021's single-lepton filter).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel

from training.config import EventSampleConfig
from training.data.detector import detector_response
from training.data.particles import Particles, pseudorapidity, wrap_phi
from training.data.pythia import (
    COMMON_SETTINGS,
    PythiaRun,
    event_process_settings,
    generator_machine,
    generator_versions,
)
from training.data.shards import Shard
from training.errors import NaeError, require

__all__ = [
    "CLASS_ELECTRON",
    "CLASS_JET",
    "CLASS_MET",
    "CLASS_MUON",
    "CLASS_PADDING",
    "ELECTRON_ROW",
    "JET_ROW",
    "MUON_ROW",
    "N_ROWS",
    "SIGNAL_PROCESSES",
    "EventObjects",
    "Objects",
    "generate_events",
    "jets_from_candidates",
    "objects_from_candidates",
    "passes_lepton_filter",
    "relative_isolation",
    "shard_provenance",
    "trigger_rows_from_objects",
]

CLASS_PADDING, CLASS_MET, CLASS_ELECTRON, CLASS_MUON, CLASS_JET = 0, 1, 2, 3, 4
N_ELECTRONS, N_MUONS, N_JETS = 4, 4, 10
ELECTRON_ROW, MUON_ROW, JET_ROW = 1, 1 + N_ELECTRONS, 1 + N_ELECTRONS + N_MUONS
N_ROWS = JET_ROW + N_JETS  # 19
SIGNAL_PROCESSES = frozenset({"zprime_mumu", "a_4l", "h_tautau", "hplus_taunu"})
_ELECTRON, _MUON = 11, 13


class _JetSettings(Protocol):
    jet_radius: float
    jet_pt_min_gev: float
    jet_eta_max: float


@dataclass(frozen=True)
class Objects:
    """Reconstructed objects of one type in many events, flat, with their event index."""

    event: np.ndarray  # (K,) int64
    pt: np.ndarray  # (K,) [GeV]
    eta: np.ndarray  # (K,)
    phi: np.ndarray  # (K,) [rad]

    @classmethod
    def from_particles(cls, particles: Particles) -> Objects:
        return cls(particles.event, particles.pt, particles.eta, particles.phi)


@dataclass(frozen=True)
class EventObjects:
    """Everything the 19-row format holds, for ``len(met_pt)`` events."""

    electrons: Objects
    muons: Objects
    jets: Objects
    met_pt: np.ndarray  # (N,) [GeV]
    met_phi: np.ndarray  # (N,) [rad]


def generate_events(
    config: EventSampleConfig,
    *,
    n_events: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 100,
) -> Shard:
    """Exactly ``n_events`` filtered events of ``config.process`` as a contract-1b shard.

    ``seed`` seeds Pythia and the detector's generator, so the same seed gives the same shard.
    ``progress(k)`` is called with the number of newly accepted events after each batch.
    Attributes: ``n_events_generated`` counts Pythia events examined up to the last accepted one,
    so ``filter_efficiency = n_events / n_events_generated``; ``n_tried`` is Pythia's count of
    tried phase-space points over all batches; ``cross_section_pb`` is Pythia's before the filter.
    """
    if n_events < 1:
        raise NaeError(f"n_events must be at least 1, got {n_events}")
    settings = event_process_settings(config)
    run = PythiaRun(settings, seed=seed)
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    n_accepted = n_generated = 0
    for batch in run.batches(batch_size):
        rows = trigger_rows_from_objects(
            objects_from_candidates(_candidates(batch.final, config, rng), config)
        )
        index = np.flatnonzero(passes_lepton_filter(rows, config.lepton_filter_pt_gev))
        index = index[: n_events - n_accepted]
        done = n_accepted + len(index) == n_events
        n_generated += int(index[-1]) + 1 if done else batch.final.n_events
        chunks.append(rows[index])
        n_accepted += len(index)
        if progress is not None and len(index):
            progress(len(index))
        if done:
            break
    particles = np.concatenate(chunks)  # (n_events, 19, 4)
    label = np.full(n_events, int(config.process in SIGNAL_PROCESSES), dtype=np.int8)
    attrs = shard_provenance(config, settings, seed=seed, run=run, n_generated=n_generated)
    attrs["filter_efficiency"] = n_events / n_generated
    return Shard(arrays={"particles": particles, "label": label}, attrs=attrs)


def _candidates(final: Particles, config: EventSampleConfig, rng: np.random.Generator) -> Particles:
    """The detector's tracks and towers, or the visible final state when there is no detector."""
    if config.detector is None:
        return final
    return detector_response(final, config.detector, rng)


def shard_provenance(
    config: BaseModel, settings: list[str], *, seed: int, run: PythiaRun, n_generated: int
) -> dict[str, object]:
    """The attributes every generated event shard carries (docs/data.md, "Storage")."""
    settings_json = {
        "config": config.model_dump(mode="json"),
        "pythia": [*COMMON_SETTINGS, *settings],
    }
    return {
        "process": config.process,
        "seed": seed,
        "settings": json.dumps(settings_json),
        "n_tried": run.n_tried,
        "n_events_generated": n_generated,
        "cross_section_pb": run.cross_section_pb,
        "versions": json.dumps(generator_versions()),
        "machine": generator_machine(),
    }


def objects_from_candidates(candidates: Particles, config: EventSampleConfig) -> EventObjects:
    """Isolated electrons and muons, jets of everything else, and MET, from the candidates."""
    abs_pid = np.abs(candidates.pid)
    pt, eta = candidates.pt, candidates.eta
    in_acceptance = np.abs(eta) < config.lepton_eta_max
    electron = (abs_pid == _ELECTRON) & (pt > config.electron_pt_min_gev) & in_acceptance
    muon = (abs_pid == _MUON) & (pt > config.muon_pt_min_gev) & in_acceptance
    lepton_index = np.flatnonzero(electron | muon)
    isolation = relative_isolation(candidates, lepton_index, cone=config.isolation_cone)
    isolated = np.zeros(len(pt), dtype=bool)
    isolated[lepton_index[isolation < config.isolation_max]] = True
    met_px = -np.bincount(candidates.event, weights=candidates.px, minlength=candidates.n_events)
    met_py = -np.bincount(candidates.event, weights=candidates.py, minlength=candidates.n_events)
    return EventObjects(
        electrons=Objects.from_particles(candidates.select(isolated & electron)),
        muons=Objects.from_particles(candidates.select(isolated & muon)),
        jets=jets_from_candidates(candidates.select(~isolated), config),
        met_pt=np.hypot(met_px, met_py),
        met_phi=np.arctan2(met_py, met_px),
    )


def relative_isolation(candidates: Particles, index: np.ndarray, *, cone: float) -> np.ndarray:
    """Scalar pT sum of all other candidates of the same event within Delta R < ``cone`` of each
    candidate ``index``, divided by its pT.  # (K,) for index (K,); candidates sorted by event.

    All pairs (candidate, same-event candidate) are formed at once: a few leptons per event
    times a few hundred candidates stays small, and no Python loop runs per event.
    """
    pt, eta, phi = candidates.pt, candidates.eta, candidates.phi
    counts = candidates.counts()
    starts = np.cumsum(counts) - counts
    n_pairs = counts[candidates.event[index]]
    owner = np.repeat(np.arange(len(index)), n_pairs)
    pair_start = np.cumsum(n_pairs) - n_pairs
    other = np.arange(n_pairs.sum()) + np.repeat(
        starts[candidates.event[index]] - pair_start, n_pairs
    )
    centre = index[owner]
    dphi = wrap_phi(phi[other] - phi[centre])
    near = ((eta[other] - eta[centre]) ** 2 + dphi**2 < cone**2) & (other != centre)
    cone_pt = np.bincount(owner, weights=pt[other] * near, minlength=len(index))
    return cone_pt / pt[index]


def jets_from_candidates(candidates: Particles, config: _JetSettings) -> Objects:
    """Anti-kT jets (FastJet's multi-event awkward interface) with the pT and |eta| cuts of
    ``config`` (its ``jet_radius``, ``jet_pt_min_gev``, ``jet_eta_max``): the event format's
    and the Z-gamma sample's jets."""
    ak = require("awkward", "data")
    fastjet = require("fastjet", "data")
    momenta = ak.zip(
        {"px": candidates.px, "py": candidates.py, "pz": candidates.pz, "E": candidates.e}
    )
    events = ak.unflatten(momenta, candidates.counts())
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_radius)
    jets = fastjet.ClusterSequence(events, definition).inclusive_jets(min_pt=config.jet_pt_min_gev)
    flat = ak.flatten(jets)
    px, py, pz = (ak.to_numpy(flat[name]) for name in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    eta = pseudorapidity(px, py, pz)
    event = np.repeat(np.arange(candidates.n_events), ak.to_numpy(ak.num(jets)))
    keep = np.abs(eta) < config.jet_eta_max
    return Objects(event[keep], pt[keep], eta[keep], np.arctan2(py, px)[keep])


def trigger_rows_from_objects(objects: EventObjects) -> np.ndarray:
    """The ADC2021 rows: # (N, 19, 4) pT [GeV], eta, phi [rad], class id; zero-padded."""
    rows = np.zeros((len(objects.met_pt), N_ROWS, 4), dtype=np.float32)
    rows[:, 0, 0] = objects.met_pt
    rows[:, 0, 2] = objects.met_phi
    rows[:, 0, 3] = CLASS_MET
    _fill(rows, objects.electrons, first_row=ELECTRON_ROW, n_rows=N_ELECTRONS, cls=CLASS_ELECTRON)
    _fill(rows, objects.muons, first_row=MUON_ROW, n_rows=N_MUONS, cls=CLASS_MUON)
    _fill(rows, objects.jets, first_row=JET_ROW, n_rows=N_JETS, cls=CLASS_JET)
    return rows


def _fill(rows: np.ndarray, objects: Objects, *, first_row: int, n_rows: int, cls: int) -> None:
    """Write the ``n_rows`` highest-pT objects of each event, in decreasing pT, from
    ``first_row`` on; the rest of the type's rows stay zero."""
    order = np.lexsort((-objects.pt, objects.event))
    event = objects.event[order]
    rank = np.arange(len(event)) - np.searchsorted(event, event, side="left")
    keep = rank < n_rows
    event, row, order = event[keep], first_row + rank[keep], order[keep]
    rows[event, row, 0] = objects.pt[order]
    rows[event, row, 1] = objects.eta[order]
    rows[event, row, 2] = objects.phi[order]
    rows[event, row, 3] = cls


def passes_lepton_filter(rows: np.ndarray, pt_min_gev: float | None) -> np.ndarray:
    """Events with an electron or muon row above ``pt_min_gev``; all events when None.

    rows: # (N, 19, 4); returns # (N,) bool. Only the leading lepton of each type matters, and
    rows are pT-ordered, so the stored rows decide exactly as the full object lists would.
    """
    if pt_min_gev is None:
        return np.ones(len(rows), dtype=bool)
    return (rows[:, ELECTRON_ROW:JET_ROW, 0] > pt_min_gev).any(axis=1)
