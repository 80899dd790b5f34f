"""Jets: FastJet clustering, the landscape selection, truth labels and substructure features.

``generate_jets`` runs Pythia, the detector model and anti-kT clustering, keeps the leading jet
of each event in the top-tagging landscape selection (arXiv:1902.09914) and returns a ``Shard``
in the layout of docs/contracts.md, contract 1b.

Everything stored per jet is a function of its stored constituents only
(``jets_from_constituents``, ``features_from_constituents``, ``images_from_constituents``): the
converter of public landscape files (200 constituents E, px, py, pz) calls the same functions
and so reproduces our own shards exactly. The selection is applied to the 4-vector of the
stored constituents for the same reason.

FastJet's multi-event (awkward) interface clusters a whole batch in one C++ call; soft drop,
N-subjettiness and the energy correlators come from the fastjet-contrib code bundled with
scikit-hep ``fastjet``, called the same way, one "event" per jet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from training.config import JetSampleConfig
from training.data.detector import detector_response
from training.data.images import images_from_constituents
from training.data.particles import Particles, pseudorapidity, wrap_phi
from training.data.pythia import (
    COMMON_SETTINGS,
    PythiaBatch,
    PythiaRun,
    generator_machine,
    generator_versions,
    jet_process_settings,
)
from training.data.shards import Shard
from training.errors import NaeError, require

__all__ = [
    "FEATURE_NAMES",
    "LeadingJets",
    "features_from_constituents",
    "generate_jets",
    "jets_from_constituents",
    "leading_jets",
    "make_veto",
]

FEATURE_NAMES: tuple[str, ...] = (
    "mass",
    "msd",
    "log_msd",
    "tau1",
    "tau2",
    "tau3",
    "tau21",
    "tau32",
    "c2_b1",
    "d2_b1",
    "c2_b05",
    "d2_b05",
    "ptd",
    "girth",
    "major_axis",
    "minor_axis",
    "n_constituents",
)
BATCH_SIZE = 100  # events per Pythia batch; fixed, so a seed always gives the same jets
SOFT_DROP_BETA = 0.0  # modified mass drop (arXiv:1402.2657), as in CMS
SOFT_DROP_Z_CUT = 0.1
MSD_FLOOR_GEV = 1.0  # log_msd = log(max(msd, 1 GeV)): finite for fully groomed jets
NSUBJETTINESS_AXES = "OnePass_WTA_KT_Axes"  # WTA kT axes, one pass of minimisation
# C/A reclustering radius for grooming and correlators: large, so every constituent of a jet
# ends up in one exclusive jet (C/A merges by angle only).
_RECLUSTER_RADIUS = 10.0
_TOP, _W, _DARK_QUARK, _ZPRIME_DARK = 6, 24, 4900101, 4900023


class LeadingJets(NamedTuple):
    """Leading jets of one batch that pass the selection."""

    constituents: np.ndarray  # (n, 200, 4) float32, E, px, py, pz [GeV], pT-ordered, zero-padded
    jet: np.ndarray  # (n, 4) float32, pT [GeV], eta, phi, mass [GeV]
    label: np.ndarray  # (n,) int8
    event: np.ndarray  # (n,) int64, index of the event in the batch


def generate_jets(
    config: JetSampleConfig,
    *,
    n_jets: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> Shard:
    """Generate exactly ``n_jets`` selected leading jets of ``config.process`` with ``seed``.

    The detector response draws from ``numpy.random.default_rng(seed)``; Pythia uses ``seed``
    too, so the same seed and config give the same shard. ``progress(k)`` is called with the
    number of jets accepted since its last call.
    """
    if n_jets < 1:
        raise NaeError(f"n_jets must be at least 1, got {n_jets}")
    settings = jet_process_settings(config)
    run = PythiaRun(settings, seed, veto=make_veto(config))
    rng = np.random.default_rng(seed)
    parts: list[LeadingJets] = []
    n_accepted = n_events = n_completed = 0
    for batch in run.batches(BATCH_SIZE):
        selected = leading_jets(batch, config, rng)
        take = min(len(selected.label), n_jets - n_accepted)
        parts.append(LeadingJets(*(a[:take] for a in selected)))
        n_accepted += take
        done = n_accepted == n_jets
        # In the last batch, the events after the last accepted jet are unused.
        last = int(selected.event[take - 1]) if done else batch.final.n_events - 1
        n_events += int(batch.examined[last])
        n_completed += last + 1
        if progress is not None and take:
            progress(take)
        if done:
            break
    return _shard(
        config,
        parts,
        seed=seed,
        settings=settings,
        run=run,
        n_events=n_events,
        n_vetoed=n_events - n_completed,
    )


def make_veto(config: JetSampleConfig) -> Any:
    """The ``ScaleVeto`` hook of ``config.veto`` (None when it is off), with its threshold at
    ``pt_fraction`` x the window's lower edge."""
    if config.veto is None:
        return None
    from training.data.veto import ScaleVeto

    return ScaleVeto(config.veto, threshold_gev=config.veto.pt_fraction * config.pt_min_gev)


def leading_jets(
    batch: PythiaBatch, config: JetSampleConfig, rng: np.random.Generator
) -> LeadingJets:
    """The leading anti-kT jet of each event, kept if it passes the landscape selection.

    Selection on the 4-vector of the stored (at most ``config.n_constituents``) constituents:
    pt_min_gev <= pT < pt_max_gev, |eta| < eta_max. ``top`` also requires a top quark and its
    three decay quarks within Delta R < jet_radius of the jet (label 1); ``dark`` labels a jet 1
    if a dark quark from the Z' decay lies within Delta R < jet_radius, and keeps it either way.
    """
    particles = batch.final
    if config.detector is not None:
        particles = detector_response(particles, config.detector, rng)
    event, constituents = _cluster_leading(particles, config)
    jet = jets_from_constituents(constituents)
    keep = (
        (jet[:, 0] >= config.pt_min_gev)
        & (jet[:, 0] < config.pt_max_gev)
        & (np.abs(jet[:, 1]) < config.eta_max)
    )
    label = _truth_labels(batch.record, event, jet, config)
    if config.process == "top":
        keep &= label == 1
    return LeadingJets(constituents[keep], jet[keep], label[keep], event[keep])


def _cluster_leading(
    particles: Particles, config: JetSampleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-kT cluster every event; return the events that have a jet above half the window's
    lower edge and the constituents of their leading jet, # (n,) int64, (n, 200, 4) float32."""
    ak = require("awkward", "data")
    fastjet = require("fastjet", "data")
    counts = particles.counts()
    momenta = ak.unflatten(
        ak.zip({"px": particles.px, "py": particles.py, "pz": particles.pz, "E": particles.e}),
        counts,
    )
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_radius)
    sequence = fastjet.ClusterSequence(momenta, definition)
    pt_min = 0.5 * config.pt_min_gev  # a pre-selection only; the window is applied later
    jets = sequence.inclusive_jets(min_pt=pt_min)
    indices = sequence.constituent_index(min_pt=pt_min)  # (events, jets, constituents), local
    lead = ak.argmax(np.hypot(jets.px, jets.py), axis=1, keepdims=True)
    lead_indices = ak.firsts(indices[lead], axis=1)  # (events, ?var), None without a jet
    has_jet = ~ak.to_numpy(ak.is_none(lead_indices))
    event = np.flatnonzero(has_jet)
    lead_indices = lead_indices[has_jet]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_per_jet = ak.to_numpy(ak.num(lead_indices))
    row = np.repeat(np.arange(len(event)), n_per_jet)
    index = ak.to_numpy(ak.flatten(lead_indices)).astype(np.int64) + np.repeat(
        offsets[event], n_per_jet
    )
    four = np.stack([particles.e, particles.px, particles.py, particles.pz], axis=1)[index]
    return event.astype(np.int64), _pad_constituents(row, four, len(event), config.n_constituents)


def _pad_constituents(row: np.ndarray, four: np.ndarray, n_rows: int, n_max: int) -> np.ndarray:
    """Scatter flat constituents into (n_rows, n_max, 4) float32, pT-descending, zero-padded;
    the softest beyond ``n_max`` are dropped. ``four``: (M, 4) E, px, py, pz [GeV]."""
    pt = np.hypot(four[:, 1], four[:, 2])
    order = np.lexsort((-pt, row))
    row, four = row[order], four[order]
    starts = np.searchsorted(row, np.arange(n_rows))
    rank = np.arange(len(row)) - starts[row]
    kept = rank < n_max
    out = np.zeros((n_rows, n_max, 4), dtype=np.float32)
    out[row[kept], rank[kept]] = four[kept]
    return out


def _truth_labels(
    record: Any, event: np.ndarray, jet: np.ndarray, config: JetSampleConfig
) -> np.ndarray:
    """1 where the jet contains the process's truth object (see ``leading_jets``), else 0."""
    if config.process == "qcd":
        return np.zeros(len(event), dtype=np.int8)
    truth = _TruthRecord.from_record(record)
    # (n_events, n_candidates, n_partons) each
    eta, phi = truth.top_decay_groups() if config.process == "top" else truth.dark_quarks()
    d_eta = eta[event] - jet[:, 1, None, None]
    d_phi = wrap_phi(phi[event] - jet[:, 2, None, None])
    inside = np.hypot(d_eta, d_phi) < config.jet_radius
    return np.any(np.all(inside, axis=2), axis=1).astype(np.int8)


class _TruthRecord(NamedTuple):
    """Pythia's full event record of a batch as flat columns with global indices."""

    pid: np.ndarray  # (M,) int
    mother1: np.ndarray  # (M,) global index
    daughter1: np.ndarray
    daughter2: np.ndarray
    event: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    n_events: int

    @classmethod
    def from_record(cls, record: Any) -> _TruthRecord:
        ak = require("awkward", "data")
        prt = record.prt
        counts = ak.to_numpy(ak.num(prt))
        event = np.repeat(np.arange(len(counts)), counts)
        offset = np.concatenate([[0], np.cumsum(counts)[:-1]])[event]
        flat = ak.flatten(prt)

        def column(name: str) -> np.ndarray:
            return ak.to_numpy(flat[name]).astype(np.int64)

        px, py, pz = (ak.to_numpy(getattr(flat.p, c)) for c in ("px", "py", "pz"))
        return cls(
            pid=column("id"),
            mother1=column("mother1") + offset,
            daughter1=column("daughter1") + offset,
            daughter2=column("daughter2") + offset,
            event=event,
            eta=pseudorapidity(px, py, pz),
            phi=np.arctan2(py, px),
            n_events=len(counts),
        )

    def _last_copy(self, index: np.ndarray) -> np.ndarray:
        """Follow each particle down its chain of recoil copies to the one that decays."""
        for _ in range(100):
            d1, d2 = self.daughter1[index], self.daughter2[index]
            same1, same2 = self.pid[d1] == self.pid[index], self.pid[d2] == self.pid[index]
            if not (same1 | same2).any():
                return index
            index = np.where(same1, d1, np.where(same2, d2, index))
        raise NaeError("Pythia record: a copy chain longer than 100 entries")

    def top_decay_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """eta, phi of (top, b, q, q') per top, # (n_events, 2, 4) each."""
        first = np.flatnonzero((np.abs(self.pid) == _TOP) & (self.pid[self.mother1] != self.pid))
        if len(first) != 2 * self.n_events:
            raise NaeError(f"expected two tops per event, found {len(first)} in {self.n_events}")
        top = self._last_copy(first)
        d1, d2 = self.daughter1[top], self.daughter2[top]
        is_w = np.abs(self.pid[d1]) == _W
        w, b = np.where(is_w, d1, d2), np.where(is_w, d2, d1)
        w = self._last_copy(w)
        partons = np.stack([top, b, self.daughter1[w], self.daughter2[w]], axis=1)  # (2n, 4)
        partons = partons.reshape(self.n_events, 2, 4)  # record order keeps events contiguous
        return self.eta[partons], self.phi[partons]

    def dark_quarks(self) -> tuple[np.ndarray, np.ndarray]:
        """eta, phi of the two dark quarks from the Z' decay, # (n_events, 2, 1) each."""
        quark = np.flatnonzero(
            (np.abs(self.pid) == _DARK_QUARK) & (self.pid[self.mother1] == _ZPRIME_DARK)
        )
        if len(quark) != 2 * self.n_events:
            raise NaeError(f"expected two dark quarks per event, found {len(quark)}")
        quark = quark.reshape(self.n_events, 2, 1)  # record order keeps events contiguous
        return self.eta[quark], self.phi[quark]


def jets_from_constituents(constituents: np.ndarray) -> np.ndarray:
    """Jet 4-vectors as the sum of the constituents.

    constituents: (N, C, 4) E, px, py, pz [GeV], zero-padded. Returns (N, 4) float32 pT [GeV],
    pseudorapidity eta, phi in (-pi, pi], mass [GeV] (0 where rounding makes m^2 negative).
    """
    total = constituents.astype(np.float64).sum(axis=1)
    e, px, py, pz = total.T
    pt = np.hypot(px, py)
    eta = pseudorapidity(px, py, pz)
    mass = np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None))
    return np.stack([pt, eta, np.arctan2(py, px), mass], axis=1).astype(np.float32)


def features_from_constituents(
    constituents: np.ndarray, *, jet_radius: float = 0.8
) -> dict[str, np.ndarray]:
    """The substructure features of FEATURE_NAMES, each (N,) float32, from the constituents.

    constituents: (N, C, 4) E, px, py, pz [GeV], zero-padded (rows with E = 0 are padding).

    - ``mass`` [GeV]: of the constituent sum; ``msd`` [GeV]: soft drop (beta = 0,
      z_cut = 0.1, R0 = jet_radius) on a C/A reclustering; ``log_msd``: log(max(msd, 1 GeV));
    - ``tau1..3``: N-subjettiness (arXiv:1011.2268), beta = 1, normalised measure
      (divided by sum pT * R0), one-pass WTA kT axes; ``tau21``, ``tau32``: ratios (0 where
      the denominator is 0, i.e. a jet with too few constituents);
    - ``c2_b1``, ``d2_b1``, ``c2_b05``, ``d2_b05``: energy-correlation ratios C2 and D2
      (arXiv:1305.0007, arXiv:1409.6298) with angular exponent beta = 1 and 0.5, pT and Delta R;
    - ``ptd`` = sqrt(sum pT^2) / sum pT; ``girth`` = sum pT Delta R / pT_jet (Delta R to the jet
      axis); ``major_axis``, ``minor_axis``: square roots of the eigenvalues of the pT^2-weighted
      eta-phi covariance (the CMS quark-gluon convention, CMS-PAS-JME-13-002);
      ``n_constituents``: non-padding rows.
    """
    four = constituents.astype(np.float64)
    present = four[..., 0] > 0
    if not present.any(axis=1).all():
        bad = int(np.flatnonzero(~present.any(axis=1))[0])
        raise NaeError(f"jet {bad} has no constituents (all rows have E = 0)")
    jet = jets_from_constituents(constituents)
    features = {"mass": jet[:, 3].astype(np.float64)}
    features.update(_fastjet_features(four, present, jet_radius))
    features["log_msd"] = np.log(np.maximum(features["msd"], MSD_FLOOR_GEV))
    features["tau21"] = _ratio(features["tau2"], features["tau1"])
    features["tau32"] = _ratio(features["tau3"], features["tau2"])
    features.update(_shape_features(four, present, jet))
    features["n_constituents"] = present.sum(axis=1)
    return {name: np.asarray(features[name], dtype=np.float32) for name in FEATURE_NAMES}


def _fastjet_features(
    four: np.ndarray, present: np.ndarray, jet_radius: float
) -> dict[str, np.ndarray]:
    """Soft-drop mass, tau1..3, C2 and D2 from fastjet-contrib, one FastJet event per jet."""
    ak = require("awkward", "data")
    fastjet = require("fastjet", "data")
    flat = four[present]
    momenta = ak.unflatten(
        ak.zip({"px": flat[:, 1], "py": flat[:, 2], "pz": flat[:, 3], "E": flat[:, 0]}),
        present.sum(axis=1),
    )
    definition = fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_RADIUS)
    sequence = fastjet.ClusterSequence(momenta, definition)
    groomed = sequence.exclusive_jets_softdrop_grooming(
        njets=1, beta=SOFT_DROP_BETA, symmetry_cut=SOFT_DROP_Z_CUT, R0=jet_radius
    )
    taus = ak.to_numpy(
        sequence.njettiness(
            measure_definition="NormalizedMeasure",
            axes_definition=NSUBJETTINESS_AXES,
            njets=[1, 2, 3],
            beta=1.0,
            R0=jet_radius,
        )
    )
    features = {
        "msd": ak.to_numpy(groomed.msoftdrop),
        "tau1": taus[:, 0],
        "tau2": taus[:, 1],
        "tau3": taus[:, 2],
    }
    for beta, suffix in ((1.0, "b1"), (0.5, "b05")):
        # Normalised e2, e3 once each; C2 = e3 / e2^2 and D2 = e3 / e2^3 (the contrib's own
        # C2 and D2 classes give the same to 1e-14 but compute e2 and e3 twice).
        e2, e3 = (
            ak.to_numpy(
                sequence.exclusive_jets_energy_correlator(
                    njets=1, beta=beta, npoint=n, angles=-1, func="generalized"
                )
            )
            for n in (2, 3)
        )
        features[f"c2_{suffix}"] = _ratio(e3, e2**2)
        features[f"d2_{suffix}"] = _ratio(e3, e2**3)
    return features


def _shape_features(
    four: np.ndarray, present: np.ndarray, jet: np.ndarray
) -> dict[str, np.ndarray]:
    """pT_D, girth and the eta-phi axes, in numpy. four: (N, C, 4); jet: (N, 4)."""
    pt = np.hypot(four[..., 1], four[..., 2])  # (N, C), 0 for padding
    eta = pseudorapidity(four[..., 1], four[..., 2], four[..., 3])
    d_eta = np.where(present, eta - jet[:, 1, None].astype(np.float64), 0.0)
    phi = np.arctan2(four[..., 2], four[..., 1])
    d_phi = np.where(present, wrap_phi(phi - jet[:, 2, None]), 0.0)
    sum_pt = pt.sum(axis=1)
    girth = (pt * np.hypot(d_eta, d_phi)).sum(axis=1) / jet[:, 0]
    weight = pt**2
    sum_w = weight.sum(axis=1)

    def moment(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (weight * a * b).sum(axis=1) / sum_w

    mean_eta, mean_phi = moment(d_eta, 1.0), moment(d_phi, 1.0)
    c_ee = moment(d_eta, d_eta) - mean_eta**2
    c_pp = moment(d_phi, d_phi) - mean_phi**2
    c_ep = moment(d_eta, d_phi) - mean_eta * mean_phi
    half_trace = 0.5 * (c_ee + c_pp)
    spread = np.sqrt((0.5 * (c_ee - c_pp)) ** 2 + c_ep**2)
    return {
        "ptd": np.sqrt(sum_w) / sum_pt,
        "girth": girth,
        "major_axis": np.sqrt(np.clip(half_trace + spread, 0.0, None)),
        "minor_axis": np.sqrt(np.clip(half_trace - spread, 0.0, None)),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _shard(
    config: JetSampleConfig,
    parts: list[LeadingJets],
    *,
    seed: int,
    settings: list[str],
    run: PythiaRun,
    n_events: int,
    n_vetoed: int,
) -> Shard:
    """Assemble the contract-1b arrays and provenance attributes.

    ``n_events_generated`` counts every event Pythia began up to the last accepted jet, those
    the veto stopped (``n_vetoed``) included, so ``selection_efficiency`` and
    ``cross_section_pb`` (the process before veto and selection) mean the same with the veto
    on or off."""
    constituents = np.concatenate([p.constituents for p in parts])
    features = features_from_constituents(constituents, jet_radius=config.jet_radius)
    arrays = {
        "constituents": constituents,
        "images": images_from_constituents(constituents, config.image),
        "jet": np.concatenate([p.jet for p in parts]),
        **{f"features/{name}": value for name, value in features.items()},
        "label": np.concatenate([p.label for p in parts]),
    }
    attrs = {
        "process": config.process,
        "seed": seed,
        "settings": json.dumps(
            {"config": config.model_dump(mode="json"), "pythia": [*COMMON_SETTINGS, *settings]}
        ),
        "n_tried": run.n_tried,
        "n_events_generated": n_events,
        "n_vetoed": n_vetoed,
        "cross_section_pb": run.cross_section_pb,
        "selection_efficiency": len(constituents) / n_events,
        "versions": json.dumps(generator_versions()),
        "machine": generator_machine(),
    }
    return Shard(arrays=arrays, attrs=attrs)
