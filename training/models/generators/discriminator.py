"""The discriminator of the VAE+D families (Larsen et al., arXiv:1512.09300, "VAE/GAN"):
tells real events from the decoder's reconstructed and generated ones, in the networks'
units (continuous features in normal units, discrete ones one-hot).

Generated discrete features reach it as straight-through Gumbel-softmax samples: one-hot in
the forward pass like real events (soft probabilities would give them away), the softmax's
gradient in the backward pass, so the decoder learns from it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.config import Activation
from training.models.dense import activation_layer

__all__ = ["Discriminator", "straight_through_onehot"]


class Discriminator(nn.Module):
    """(N, n_inputs) -> (N,) logit of "real"."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], *, activation: Activation) -> None:
        super().__init__()
        widths = [n_inputs, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), activation_layer(activation)]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, v: Tensor) -> Tensor:
        return self.net(v).squeeze(1)


def straight_through_onehot(
    logits: Tensor, n_categories: int, generator: torch.Generator
) -> Tensor:
    """(N, d * K) logits -> (N, d * K): a Gumbel-max one-hot sample per discrete feature,
    carrying the gradient of the softmax (straight-through)."""
    grouped = logits.unflatten(1, (-1, n_categories))  # (N, d, K)
    uniform = torch.rand(grouped.shape, generator=generator).clamp(1e-10, 1.0 - 1e-7)
    probabilities = torch.softmax(grouped, dim=-1)
    choice = (grouped - torch.log(-torch.log(uniform))).argmax(dim=-1, keepdim=True)
    hard = torch.zeros_like(grouped).scatter_(-1, choice, 1.0)
    return (hard - probabilities.detach() + probabilities).flatten(1)
