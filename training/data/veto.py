"""Stop events that cannot give a selected jet, early inside Pythia's parton-level evolution.

A landscape jet (pT 550-650 GeV) needs pTHatMin far below the window (docs/data.md, "pTHatMin
and the pT window"), so most generated events never give a window jet, and 80% of their cost
is the parton-level evolution (interleaved MPI, ISR and FSR, ordered in decreasing pT). Almost
all of that time is spent at low pT, while the hard jets are already formed when the
evolution passes a scale of a few tens of GeV. So the hook below interrupts the evolution once,
at ``scale_gev`` (Pythia's ``canVetoPT``/``scaleVetoPT``/``doVetoPT``), clusters the partons of
that moment with anti-kT (Pythia's ``SlowJet``; massive tops of ``top`` events count as single
objects, since their decays come later) and vetoes the event when no jet within
``|eta| < eta_max`` reaches ``threshold_gev``. The threshold and radius are chosen from
measurement so that the window jets lost stay below 0.5% (docs/data.md, "The in-evolution
veto"): the physics of the kept events is unchanged.

Pythia does not count a vetoed event as accepted, so its ``sigmaGen`` becomes the cross section
of the events that pass. The hook counts passed and vetoed events so that the generators can
store the cross section of the whole process and efficiencies relative to every event examined
(``PythiaRun.cross_section_pb``, ``PythiaBatch.examined``).

This module imports ``pythia8mc`` at import time (the hook subclasses its ``UserHooks``); import
it only where Pythia runs.
"""

from __future__ import annotations

import math

import numpy as np
import pythia8mc

from training.config import JetVetoConfig
from training.errors import NaeError

__all__ = ["ScaleVeto", "leading_jet_pt"]

# SlowJet arguments: anti-kT (power -1); every final-state parton (select 1, invisible dark-sector
# partons included, so the pT is an upper bound on what the detector sees); keep masses (2).
_ANTI_KT, _ALL_FINAL, _KEEP_MASSES = -1, 1, 2
_JET_PT_MIN_GEV = 20.0  # smaller jets are never the leading jet of a window event
_PARTICLE_ETA_MAX = 10.0  # SlowJet's particle acceptance: everything
_RESONANCE_DECAY = 5  # doVetoPT's iPos for the separate showers of t -> b W, W -> q q'


def leading_jet_pt(jets: pythia8mc.SlowJet, event: pythia8mc.Event, eta_max: float) -> float:
    """pT [GeV] of the hardest anti-kT jet with |eta| < eta_max of the partons in ``event``; 0
    without one."""
    jets.analyze(event)
    best = 0.0
    for i in range(jets.sizeJet()):
        if abs(jets.p(i).eta()) < eta_max:
            best = max(best, jets.pT(i))
    return best


class ScaleVeto(pythia8mc.UserHooks):
    """The in-evolution veto of ``JetVetoConfig`` as a Pythia ``UserHooks``.

    Per event that Pythia completes it records the leading-jet pT at the veto scale and the
    number of events vetoed so far; ``take(n)`` hands those of the last ``n`` events to the
    event loop. A threshold of 0 vetoes nothing and only records (used by the measurement in
    benchmarks/veto.py).
    """

    def __init__(self, config: JetVetoConfig, *, threshold_gev: float) -> None:
        super().__init__()
        self.config = config
        self.threshold_gev = threshold_gev
        self.n_vetoed = 0
        self.n_passed = 0
        self._jets = pythia8mc.SlowJet(
            _ANTI_KT, config.radius, _JET_PT_MIN_GEV, _PARTICLE_ETA_MAX, _ALL_FINAL, _KEEP_MASSES
        )
        self._pending = math.nan
        self._scale_pt: list[float] = []
        self._vetoed_before: list[int] = []

    def canVetoPT(self) -> bool:
        return True

    def scaleVetoPT(self) -> float:
        return self.config.scale_gev

    def doVetoPT(self, iPos: int, event: pythia8mc.Event) -> bool:
        if iPos == _RESONANCE_DECAY:  # after the main evolution, already decided
            return False
        pt = leading_jet_pt(self._jets, event, self.config.eta_max)
        if pt < self.threshold_gev:
            self.n_vetoed += 1
            return True
        self._pending = pt
        return False

    def onEndEvent(self, status: pythia8mc.PhysicsBase.Status) -> None:
        if status == pythia8mc.PhysicsBase.COMPLETE:
            self.n_passed += 1
            self._scale_pt.append(self._pending)
            self._vetoed_before.append(self.n_vetoed)
        self._pending = math.nan

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Leading-jet pT at the veto scale [GeV] and the number of events vetoed before each,
        # (n,) float64, (n,) int64, for the last ``n`` completed events; forgets them."""
        if len(self._scale_pt) != n:
            raise NaeError(
                f"the veto hook saw {len(self._scale_pt)} completed events, Pythia's batch has "
                f"{n}: the event counts would be wrong; run with --no-veto and report it"
            )
        scale_pt = np.array(self._scale_pt, dtype=np.float64)
        vetoed_before = np.array(self._vetoed_before, dtype=np.int64)
        self._scale_pt.clear()
        self._vetoed_before.clear()
        return scale_pt, vetoed_before

    @property
    def pass_fraction(self) -> float:
        """Fraction of the events reaching the veto that passed it, over the whole run."""
        total = self.n_passed + self.n_vetoed
        return self.n_passed / total if total else 1.0
