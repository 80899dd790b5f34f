"""The particle record and the kinematic formulas, in one place.

``Particles`` holds many events' particles as flat numpy columns with an event index: the
common currency of ``pythia``, ``detector``, ``jets`` and ``events``. ``pseudorapidity`` and
``wrap_phi`` are the only definitions of eta and of the phi wrap in the data code, so jets,
images, isolation and the event format agree to the last bit. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = ["Particles", "concatenate_particles", "merge_particles", "pseudorapidity", "wrap_phi"]

_PT_FLOOR_GEV = 1e-12  # pT of a particle along the beam: eta is then large but finite


ArrayT = TypeVar("ArrayT")  # a numpy array or a torch tensor


def pseudorapidity(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """eta = asinh(pz / pT), elementwise; finite along the beam (pT floored at 1e-12 GeV) and
    exact for massive objects too (it is the angle's, not the rapidity)."""
    return np.arcsinh(pz / np.maximum(np.hypot(px, py), _PT_FLOOR_GEV))


def wrap_phi(phi: ArrayT) -> ArrayT:
    """Angles [rad] into [-pi, pi): differences of azimuths become the short way round (numpy
    arrays, or torch tensors, whose ``%`` is the same floored remainder and exports to ONNX)."""
    return (phi + np.pi) % (2 * np.pi) - np.pi


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
        return pseudorapidity(self.px, self.py, self.pz)

    @property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)

    def select(self, mask: np.ndarray) -> Particles:
        """Rows picked by ``mask`` (booleans or row indices), in the same events."""
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


def concatenate_particles(parts: Sequence[Particles]) -> Particles:
    """Join batches of different events into one ``Particles``, renumbering events
    consecutively."""
    offsets = np.cumsum([0] + [p.n_events for p in parts[:-1]])
    events = [p.event + o for p, o in zip(parts, offsets, strict=True)]
    return _stack(parts, np.concatenate(events), int(sum(p.n_events for p in parts)))


def merge_particles(parts: Sequence[Particles]) -> Particles:
    """Join several ``Particles`` of the SAME events (e.g. tracks and towers) into one, rows
    ordered by event and, within an event, in the order of ``parts``."""
    event = np.concatenate([p.event for p in parts])
    order = np.argsort(event, kind="stable")
    return _stack(parts, event, parts[0].n_events).select(order)


def _stack(parts: Sequence[Particles], event: np.ndarray, n_events: int) -> Particles:
    return Particles(
        event=event,
        px=np.concatenate([p.px for p in parts]),
        py=np.concatenate([p.py for p in parts]),
        pz=np.concatenate([p.pz for p in parts]),
        e=np.concatenate([p.e for p in parts]),
        pid=np.concatenate([p.pid for p in parts]),
        charge=np.concatenate([p.charge for p in parts]),
        n_events=n_events,
    )
