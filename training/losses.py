"""Reconstruction energies and the NAE losses. Pure tensor functions, torch only.

The energy E(x) of an autoencoder is its reconstruction error; the NAE reads it as the energy of
a Boltzmann density exp(-E/T)/Omega (Yoon et al. arXiv:2105.05735). The models' ``forward``
returns this same energy as the anomaly score, so the number a trigger thresholds is the number
training pushed down on data. (This module imports only torch, so the models may use it
although it is listed after them in the module map: one home for each formula.)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "kl_divergence",
    "logcosh_nae_loss",
    "masked_reconstruction_energy",
    "nae_loss",
    "reconstruction_energy",
    "relative_gamma",
    "weight_norm",
]


def reconstruction_energy(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean squared error per sample over all non-batch axes: (N, ...) -> (N,).

    A mean rather than a sum keeps energies of 40 x 40 images and of 8 features on comparable
    scales (arXiv:2206.14225 divides by the input dimension too)."""
    return (x - x_hat).square().flatten(1).mean(dim=1)


def masked_reconstruction_energy(x: Tensor, x_hat: Tensor, mask: Tensor) -> Tensor:
    """Squared error per sample where ``mask`` is 1, divided by the number of entries
    (masked ones included, so the scale is that of ``reconstruction_energy``): (N, ...) -> (N,).

    For 19 x 3 events, ``mask`` drops the eta and phi of empty (zero-padded) slots: those zeros
    mean nothing, while the pT of an empty slot (0, "no object here") is kept, so the energy
    still sees how many objects an event has."""
    return ((x - x_hat).square() * mask).flatten(1).mean(dim=1)


def kl_divergence(mu: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) per sample, summed over the latent: (N, d) -> (N,)."""
    return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(dim=1)


def nae_loss(e_pos: Tensor, e_neg: Tensor, *, gamma: float | Tensor) -> Tensor:
    """E+ - E- + gamma mean(E-^2) (arXiv:2206.14225, eq. 7 and its gamma regulariser).

    e_pos: (N,) energies of data; e_neg: (M,) energies of negative samples, detached from the
    chains that made them (only the network's dependence on its weights is differentiated).
    The gamma term keeps E- from growing without bound once negatives leave the data: alone,
    -E- + gamma E-^2 is lowest at E- = 1 / (2 gamma)."""
    return e_pos.mean() - e_neg.mean() + gamma * e_neg.square().mean()


def relative_gamma(e_pos: Tensor, ratio: float) -> Tensor:
    """The gamma that puts the minimum of -E- + gamma E-^2 at E- = ratio x mean(E+):
    1 / (2 ratio E+), with E+ detached so that it only sets the scale."""
    return 0.5 / (ratio * e_pos.detach().mean())


def logcosh_nae_loss(e_pos: Tensor, e_neg: Tensor, *, alpha: float) -> Tensor:
    """log cosh(E+ - E-) + alpha E+ (the CMS semi-visible-jet NAE study).

    log cosh is quadratic near 0 and linear far from it, so one bad batch of negatives cannot
    dominate the gradient; alpha E+ keeps data reconstructed while E+ and E- balance."""
    difference = e_pos.mean() - e_neg.mean()
    # log cosh(d) = |d| + log1p(exp(-2|d|)) - log 2: finite for any d (cosh overflows at ~89)
    log_cosh = difference.abs() + torch.log1p(torch.exp(-2.0 * difference.abs())) - _LOG_2
    return log_cosh + alpha * e_pos.mean()


def weight_norm(module: torch.nn.Module) -> Tensor:
    """Sum of squared trainable parameters: the L2 penalty of arXiv:2206.14225 and a logged
    health number (a weight norm that keeps growing precedes a diverging NAE)."""
    return sum(p.square().sum() for p in module.parameters() if p.requires_grad)


_LOG_2 = float(torch.log(torch.tensor(2.0)))
