"""Fully connected encoders and decoders of any widths: the CMS semi-visible-jet NAE's
8-10-10-6-10-10-8 on features, 57-input networks on events, 1600-256-64-3 on images.

The decoder mirrors the encoder. Activations follow every layer but the last; spectral
normalisation, where asked for, wraps every layer but the last (as arXiv:2206.14225's code
does), which bounds the networks' Lipschitz constant and with it how fast an energy can change
along a Langevin chain.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from training.config import Activation

__all__ = [
    "DenseDecoder",
    "DenseEncoder",
    "activation_layer",
    "image_input_scale",
    "maybe_spectral_norm",
    "start_at_mean_pixel",
]


def activation_layer(name: Activation) -> nn.Module:
    """A fresh activation module (PReLU has its own slope parameter per layer)."""
    return {
        "prelu": nn.PReLU,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "silu": nn.SiLU,
    }[name]()


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(layer) if enabled else layer


def image_input_scale(n_pixels: int) -> float:
    """The factor an image encoder multiplies its input by: n_pixels, so that a unit-sum image
    arrives in units of its mean pixel (about 1) rather than of 1 / n_pixels.

    Without it the encoder's first layers see values of 1e-4 to 1e-2, their output is mostly
    their biases, and the latent point (normalised onto the sphere) hardly depends on the image:
    on smoothed QCD images the AE then stayed at the mean image for 10 epochs (validation
    loss 8.3e-6, that of the mean image), and reached 2.3e-6 with the scale, near a 3-component
    PCA's 2.0e-6 (docs/results.md, "The image AE's inverted AUC"). Only the encoder's input is
    scaled: the energy and the decoder's [0, 1] output keep the images' units.
    """
    return float(n_pixels)


def start_at_mean_pixel(layer: nn.Module, n_pixels: int) -> None:
    """Set the bias of the layer before a sigmoid image output so that every pixel starts at
    1 / n_pixels, the mean pixel of a unit-sum image.

    From PyTorch's default bias the sigmoid starts near 0.5 on every pixel, 800 times the mean;
    the first steps then push all pixels towards 0 so hard that the sigmoid saturates and the
    decoder stays an empty image: trained so, the image AE of 10 epochs on 100k QCD jets had the
    loss of an all-zero output and a top AUC of 0.23, the AUC of the images' summed squares
    (docs/results.md, "The image AE's inverted AUC").
    """
    with torch.no_grad():
        layer.bias.fill_(-math.log(n_pixels - 1.0))  # logit(1 / n_pixels)


def _mlp(widths: Sequence[int], *, activation: Activation, spectral_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        last = i == len(widths) - 2
        layers.append(maybe_spectral_norm(nn.Linear(n_in, n_out), spectral_norm and not last))
        if not last:
            layers.append(activation_layer(activation))
    return layers


class DenseEncoder(nn.Module):
    """(N, *input_shape) -> (N, latent_dim): times ``input_scale`` (see ``image_input_scale``),
    flatten, then ``hidden`` widths."""

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden: Sequence[int],
        latent_dim: int,
        *,
        activation: Activation,
        spectral_norm: bool,
        input_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.input_scale = input_scale
        widths = [math.prod(input_shape), *hidden, latent_dim]
        self.net = nn.Sequential(
            nn.Flatten(), *_mlp(widths, activation=activation, spectral_norm=spectral_norm)
        )

    def forward(self, u: Tensor) -> Tensor:
        return self.net(u * self.input_scale if self.input_scale != 1.0 else u)


class DenseDecoder(nn.Module):
    """(N, latent_dim) -> (N, *output_shape): the encoder's widths reversed; a sigmoid output
    when ``sigmoid`` (images, whose pixels live in [0, 1])."""

    def __init__(
        self,
        output_shape: Sequence[int],
        hidden: Sequence[int],
        latent_dim: int,
        *,
        activation: Activation,
        spectral_norm: bool,
        sigmoid: bool,
    ) -> None:
        super().__init__()
        widths = [latent_dim, *reversed(hidden), math.prod(output_shape)]
        layers = _mlp(widths, activation=activation, spectral_norm=spectral_norm)
        if sigmoid:
            start_at_mean_pixel(layers[-1], math.prod(output_shape))
        self.net = nn.Sequential(*layers, *([nn.Sigmoid()] if sigmoid else []))
        self.output_shape = tuple(output_shape)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).unflatten(1, self.output_shape)
