"""The Z-gamma sample of the VAE-family study (issue 11): ``nae data zgamma``.

Per event, from the reconstructed candidates (the detector's tracks and towers, or the visible
final state at truth level):

- isolated electrons and muons as in the event format (``training.data.events``): |pid| 11 or
  13 in the lepton acceptance, relative isolation below ``isolation_max`` in ``isolation_cone``;
- isolated photons: ECAL towers (at truth level, photons) above ``photon_pt_min_gev`` inside
  ``photon_eta_max``, isolated the same way, Delta R > ``photon_lepton_dr_min`` from both
  leptons of the pair (which removes photons radiated collinear to a lepton);
- the lepton pair: per flavour the leading positive and the leading negative lepton; where an
  event has both an ee and a mumu pair, the one with m_ll nearer m_Z. The pair must pass the
  leading/subleading pT cuts, and the photon is the leading isolated one;
- jets: anti-kT of every candidate except the isolated leptons and photons (FastJet, as the
  event format's), counted above ``jet_pt_min_gev`` within ``jet_eta_max``, and separately
  within ``central_jet_eta_max``;
- MET: minus the vector pT sum of all candidates.

An event is kept when it has the pair and the photon. What is stored is the feature table of
the study: ``features/<name>`` (N,) float32 for each of ``ZGAMMA_FEATURES`` (the Z-gamma
system's m, pT, eta, phi, E; the dilepton's pT, eta, phi, E, m, Delta R; MET and its phi; the
jet counts; Delta phi between the leptons and between MET and the Z-gamma system, both in
[0, pi]; pT_ll / m_llg), and ``label`` (1 for ``h_zgamma``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from training.config import ZGAMMA_FEATURES, ZgammaSampleConfig
from training.data.detector import ECAL_TOWER_PID, detector_response
from training.data.events import jets_from_candidates, relative_isolation, shard_provenance
from training.data.particles import Particles, pseudorapidity, wrap_phi
from training.data.pythia import PythiaRun, zgamma_process_settings
from training.data.shards import Shard
from training.errors import NaeError

__all__ = [
    "FEATURE_RANGES",
    "FEATURE_UNITS",
    "IDENTITIES",
    "Z_MASS_GEV",
    "derive_features",
    "features_from_candidates",
    "generate_zgamma",
]

Z_MASS_GEV = 91.1876  # PDG; picks the pair when an event has both an ee and a mumu one
_ELECTRON, _MUON, _PHOTON = 11, 13, 22
_PHI_MAX = float(np.nextafter(np.float32(np.pi), np.float32(4)))  # pi after float32 rounding
FEATURE_UNITS: dict[str, str] = {
    name: "GeV" for name in ("m_llg", "pt_llg", "e_llg", "pt_ll", "e_ll", "m_ll", "met")
} | {name: "rad" for name in ("phi_llg", "phi_ll", "met_phi", "dphi_ll", "dphi_met_llg")}
# The physics bounds of each feature (None: open), for the bundle's input.ranges.
FEATURE_RANGES: dict[str, tuple[float | None, float | None]] = {
    **{name: (0.0, None) for name in ("m_llg", "pt_llg", "e_llg", "pt_ll", "e_ll", "m_ll")},
    **{name: (0.0, None) for name in ("met", "dr_ll", "n_jets", "n_central_jets")},
    "pt_ll_over_m_llg": (0.0, None),
    **{name: (-_PHI_MAX, _PHI_MAX) for name in ("phi_llg", "phi_ll", "met_phi")},
    **{name: (0.0, _PHI_MAX) for name in ("dphi_ll", "dphi_met_llg")},
    "eta_llg": (None, None),
    "eta_ll": (None, None),
}


def _energy(m: np.ndarray, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return np.sqrt(np.square(m) + np.square(pt * np.cosh(eta)))


# Features that are exact functions of others (E^2 = m^2 + (pT cosh eta)^2; a ratio; a
# Delta phi): name -> (its inputs, the formula). A generator that draws them as free features
# breaks the identity on every event, which a classifier two-sample test sees at once, so the
# generators can compute them from their inputs instead (``data.derived``).
IDENTITIES: dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray]]] = {
    "e_llg": (("m_llg", "pt_llg", "eta_llg"), _energy),
    "e_ll": (("m_ll", "pt_ll", "eta_ll"), _energy),
    "pt_ll_over_m_llg": (("pt_ll", "m_llg"), lambda pt, m: pt / np.maximum(m, 1e-9)),
    "dphi_met_llg": (("met_phi", "phi_llg"), lambda a, b: np.abs(wrap_phi(a - b))),
}


def derive_features(
    table: np.ndarray, features: tuple[str, ...], derived: tuple[str, ...]
) -> np.ndarray:
    """``table`` (N, len(features)) with the ``derived`` columns recomputed from their inputs
    (float64 arithmetic, as the sample's own features, cast back to the table's dtype)."""
    out = table.copy()
    column = {name: i for i, name in enumerate(features)}
    for name in derived:
        inputs, formula = IDENTITIES[name]
        values = formula(*(table[:, column[i]].astype(np.float64) for i in inputs))
        out[:, column[name]] = values
    return out


def generate_zgamma(
    config: ZgammaSampleConfig,
    *,
    n_events: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 100,
) -> Shard:
    """Exactly ``n_events`` selected Z-gamma events of ``config.process`` as a feature-table
    shard. ``seed`` seeds Pythia and the detector, so the same seed gives the same shard.

    Attributes as for ``nae data events`` (``n_events_generated``, ``filter_efficiency`` =
    n / n_events_generated, ``cross_section_pb`` before the selection, ``settings``,
    ``versions``), plus ``cpu_seconds``: the CPU time of this process spent making the shard,
    Pythia's initialisation included, so a generator's speed can be compared with it.
    """
    if n_events < 1:
        raise NaeError(f"n_events must be at least 1, got {n_events}")
    start_cpu = time.process_time()
    settings = zgamma_process_settings(config)
    run = PythiaRun(settings, seed=seed)
    rng = np.random.default_rng(seed)
    chunks: list[np.ndarray] = []
    n_accepted = n_generated = 0
    for batch in run.batches(batch_size):
        candidates = _candidates(batch.final, config, rng)
        table, passed = features_from_candidates(candidates, config)
        index = np.flatnonzero(passed)[: n_events - n_accepted]
        done = n_accepted + len(index) == n_events
        n_generated += int(index[-1]) + 1 if done else batch.final.n_events
        chunks.append(table[index])
        n_accepted += len(index)
        if progress is not None and len(index):
            progress(len(index))
        if done:
            break
    table = np.concatenate(chunks)  # (n_events, 18)
    arrays = {f"features/{name}": table[:, i] for i, name in enumerate(ZGAMMA_FEATURES)}
    arrays["label"] = np.full(n_events, int(config.process == "h_zgamma"), dtype=np.int8)
    attrs = shard_provenance(config, settings, seed=seed, run=run, n_generated=n_generated)
    attrs["filter_efficiency"] = n_events / n_generated
    attrs["cpu_seconds"] = time.process_time() - start_cpu
    return Shard(arrays=arrays, attrs=attrs)


def _candidates(
    final: Particles, config: ZgammaSampleConfig, rng: np.random.Generator
) -> Particles:
    if config.detector is None:
        return final
    return detector_response(
        final, config.detector, rng, electrons_in_ecal=config.electrons_in_ecal
    )


class _Pair(NamedTuple):
    """Per event: candidate indices of the pair's two leptons (-1: no pair) and m_ll."""

    first: np.ndarray  # (N,) int64, the higher-pT lepton
    second: np.ndarray  # (N,) int64
    m_ll: np.ndarray  # (N,) [GeV], inf without a pair


def features_from_candidates(
    candidates: Particles, config: ZgammaSampleConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The 18 features of every event and which events pass the selection.

    Returns # (N, 18) float32 in ``ZGAMMA_FEATURES`` order (rows of failing events are zero)
    and # (N,) bool. ``candidates`` must be sorted by event (as ``detector_response`` gives).
    """
    n = candidates.n_events
    abs_pid = np.abs(candidates.pid)
    pt, eta = candidates.pt, candidates.eta
    lepton = (
        np.isin(abs_pid, (_ELECTRON, _MUON))
        & (pt > config.lepton_pt_min_gev[1])
        & (np.abs(eta) < config.lepton_eta_max)
    )
    photon_pid = ECAL_TOWER_PID if config.detector is not None else _PHOTON
    photon = (
        (candidates.pid == photon_pid)
        & (candidates.charge == 0)
        & (pt > config.photon_pt_min_gev)
        & (np.abs(eta) < config.photon_eta_max)
    )
    lepton &= _isolated(candidates, lepton, config)
    photon &= _isolated(candidates, photon, config)
    pair = _best_pair(candidates, lepton)
    has_pair = pair.first >= 0
    leading_pt = np.where(has_pair, pt[pair.first], 0.0)
    has_pair &= leading_pt > config.lepton_pt_min_gev[0]
    gamma = _leading_photon(candidates, photon, pair, has_pair, config.photon_lepton_dr_min)
    passed = has_pair & (gamma >= 0)
    table = np.zeros((n, len(ZGAMMA_FEATURES)), dtype=np.float32)
    if not passed.any():
        return table, passed
    events = np.flatnonzero(passed)
    kept = candidates.select(np.isin(candidates.event, events))
    renumber = np.full(n, -1, dtype=np.int64)
    renumber[events] = np.arange(len(events))
    kept = Particles(
        event=renumber[kept.event],
        px=kept.px,
        py=kept.py,
        pz=kept.pz,
        e=kept.e,
        pid=kept.pid,
        charge=kept.charge,
        n_events=len(events),
    )
    not_jet = (lepton | photon)[np.isin(candidates.event, events)]
    jets = jets_from_candidates(kept.select(~not_jet), config)
    n_jets = np.bincount(jets.event, minlength=len(events))
    n_central = np.bincount(
        jets.event[np.abs(jets.eta) < config.central_jet_eta_max], minlength=len(events)
    )
    met_px = -np.bincount(kept.event, weights=kept.px, minlength=len(events))
    met_py = -np.bincount(kept.event, weights=kept.py, minlength=len(events))
    table[events] = _feature_rows(
        _four_vector(candidates, pair.first[events]),
        _four_vector(candidates, pair.second[events]),
        _four_vector(candidates, gamma[events]),
        met_px,
        met_py,
        n_jets,
        n_central,
    )
    return table, passed


def _isolated(candidates: Particles, mask: np.ndarray, config: ZgammaSampleConfig) -> np.ndarray:
    """Which candidates of ``mask`` are isolated (the event format's relative isolation)."""
    index = np.flatnonzero(mask)
    isolated = np.zeros(len(mask), dtype=bool)
    isolation = relative_isolation(candidates, index, cone=config.isolation_cone)
    isolated[index[isolation < config.isolation_max]] = True
    return isolated


def _leading(event: np.ndarray, pt: np.ndarray, index: np.ndarray, n_events: int) -> np.ndarray:
    """Per event, the candidate of ``index`` with the highest pT; -1 where there is none."""
    leading = np.full(n_events, -1, dtype=np.int64)
    order = np.lexsort((-pt[index], event[index]))  # by event, then decreasing pT
    ordered = index[order]
    first = np.ones(len(ordered), dtype=bool)
    first[1:] = event[ordered][1:] != event[ordered][:-1]
    leading[event[ordered[first]]] = ordered[first]
    return leading


def _best_pair(candidates: Particles, lepton: np.ndarray) -> _Pair:
    """Per flavour the leading positive and leading negative lepton; of an ee and a mumu pair
    in one event, the one with m_ll nearer m_Z."""
    n, pt, abs_pid = candidates.n_events, candidates.pt, np.abs(candidates.pid)
    best = _Pair(np.full(n, -1), np.full(n, -1), np.full(n, np.inf))
    for flavour in (_ELECTRON, _MUON):
        legs = [
            _leading(
                candidates.event,
                pt,
                np.flatnonzero(lepton & (abs_pid == flavour) & (candidates.charge * sign > 0)),
                n,
            )
            for sign in (1, -1)
        ]
        ok = (legs[0] >= 0) & (legs[1] >= 0)
        a, b = np.where(ok, legs[0], 0), np.where(ok, legs[1], 0)
        m_ll = np.where(
            ok, _mass(*(_four_vector(candidates, a) + _four_vector(candidates, b))), np.inf
        )
        better = ok & (np.abs(m_ll - Z_MASS_GEV) < np.abs(best.m_ll - Z_MASS_GEV))
        first = np.where(pt[a] >= pt[b], a, b)
        second = np.where(pt[a] >= pt[b], b, a)
        best = _Pair(
            np.where(better, first, best.first),
            np.where(better, second, best.second),
            np.where(better, m_ll, best.m_ll),
        )
    return best


def _leading_photon(
    candidates: Particles, photon: np.ndarray, pair: _Pair, has_pair: np.ndarray, dr_min: float
) -> np.ndarray:
    """Per event, the leading photon candidate farther than ``dr_min`` from both leptons."""
    index = np.flatnonzero(photon & has_pair[candidates.event])
    event = candidates.event[index]
    eta, phi = candidates.eta, candidates.phi
    far = np.ones(len(index), dtype=bool)
    for leg in (pair.first, pair.second):
        other = leg[event]
        far &= _delta_r(eta[index], phi[index], eta[other], phi[other]) > dr_min
    return _leading(candidates.event, candidates.pt, index[far], candidates.n_events)


def _four_vector(candidates: Particles, index: np.ndarray) -> np.ndarray:
    """(4, K): px, py, pz, E [GeV] of the candidates ``index``."""
    return np.stack(
        [candidates.px[index], candidates.py[index], candidates.pz[index], candidates.e[index]]
    )


def _mass(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray) -> np.ndarray:
    return np.sqrt(np.clip(e**2 - px**2 - py**2 - pz**2, 0.0, None))


def _delta_r(eta_a, phi_a, eta_b, phi_b) -> np.ndarray:
    return np.hypot(eta_a - eta_b, wrap_phi(phi_a - phi_b))


def _feature_rows(
    lepton_1: np.ndarray,
    lepton_2: np.ndarray,
    photon: np.ndarray,
    met_px: np.ndarray,
    met_py: np.ndarray,
    n_jets: np.ndarray,
    n_central: np.ndarray,
) -> np.ndarray:
    """# (K, 18) in ``ZGAMMA_FEATURES`` order from (4, K) four-vectors and the event sums."""
    ll = lepton_1 + lepton_2
    llg = ll + photon

    def kinematics(p: np.ndarray) -> tuple[np.ndarray, ...]:
        pt = np.hypot(p[0], p[1])
        return pt, pseudorapidity(p[0], p[1], p[2]), np.arctan2(p[1], p[0]), p[3], _mass(*p)

    pt_llg, eta_llg, phi_llg, e_llg, m_llg = kinematics(llg)
    pt_ll, eta_ll, phi_ll, e_ll, m_ll = kinematics(ll)
    _, eta_1, phi_1, _, _ = kinematics(lepton_1)
    _, eta_2, phi_2, _, _ = kinematics(lepton_2)
    met_phi = np.arctan2(met_py, met_px)
    columns = {
        "m_llg": m_llg,
        "pt_llg": pt_llg,
        "eta_llg": eta_llg,
        "phi_llg": phi_llg,
        "e_llg": e_llg,
        "pt_ll": pt_ll,
        "eta_ll": eta_ll,
        "phi_ll": phi_ll,
        "e_ll": e_ll,
        "m_ll": m_ll,
        "dr_ll": _delta_r(eta_1, phi_1, eta_2, phi_2),
        "met": np.hypot(met_px, met_py),
        "met_phi": met_phi,
        "n_jets": n_jets,
        "n_central_jets": n_central,
        "dphi_ll": np.abs(wrap_phi(phi_1 - phi_2)),
        "dphi_met_llg": np.abs(wrap_phi(met_phi - phi_llg)),
        "pt_ll_over_m_llg": pt_ll / np.maximum(m_llg, 1e-9),
    }
    return np.stack([columns[name] for name in ZGAMMA_FEATURES], axis=1).astype(np.float32)
