"""Pythia 8 process cards and the event loop.

The loop uses Pythia's batch interface (``Pythia.nextBatch``), which returns whole event records
as awkward arrays, so no Python code runs per particle. Downstream code works on ``Particles``
(``training.data.particles``): flat numpy columns with an event index, the common currency of
``detector``, ``jets`` and ``events``.

Common settings follow the top-tagging landscape (arXiv:1902.09914) and the ADC2021 challenge
(arXiv:2107.02157): 13 TeV pp, the Monash 2013 tune (Pythia's default), MPI, showers and
hadronisation on, and particles with c*tau > 10 mm left stable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.config import EventSampleConfig, JetSampleConfig, ZgammaSampleConfig
from training.data.particles import Particles, concatenate_particles
from training.errors import NaeError, require

__all__ = [
    "COMMON_SETTINGS",
    "PythiaBatch",
    "PythiaRun",
    "event_process_settings",
    "final_particles",
    "generator_machine",
    "generator_versions",
    "jet_process_settings",
    "zgamma_process_settings",
]

COMMON_SETTINGS: tuple[str, ...] = (
    "Beams:eCM = 13000.",
    # Monash 2013 (Tune:pp = 14) is Pythia 8's default; stated so a reader need not know that.
    "Tune:pp = 14",
    # Particles with c*tau > 10 mm do not decay (K0S, Lambda, ... are stable, as at the LHC).
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
    "Next:numberCount = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Next:numberShowEvent = 0",
    "Init:showProcesses = off",
    "Init:showMultipartonInteractions = off",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Print:quiet = on",
)

MAX_SEED = 900_000_000  # Pythia's Random:seed range


@dataclass(frozen=True)
class PythiaBatch:
    """One batch of generated events: the full record (for truth) and the visible final state.

    ``examined[k]`` counts the events Pythia went through in this batch up to and including
    event k: k + 1, plus the events a veto hook stopped before it. ``scale_jet_pt`` is the veto
    hook's leading parton-level jet pT per event (None without a hook).
    """

    record: Any  # awkward Array; record.prt: n_events * var * {id, status, mother1, ..., p}
    final: Particles  # visible final-state particles (no neutrinos, no dark-sector particles)
    examined: np.ndarray  # (n_events,) int64, increasing
    scale_jet_pt: np.ndarray | None = None  # (n_events,) float64 [GeV]


@dataclass
class PythiaRun:
    """A configured, initialised Pythia instance that yields ``PythiaBatch`` objects.

    ``settings`` are process-specific lines added after ``COMMON_SETTINGS``. The seed fully
    determines the output: the same seed and settings give the same events. ``veto`` is an
    optional ``training.data.veto.ScaleVeto`` hook that stops hopeless events early.
    """

    settings: Sequence[str]
    seed: int
    veto: Any = None
    _pythia: Any = field(init=False, repr=False)
    _charges: dict[int, tuple[float, bool]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:
            raise NaeError(f"Pythia seed must be in [0, {MAX_SEED}], got {self.seed}")
        pythia8 = require("pythia8mc", "data")
        self._pythia = pythia8.Pythia("", False)
        for line in (*COMMON_SETTINGS, *self.settings, "Random:setSeed = on"):
            self._read(line)
        self._read(f"Random:seed = {self.seed}")
        if self.veto is not None:
            self._pythia.setUserHooksPtr(self.veto)
        if not self._pythia.init():
            raise NaeError(f"Pythia failed to initialise with settings {list(self.settings)}")

    def _read(self, line: str) -> None:
        if not self._pythia.readString(line):
            raise NaeError(f"Pythia rejected the setting {line!r}")

    def batches(self, batch_size: int = 100) -> Iterator[PythiaBatch]:
        """Generate events forever, ``batch_size`` at a time; the caller decides when to stop."""
        while True:
            vetoed_at_start = 0 if self.veto is None else self.veto.n_vetoed
            record = self._pythia.nextBatch(batch_size)
            final = self._final_state(record)
            examined = np.arange(1, final.n_events + 1, dtype=np.int64)
            scale_jet_pt = None
            if self.veto is not None:
                scale_jet_pt, vetoed_before = self.veto.take(final.n_events)
                examined += vetoed_before - vetoed_at_start
            yield PythiaBatch(
                record=record, final=final, examined=examined, scale_jet_pt=scale_jet_pt
            )

    def _final_state(self, record: Any) -> Particles:
        ak = require("awkward", "data")
        final = record.prt[record.prt.status > 0]
        counts = ak.to_numpy(ak.num(final, axis=1))
        flat = ak.flatten(final)
        pid = ak.to_numpy(flat.id).astype(np.int32)
        charge, visible = self._charge_visibility(pid)
        particles = Particles(
            event=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
            px=ak.to_numpy(flat.p.px),
            py=ak.to_numpy(flat.p.py),
            pz=ak.to_numpy(flat.p.pz),
            e=ak.to_numpy(flat.p.e),
            pid=pid,
            charge=charge,
            n_events=len(counts),
        )
        return particles.select(visible)

    def _charge_visibility(self, pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Charge and visibility per row, looked up once per distinct PDG id."""
        ids, inverse = np.unique(pid, return_inverse=True)
        data = self._pythia.particleData
        for i in ids.tolist():
            if i not in self._charges:
                self._charges[i] = (data.charge(i), data.isVisible(i))
        table = np.array([self._charges[i] for i in ids.tolist()], dtype=np.float64).reshape(-1, 2)
        return table[inverse, 0].astype(np.float32), table[inverse, 1].astype(bool)

    @property
    def cross_section_pb(self) -> float:
        """Pythia's estimate of the generated process's cross section so far (mb converted to
        pb). Pythia leaves vetoed events out of its estimate, so with a veto hook its figure is
        divided by the fraction of events that passed: the cross section before the veto."""
        sigma = float(self._pythia.infoPython().sigmaGen()) * 1e9
        return sigma if self.veto is None else sigma / self.veto.pass_fraction

    @property
    def n_tried(self) -> int:
        return int(self._pythia.infoPython().nTried())


# --- Jet-level processes (top-tagging landscape, arXiv:1902.09914) ---------------------------

# PhaseSpace:pTHatMin as a fraction of the leading-jet window's lower edge. A hard ISR
# emission (pT up to pTHat) recoils against the jet, so window jets come from pTHat down to
# about half the window edge: a cut at 0.8 x 550 GeV loses 20% of QCD and 15% of top jets,
# most at the low-pT end (measured: docs/data.md, "Jets"). 0.55 costs 5x more events per jet.
JET_PTHAT_MIN_FRACTION = {"qcd": 0.55, "top": 0.55}
# Dark-meson decays: democratic over the SM quarks that are kinematically open (d u s c b).
_QUARK_MASSES_GEV = {1: 0.33, 2: 0.33, 3: 0.5, 4: 1.5, 5: 4.8}  # Pythia's m0


def jet_process_settings(config: JetSampleConfig) -> list[str]:
    """Pythia lines (added to ``COMMON_SETTINGS``) for one process of ``nae data jets``.

    - ``qcd``: all 2 -> 2 QCD processes, pTHat > JET_PTHAT_MIN_FRACTION * pt_min_gev (or
      ``config.pthat_min_gev`` when set);
    - ``top``: gg, qqbar -> t tbar with both W -> hadrons (all-hadronic), same pTHat rule;
    - ``dark``: semi-visible jets (Cohen, Lisanti, Lou, arXiv:1503.00009; the CMS search,
      arXiv:2112.11125, Pythia setup as in Cohen et al. arXiv:1707.05326): see ``_dark_settings``.
    """
    if config.process == "dark":
        return _dark_settings(config)
    pthat_min = config.pthat_min_gev
    if pthat_min is None:
        pthat_min = JET_PTHAT_MIN_FRACTION[config.process] * config.pt_min_gev
    cards = {
        "qcd": ("HardQCD:all = on",),
        "top": (
            "Top:gg2ttbar = on",
            "Top:qqbar2ttbar = on",
            "24:onMode = off",
            "24:onIfAny = 1 2 3 4 5",
        ),
    }
    return [*cards[config.process], f"PhaseSpace:pTHatMin = {pthat_min}"]


def _dark_settings(config: JetSampleConfig) -> list[str]:
    """Hidden Valley s-channel Z' -> dark quarks with a running dark coupling, dark showers
    and dark hadronisation; each dark meson is stable and invisible with probability r_inv.

    One dark flavour (``nFlav = 1``), so only the diagonal mesons pi_v (4900111) and rho_v
    (4900113) form, both of mass ``dark_hadron_mass_gev``; dark quarks weigh half of that and
    Lambda_dark equals the meson mass (the CMS convention). Each meson decays with branching
    ratio r_inv to a pair of stable dark-matter scalars (PDG 51, invisible) and with 1 - r_inv
    to an SM quark pair that showers and hadronises (matrix-element mode 91). This makes r_inv
    exactly the invisible fraction of dark hadrons, as defined in arXiv:1503.00009.
    """
    m_meson = config.dark_hadron_mass_gev
    lambda_dark = m_meson
    quarks = [q for q, m in _QUARK_MASSES_GEV.items() if 2 * m < m_meson]
    visible = (1.0 - config.r_inv) / len(quarks)
    lines = [
        "HiddenValley:ffbar2Zv = on",
        f"4900023:m0 = {config.zprime_mass_gev}",
        # Keep Pythia's Zv couplings (they set the production rate); decay only to dark quarks.
        "4900023:onMode = off",
        "4900023:onIfMatch = 4900101 -4900101",
        "HiddenValley:Ngauge = 3",
        "HiddenValley:nFlav = 1",
        "HiddenValley:spinFv = 0",
        "HiddenValley:FSR = on",
        "HiddenValley:fragment = on",
        "HiddenValley:alphaOrder = 1",
        f"HiddenValley:Lambda = {lambda_dark}",
        f"HiddenValley:pTminFSR = {1.1 * lambda_dark}",
        f"4900101:m0 = {m_meson / 2}",
        "51:m0 = 0.0",
        "51:isResonance = false",
    ]
    for meson in (4900111, 4900113):
        lines += [
            f"{meson}:m0 = {m_meson}",
            f"{meson}:oneChannel = 1 {config.r_inv} 0 51 -51",
            *(f"{meson}:addChannel = 1 {visible} 91 {q} -{q}" for q in quarks),
        ]
    return lines


# --- Event-level processes (ADC2021, arXiv:2107.02157) ----------------------------------------

Z_MHAT_MIN_GEV = 40.0  # z, sm: gamma*/Z -> ll above 40 GeV: the Z line shape plus the DY tail
QCD_PTHAT_MIN_GEV = 20.0  # qcd: 2 -> 2 pT-hat cut, just below the 23 GeV lepton filter
A_4L_MASS_GEV = 50.0  # a_4l: ADC2021's A -> 4l
H_TAUTAU_MASS_GEV = 60.0  # h_tautau: ADC2021's h0 -> tau tau
HPLUS_MASS_GEV = 60.0  # hplus_taunu: ADC2021's h+ -> tau nu

_W_TO_LEPTONS = ("WeakSingleBoson:ffbar2W = on", "24:onMode = off", "24:onIfAny = 11 13 15")
_Z_TO_LEPTONS = (
    "WeakSingleBoson:ffbar2gmZ = on",  # full gamma*/Z interference (WeakZ0:gmZmode = 0)
    f"PhaseSpace:mHatMin = {Z_MHAT_MIN_GEV}",
    "23:onMode = off",
    "23:onIfAny = 11 13 15",
)
_TTBAR = ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on")  # inclusive top decays


def _resonance(pid: int, mass_gev: float, decay: str) -> tuple[str, ...]:
    """Resonance ``pid`` at ``mass_gev`` (mass window m/2 .. 2m), decaying only to ``decay``."""
    return (
        f"{pid}:m0 = {mass_gev}",
        f"{pid}:mMin = {mass_gev / 2}",
        f"{pid}:mMax = {2 * mass_gev}",
        f"{pid}:onMode = off",
        f"{pid}:onIfMatch = {decay}",
    )


def event_process_settings(config: EventSampleConfig) -> list[str]:
    """Pythia lines (added to ``COMMON_SETTINGS``) for one event process of ``nae data events``.

    Backgrounds follow ADC2021's SM cocktail: ``w`` (W -> l nu, l = e, mu, tau), ``z``
    (gamma*/Z -> l l with mHat > Z_MHAT_MIN_GEV), ``tt`` (inclusive), ``sm`` (all three switched
    on in one run, so Pythia mixes them by its own cross sections) and ``qcd`` (HardQCD 2 -> 2,
    pTHat > QCD_PTHAT_MIN_GEV, meant unfiltered: 0 of 20,000 events pass the lepton filter,
    so its efficiency is < 1.9e-4 at 95% CL, see docs/data.md). Signals are ADC2021's light
    resonances:

    - ``zprime_mumu``: a sequential-SM-coupled Z' (Pythia's NewGaugeBoson, Z' alone, no gamma*/Z
      interference) of ``config.zprime_mass_gev`` decaying only to mu mu;
    - ``a_4l``: a 50 GeV neutral scalar from gg fusion -> Z Z* -> 4l (l = e, mu). Pythia's
      CP-odd A0 has no tree-level ZZ coupling, so the SM-like scalar (PDG 25) is re-massed;
      both Z* are off shell (Pythia's 23:mMin = 10 GeV applies);
    - ``h_tautau``: the same scalar at 60 GeV from gg fusion -> tau tau;
    - ``hplus_taunu``: a 60 GeV charged scalar from f fbar' -> H+- (Yukawa couplings), -> tau nu.

    Signal cross sections depend on couplings chosen for convenience; only shapes matter.
    """
    mass = config.zprime_mass_gev
    cards: dict[str, tuple[str, ...]] = {
        "w": _W_TO_LEPTONS,
        "z": _Z_TO_LEPTONS,
        "tt": _TTBAR,
        "sm": _W_TO_LEPTONS + _Z_TO_LEPTONS + _TTBAR,
        "qcd": ("HardQCD:all = on", f"PhaseSpace:pTHatMin = {QCD_PTHAT_MIN_GEV}"),
        "zprime_mumu": (
            "NewGaugeBoson:ffbar2gmZZprime = on",
            "Zprime:gmZmode = 3",
            *_resonance(32, mass, "13 -13"),
        ),
        "a_4l": (
            "HiggsSM:gg2H = on",
            *_resonance(25, A_4L_MASS_GEV, "23 23"),
            "23:onMode = off",
            "23:onIfAny = 11 13",
        ),
        "h_tautau": ("HiggsSM:gg2H = on", *_resonance(25, H_TAUTAU_MASS_GEV, "15 -15")),
        "hplus_taunu": (
            "Higgs:useBSM = on",
            "HiggsBSM:ffbar2H+- = on",
            *_resonance(37, HPLUS_MASS_GEV, "15 16"),
        ),
    }
    return list(cards[config.process])


# --- Z-gamma (issue 11: the VAE-family study) ----------------------------------------------

_Z_TO_EE_MUMU = ("23:onMode = off", "23:onIfAny = 11 13")


def zgamma_process_settings(config: ZgammaSampleConfig) -> list[str]:
    """Pythia lines (added to ``COMMON_SETTINGS``) for one process of ``nae data zgamma``.

    - ``zgamma``: f fbar -> gamma*/Z gamma (``WeakBosonAndParton:ffbar2gmZgm``, full gamma*/Z
      interference), gamma*/Z -> ee, mumu with m > ``z_mass_min_gev`` (``23:mMin``), photon
      pT at leading order above ``pthat_min_gev``. Photons radiated by the leptons come from
      Pythia's shower on top.
    - ``h_zgamma``: gg -> H -> Z gamma, Z -> ee, mumu. H is Pythia's SM-like h0 (PDG 25)
      re-massed to ``scalar_mass_gev``; its decay table has the gamma Z0 channel (id 22 23,
      meMode 0; so does the BSM H0, PDG 35, which would need Higgs:useBSM for nothing more),
      and every other channel is switched off. An SM-like h0 of a few hundred GeV is tens of
      GeV wide (WW, ZZ, tt), so the width is forced (``doForceWidth``) to ``scalar_width_gev``,
      the narrow resonance of the searches. The cross section follows from couplings chosen
      for convenience: use the shapes, not the normalisation.
    """
    z = (*_Z_TO_EE_MUMU, f"23:mMin = {config.z_mass_min_gev}")
    if config.process == "zgamma":
        return [
            "WeakBosonAndParton:ffbar2gmZgm = on",
            f"PhaseSpace:pTHatMin = {config.pthat_min_gev}",
            *z,
        ]
    mass = config.scalar_mass_gev
    return [
        "HiggsSM:gg2H = on",
        *_resonance(25, mass, "22 23"),
        "25:doForceWidth = on",
        f"25:mWidth = {config.scalar_width_gev}",
        *z,
    ]


def final_particles(run: PythiaRun, n_events: int, batch_size: int = 100) -> Particles:
    """Convenience for tests and notebooks: the visible final state of ``n_events`` events."""
    parts = []
    for batch in run.batches(min(batch_size, n_events)):
        parts.append(batch.final)
        if sum(p.n_events for p in parts) >= n_events:
            break
    return concatenate_particles(parts)


def generator_versions() -> dict[str, str]:
    """The ``versions`` attribute of every generated shard: the tools whose releases can change
    the numbers a seed gives (numpy included: its SIMD kernels differ between releases)."""
    from importlib.metadata import version

    from training import __version__

    return {
        "pythia8mc": version("pythia8mc"),
        "fastjet": version("fastjet"),
        "numpy": np.__version__,
        "nae-trigger": __version__,
    }


def generator_machine() -> str:
    """The ``machine`` attribute of every generated shard: architecture, CPU model and vector
    extensions, because a seed's sample has been seen to differ between machines (Z-gamma,
    docs/data.md) and the shard is where that can be read back."""
    import platform

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    vector = [f for f in ("avx512f", "avx512_vnni", "avx2", "fma", "neon", "asimd") if f in flags]
    return f"{platform.machine()}; {model}; {' '.join(vector) or 'no vector flags read'}"
