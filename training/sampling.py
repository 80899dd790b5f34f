"""Negative samples for the NAE: Langevin chains in latent and input space, a replay buffer,
Metropolis-Hastings, and the three ways of starting chains (on-manifold, PCD, CD).

A Langevin step moves a state x (N, ...) downhill in energy with noise:

    y = clamp(x - (step_size / T) clip(grad E(x)) + sigma_t xi),   xi ~ N(0, 1),

with ``clip`` limiting each sample's gradient L2 norm, ``sigma_t = noise_std / (1 + t)`` under
annealing, and ``clamp`` keeping y in the input's domain (or projecting a spherical latent back
onto the sphere, or a unit-sum image onto the simplex: the Euclidean projection of projected
Langevin). With ``metropolis`` the step is accepted with the Metropolis-Hastings
probability of exactly this Gaussian proposal (MALA), so the chain targets exp(-E/T) for any
step size and noise (exactly away from the bounds; clamping and projection make it approximate
there). Published NAE settings use noise far below sqrt(2 step_size), which is a noisy descent
rather than a sampler: MH then rejects nearly every step, and the logged acceptance shows it.

Cost: the network's parameters are frozen (``requires_grad_(False)``, eval mode) while a chain
runs and ``torch.autograd.grad`` differentiates with respect to the chain state only; chains run
``chunk_size`` samples at a time (cheaper per sample at large batches; docs/results.md). Every
entry point takes a ``torch.Generator``: the same generator state gives the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from training.config import LangevinConfig, SamplerConfig
from training.errors import NaeError
from training.models.autoencoder import Autoencoder, project_to_sphere

__all__ = [
    "ChainResult",
    "NegativeSampler",
    "NegativeSamples",
    "ReplayBuffer",
    "frozen",
    "langevin_chain",
    "project_to_simplex",
]

Energy = Callable[[Tensor], Tensor]  # (N, ...) -> (N,)


class ChainResult(NamedTuple):
    """End states (N, ...), their energies (N,), and the mean MH acceptance (nan without MH)."""

    samples: Tensor
    energies: Tensor
    acceptance: float


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with every parameter's ``requires_grad`` off, restored after.

    Eval mode also stops spectral normalisation's power iteration, so a chain neither pays for
    it at every energy evaluation nor changes the network it samples from."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def langevin_chain(
    energy: Energy,
    x0: Tensor,
    config: LangevinConfig,
    *,
    generator: torch.Generator,
    low: Tensor | None = None,
    high: Tensor | None = None,
    sphere: bool = False,
    total: float | None = None,
    slot_floor: Tensor | None = None,
    chunk_size: int = 256,
) -> ChainResult:
    """Run ``config.steps`` Langevin steps from ``x0`` (N, ...) on ``energy``.

    ``low``/``high`` (broadcastable to one sample) clamp every state; ``sphere`` projects each
    state onto the unit sphere instead (spherical latents); ``total`` onto the non-negative
    states summing to ``total`` (unit-sum images; no entry can then exceed ``total``, so
    ``high`` must not be below it). ``slot_floor`` (19,) empties every event slot whose scaled
    pT falls below its row's floor (``slot_floors``).
    ``energy`` should come from a ``frozen`` model. Samples are independent, so they run
    ``chunk_size`` at a time.
    """
    if config.metropolis and config.noise_std <= 0:
        raise NaeError("Metropolis-Hastings needs noise: set noise_std > 0 or metropolis = false")
    results = [
        _chain(energy, chunk, config, generator, _Domain(low, high, sphere, total, slot_floor))
        for chunk in x0.detach().split(chunk_size)
    ]
    accepted = sum(r[2] for r in results)
    acceptance = (
        accepted / (config.steps * len(x0)) if config.metropolis and config.steps else math.nan
    )
    return ChainResult(
        torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results]), acceptance
    )


def _chain(
    energy: Energy,
    x: Tensor,
    config: LangevinConfig,
    generator: torch.Generator,
    domain: _Domain,
) -> tuple[Tensor, Tensor, int]:
    drift = config.step_size / config.temperature
    x = domain.constrain(x.clone())
    e_x, g_x = _energy_and_gradient(energy, x, config.grad_clip)
    accepted = 0
    for t in range(config.steps):
        sigma = config.noise_std / (1 + t) if config.noise_anneal else config.noise_std
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        y = domain.constrain(x - drift * g_x + sigma * noise)
        e_y, g_y = _energy_and_gradient(energy, y, config.grad_clip)
        if not config.metropolis:
            x, e_x, g_x = y, e_y, g_y
            continue
        # log q(x | y) - log q(y | x) for the proposal N(v - drift * g(v), sigma^2)
        forward = (y - x + drift * g_x).square().flatten(1).sum(dim=1)
        backward = (x - y + drift * g_y).square().flatten(1).sum(dim=1)
        log_alpha = -(e_y - e_x) / config.temperature + (forward - backward) / (2 * sigma**2)
        u = torch.rand(len(x), generator=generator, dtype=x.dtype)
        accept = torch.log(u) < log_alpha  # (N,)
        accepted += int(accept.sum())
        keep = accept.view(-1, *([1] * (x.dim() - 1)))
        x, e_x, g_x = (
            torch.where(keep, y, x),
            torch.where(accept, e_y, e_x),
            torch.where(keep, g_y, g_x),
        )
    return x, e_x, accepted


def _energy_and_gradient(energy: Energy, x: Tensor, grad_clip: float) -> tuple[Tensor, Tensor]:
    """E(x) (N,) and dE/dx (N, ...), each sample's gradient clipped to L2 norm ``grad_clip``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        e = energy(x)
        (g,) = torch.autograd.grad(e.sum(), x)
    if grad_clip > 0:
        norm = g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
        g = g * torch.clamp(grad_clip / torch.clamp(norm, min=1e-30), max=1.0)
    return e.detach(), g


class _Domain(NamedTuple):
    """Where a chain's states may lie: a box (``low``/``high``), the unit sphere, or the
    simplex of non-negative states summing to ``total``; in the box, scaled events can also be
    held to slots that are either empty or filled above their row's ``slot_floor``."""

    low: Tensor | None = None
    high: Tensor | None = None
    sphere: bool = False
    total: float | None = None
    slot_floor: Tensor | None = None

    def constrain(self, x: Tensor) -> Tensor:
        if self.sphere:
            return project_to_sphere(x)
        if self.total is not None:
            return project_to_simplex(x, self.total)
        if self.low is not None:
            x = torch.maximum(x, self.low)
        if self.high is not None:
            x = torch.minimum(x, self.high)
        if self.slot_floor is not None:
            x = x * (x[..., :1] >= self.slot_floor.unsqueeze(-1)).to(x.dtype)
        return x


def slot_floors(u: Tensor) -> Tensor:
    """Per row of scaled events ``u`` (N, 19, 3), the smallest pT of a filled slot (19,); inf
    for a row never filled.

    Every reconstructed object passes a pT threshold, so the data's slots are empty (exactly 0)
    or filled above a floor. A chain's noise gives every empty slot a soft object with random
    angles that no event has; the NAE then learns to give those high energy, which needs nothing
    from the data's own density (the PCD negatives of session 8 sat at EMD ~10 from the data).
    Snapping such slots back to empty keeps negatives on the data's object structure.
    """
    pt = u[..., 0]
    return torch.where(pt > 0, pt, torch.full_like(pt, math.inf)).amin(dim=0)


def project_to_simplex(x: Tensor, total: float) -> Tensor:
    """The closest point (Euclidean) to each sample of ``x`` (N, ...) among the non-negative
    ones whose entries sum to ``total``: ``max(x - theta, 0)`` with the per-sample threshold
    theta of the sort-based algorithm (Held, Wolfe, Crowder 1974; Duchi et al. 2008)."""
    flat = x.flatten(1)
    ranked = flat.sort(dim=1, descending=True).values
    excess = ranked.cumsum(dim=1) - total
    rank = torch.arange(1, flat.shape[1] + 1, dtype=flat.dtype)
    n_positive = (ranked - excess / rank > 0).sum(dim=1, keepdim=True)  # >= 1: a prefix
    theta = excess.gather(1, n_positive - 1) / n_positive
    return (flat - theta).clamp_min(0).view_as(x)


class ReplayBuffer:
    """The last ``capacity`` chain end points, from which new chains restart (PCD-style
    persistence: chains effectively run for many iterations at the cost of a few steps each)."""

    def __init__(self, capacity: int, sample_shape: tuple[int, ...]) -> None:
        self.storage = torch.zeros(capacity, *sample_shape)
        self.size = 0
        self.position = 0

    def __len__(self) -> int:
        return self.size

    def push(self, samples: Tensor) -> None:
        """Append ``samples`` (N, ...), overwriting the oldest once full."""
        capacity = len(self.storage)
        samples = samples.detach()[-capacity:]
        index = (self.position + torch.arange(len(samples))) % capacity
        self.storage[index] = samples
        self.position = int((self.position + len(samples)) % capacity)
        self.size = min(capacity, self.size + len(samples))

    def draw(
        self, n: int, *, ratio: float, fresh: Callable[[int], Tensor], generator: torch.Generator
    ) -> Tensor:
        """n chain starts: each from the buffer with probability ``ratio`` (uniformly among
        the stored points), else ``fresh``; all fresh while the buffer is empty."""
        if self.size == 0:
            return fresh(n)
        replay = torch.rand(n, generator=generator) < ratio  # (n,)
        n_replay = int(replay.sum())
        starts = torch.empty(n, *self.storage.shape[1:])
        starts[replay] = self.storage[torch.randint(self.size, (n_replay,), generator=generator)]
        starts[~replay] = fresh(n - n_replay)
        return starts

    def state_dict(self) -> dict[str, Any]:
        return {"storage": self.storage[: self.size].clone(), "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = len(state["storage"])
        self.storage[: self.size] = state["storage"]
        self.position = int(state["position"])


class NegativeSamples(NamedTuple):
    """One set of negatives: ``samples`` (M, *u_shape) and their ``energies`` (M,); the
    energies of the latent chain's decoded end points (M,) (on-manifold; else empty); MH
    acceptance of the latent and input chains (nan where not run with MH)."""

    samples: Tensor
    energies: Tensor
    latent_energies: Tensor
    latent_acceptance: float
    input_acceptance: float


class NegativeSampler:
    """Draws negatives from an ``Autoencoder`` as ``SamplerConfig.mode`` says, keeping the
    replay buffer (latent points for on-manifold, input points for PCD) between calls."""

    def __init__(
        self, config: SamplerConfig, model: Autoencoder, *, slot_floor: Tensor | None = None
    ) -> None:
        self.config = config
        self.slot_floor = slot_floor
        self.low = torch.clamp(model.domain_low, min=config.box[0])
        self.high = torch.clamp(model.domain_high, max=config.box[1])
        shape = (
            (model.latent_dim,) if config.mode == "on_manifold" else tuple(model.domain_low.shape)
        )
        self.buffer = ReplayBuffer(config.buffer_size, shape)
        total = config.input_total
        if total is not None and not bool((self.low == 0).all() and (self.high >= total).all()):
            raise NaeError(
                f"sampler.input_total = {total} projects input chains onto non-negative inputs "
                "with that sum (unit-sum images: 1.0); this model's inputs have other bounds "
                "(lower bounds must be 0, upper bounds at least the total): unset it"
            )
        finite = bool(torch.isfinite(self.low).all() and torch.isfinite(self.high).all())
        if config.mode == "pcd" and config.initial == "uniform" and not finite:
            raise NaeError(
                "sampler.initial = 'uniform' needs finite bounds: set sampler.box, e.g. "
                "[-3.0, 3.0] for standardised features"
            )

    def sample(
        self,
        model: Autoencoder,
        positives: Tensor,
        *,
        generator: torch.Generator,
        n: int = 0,
        push: bool = True,
    ) -> NegativeSamples:
        """``n`` negatives (0: ``config.n_negatives``); ``positives`` (N, *u_shape) start CD
        chains. ``push=False`` leaves the replay buffer as it was (samples drawn for
        monitoring, not for training)."""
        config, n = self.config, n or self.config.n_negatives
        with frozen(model):
            latent_energies, latent_acceptance = torch.empty(0), math.nan
            if config.mode == "on_manifold":
                z0 = self.buffer.draw(
                    n,
                    ratio=config.replay_ratio,
                    fresh=lambda k: self._fresh_latent(model, k, generator),
                    generator=generator,
                )
                latent = langevin_chain(
                    lambda z: model.energy(model.decode(z)),
                    z0,
                    config.latent,
                    generator=generator,
                    sphere=model.spherical,
                    chunk_size=config.chunk_size,
                )
                if push:
                    self.buffer.push(latent.samples)
                latent_energies, latent_acceptance = latent.energies, latent.acceptance
                with torch.no_grad():
                    x0 = model.decode(latent.samples)
            elif config.mode == "pcd":
                x0 = self.buffer.draw(
                    n,
                    ratio=config.replay_ratio,
                    fresh=lambda k: self._fresh_input(k, generator),
                    generator=generator,
                )
            else:
                index = torch.randint(len(positives), (n,), generator=generator)
                x0 = positives[index]
            chain = langevin_chain(
                model.energy,
                x0,
                config.input,
                generator=generator,
                low=self.low,
                high=self.high,
                total=config.input_total,
                slot_floor=self.slot_floor,
                chunk_size=config.chunk_size,
            )
            if config.mode == "pcd" and push:
                self.buffer.push(chain.samples)
        return NegativeSamples(
            chain.samples, chain.energies, latent_energies, latent_acceptance, chain.acceptance
        )

    def _fresh_latent(self, model: Autoencoder, n: int, generator: torch.Generator) -> Tensor:
        if self.config.initial == "uniform":
            z = 2 * torch.rand(n, model.latent_dim, generator=generator) - 1
        else:
            z = torch.randn(n, model.latent_dim, generator=generator)
        return project_to_sphere(z) if model.spherical else z

    def _fresh_input(self, n: int, generator: torch.Generator) -> Tensor:
        shape = (n, *self.low.shape)
        if self.config.initial == "uniform":
            return self.low + (self.high - self.low) * torch.rand(shape, generator=generator)
        return _Domain(self.low, self.high).constrain(torch.randn(shape, generator=generator))
