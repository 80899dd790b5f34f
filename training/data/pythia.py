"""Pythia 8 process cards and the event loop.

The loop uses Pythia's batch interface (``Pythia.nextBatch``), which returns whole event records
as awkward arrays, so no Python code runs per particle. Downstream code works on ``Particles``:
flat numpy columns with an event index, the common currency of ``detector``, ``jets`` and
``events``.

Common settings follow the top-tagging landscape (arXiv:1902.09914) and the ADC2021 challenge
(arXiv:2107.02157): 13 TeV pp, the Monash 2013 tune (Pythia's default), MPI, showers and
hadronisation on, and particles with c*tau > 10 mm left stable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.errors import NaeError, require

__all__ = [
    "COMMON_SETTINGS",
    "Particles",
    "PythiaBatch",
    "PythiaRun",
    "concatenate_particles",
    "final_particles",
    "pythia_version",
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
class Particles:
    """Particles of many events as flat columns; ``event`` says which event each row is in.

    Momenta and energies are in GeV. ``pid`` is the PDG id; ``charge`` in units of e.
    """

    event: np.ndarray  # (M,) int64, 0 .. n_events-1, non-decreasing
    px: np.ndarray  # (M,) float64
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    pid: np.ndarray  # (M,) int32
    charge: np.ndarray  # (M,) float32
    n_events: int

    @property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @property
    def eta(self) -> np.ndarray:
        p = np.sqrt(self.px**2 + self.py**2 + self.pz**2)
        return np.arctanh(np.clip(self.pz / np.maximum(p, 1e-12), -1 + 1e-12, 1 - 1e-12))

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)

    def select(self, mask: np.ndarray) -> Particles:
        """Rows where ``mask`` is true, in the same events."""
        return Particles(
            event=self.event[mask],
            px=self.px[mask],
            py=self.py[mask],
            pz=self.pz[mask],
            e=self.e[mask],
            pid=self.pid[mask],
            charge=self.charge[mask],
            n_events=self.n_events,
        )

    def counts(self) -> np.ndarray:
        """Number of rows per event, shape (n_events,)."""
        return np.bincount(self.event, minlength=self.n_events)


@dataclass(frozen=True)
class PythiaBatch:
    """One batch of generated events: the full record (for truth) and the visible final state."""

    record: Any  # awkward Array; record.prt: n_events * var * {id, status, mother1, ..., p}
    final: Particles  # visible final-state particles (no neutrinos, no dark-sector particles)


@dataclass
class PythiaRun:
    """A configured, initialised Pythia instance that yields ``PythiaBatch`` objects.

    ``settings`` are process-specific lines added after ``COMMON_SETTINGS``. The seed fully
    determines the output: the same seed and settings give the same events.
    """

    settings: Sequence[str]
    seed: int
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
        if not self._pythia.init():
            raise NaeError(f"Pythia failed to initialise with settings {list(self.settings)}")

    def _read(self, line: str) -> None:
        if not self._pythia.readString(line):
            raise NaeError(f"Pythia rejected the setting {line!r}")

    def batches(self, batch_size: int = 100) -> Iterator[PythiaBatch]:
        """Generate events forever, ``batch_size`` at a time; the caller decides when to stop."""
        while True:
            record = self._pythia.nextBatch(batch_size)
            yield PythiaBatch(record=record, final=self._final_state(record))

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
        """Pythia's estimate of the generated cross section so far (mb converted to pb)."""
        return float(self._pythia.infoPython().sigmaGen()) * 1e9

    @property
    def n_tried(self) -> int:
        return int(self._pythia.infoPython().nTried())


def final_particles(run: PythiaRun, n_events: int, batch_size: int = 100) -> Particles:
    """Convenience for tests and notebooks: the visible final state of ``n_events`` events."""
    parts = []
    for batch in run.batches(min(batch_size, n_events)):
        parts.append(batch.final)
        if sum(p.n_events for p in parts) >= n_events:
            break
    return concatenate_particles(parts)


def concatenate_particles(parts: Sequence[Particles]) -> Particles:
    """Join batches into one ``Particles``, renumbering events consecutively."""
    offsets = np.cumsum([0] + [p.n_events for p in parts[:-1]])
    return Particles(
        event=np.concatenate([p.event + o for p, o in zip(parts, offsets, strict=True)]),
        px=np.concatenate([p.px for p in parts]),
        py=np.concatenate([p.py for p in parts]),
        pz=np.concatenate([p.pz for p in parts]),
        e=np.concatenate([p.e for p in parts]),
        pid=np.concatenate([p.pid for p in parts]),
        charge=np.concatenate([p.charge for p in parts]),
        n_events=int(sum(p.n_events for p in parts)),
    )


def pythia_version() -> str:
    """The installed pythia8mc version, for provenance attributes."""
    from importlib.metadata import version

    return version("pythia8mc")
