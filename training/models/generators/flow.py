"""A RealNVP normalising flow (Dinh, Sohl-Dickstein, Bengio, arXiv:1605.08803) as a learned
latent prior: the VAE+NF families.

Why our own and not ``zuko`` or ``nflows``: the prior's log-density is part of the exported
anomaly scores (``latent_nll``, ``kl``), so it must go through torch's ONNX exporter, and an
affine coupling is a few plain tensor operations that do; it also keeps the dependencies of the
``train`` extra as they are. Tested for invertibility and against the autograd Jacobian's
log-determinant (tests/training/models/test_generators.py).

Direction: ``forward`` maps base noise eps ~ N(0, I) to a latent z (sampling); ``inverse`` maps
z back to eps with log|det d eps / d z|, which gives log p(z) = log N(eps) + log|det|.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["AffineCoupling", "FlowPrior", "RealNVP"]

_SCALE_LIMIT = 2.0  # |log scale| per layer stays below this (tanh): stable early training


class AffineCoupling(nn.Module):
    """y = mask * z + (1 - mask) * (z * exp(s(mask * z)) + t(mask * z))."""

    def __init__(self, mask: Tensor, hidden: int) -> None:
        super().__init__()
        dim = len(mask)
        self.register_buffer("mask", mask.to(torch.float32))
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, 2 * dim),
        )  # fmt: skip
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity
        nn.init.zeros_(self.net[-1].bias)

    def _shift_scale(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self.net(z * self.mask).chunk(2, dim=1)
        free = 1.0 - self.mask
        return _SCALE_LIMIT * torch.tanh(s / _SCALE_LIMIT) * free, t * free

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:  # -> y, log|det dy/dz| (N,)
        s, t = self._shift_scale(z)
        return z * torch.exp(s) + t, s.sum(dim=1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:  # -> z, log|det dz/dy| (N,)
        s, t = self._shift_scale(y)  # the masked half of y equals z's
        return (y - t) * torch.exp(-s), -s.sum(dim=1)


class RealNVP(nn.Module):
    """``n_layers`` couplings with alternating masks over a ``dim``-dimensional space."""

    def __init__(self, dim: int, *, n_layers: int, hidden: int) -> None:
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling flow needs at least 2 dimensions, got {dim}")
        even = torch.arange(dim) % 2 == 0
        self.layers = nn.ModuleList(
            AffineCoupling(even if i % 2 == 0 else ~even, hidden) for i in range(n_layers)
        )

    def forward(self, eps: Tensor) -> tuple[Tensor, Tensor]:  # eps -> z, log|det dz/deps|
        log_det = torch.zeros_like(eps[:, 0])
        for layer in self.layers:
            eps, step = layer(eps)
            log_det = log_det + step
        return eps, log_det

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # z -> eps, log|det deps/dz|
        log_det = torch.zeros_like(z[:, 0])
        for layer in reversed(self.layers):
            z, step = layer.inverse(z)
            log_det = log_det + step
        return z, log_det


class FlowPrior(nn.Module):
    """p(z) = N(f^-1(z); 0, I) |det d f^-1 / dz| with f a ``RealNVP``."""

    def __init__(self, dim: int, *, n_layers: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.flow = RealNVP(dim, n_layers=n_layers, hidden=hidden)

    def log_prob(self, z: Tensor) -> Tensor:  # (N, d) -> (N,)
        eps, log_det = self.flow.inverse(z)
        return _standard_normal_log_prob(eps) + log_det

    def sample(self, n: int, generator: torch.Generator) -> Tensor:  # -> (n, d)
        eps = torch.randn(n, self.dim, generator=generator)
        return self.flow(eps)[0]


def _standard_normal_log_prob(x: Tensor) -> Tensor:
    return -0.5 * (x.square() + math.log(2 * math.pi)).sum(dim=1)
