"""The convolutional autoencoder of arXiv:2206.14225 for 40 x 40 jet images, and its 20 x 20
variant.

Encoder: conv 1->8->8 (3 x 3, 'same' padding, PReLU), 2 x 2 max-pool to 20 x 20, conv 8->8->8->1,
flatten, dense 400->100->latent. Decoder, mirrored: dense latent->100->400, 1 x 20 x 20,
conv 1->8->8->8, bilinear x2 upsampling to 40 x 40, conv 8->8->1 and a sigmoid (pixels in
[0, 1]). About 85k parameters with a 3-d latent. The 20 x 20 variant (``pooled``) sees the
image sum-pooled to 20 x 20 (done by the preprocessing) and drops the pool and the upsampling.

Two layout choices make CPU Langevin chains cheaper without changing the function: every
stride-1 transposed convolution of the published decoder is written as the equivalent
``Conv2d`` (same padding, weights learned directly), and weights are in ``channels_last``
memory format, which the oneDNN convolutions of torch's CPU backend run faster on (both
measured in docs/results.md).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from training.config import Activation
from training.models.dense import (
    activation_layer,
    image_input_scale,
    maybe_spectral_norm,
    start_at_mean_pixel,
)

__all__ = ["ConvDecoder", "ConvEncoder"]

CHANNELS = 8  # arXiv:2206.14225, Fig. 2
HIDDEN = 100


def _conv(n_in: int, n_out: int, spectral_norm: bool) -> nn.Module:
    return maybe_spectral_norm(nn.Conv2d(n_in, n_out, 3, padding=1), spectral_norm)


class ConvEncoder(nn.Module):
    """(N, 40, 40) [or (N, 20, 20) when ``pooled``] -> (N, latent_dim); the image enters in
    units of its mean pixel (``dense.image_input_scale``)."""

    def __init__(
        self, latent_dim: int, *, activation: Activation, spectral_norm: bool, pooled: bool
    ) -> None:
        super().__init__()
        side = 20 if pooled else 40
        self.input_scale = image_input_scale(side * side)
        act = functools.partial(activation_layer, activation)
        c = CHANNELS
        self.net = nn.Sequential(
            _conv(1, c, spectral_norm), act(),
            _conv(c, c, spectral_norm), act(),
            *([] if pooled else [nn.MaxPool2d(2)]),
            _conv(c, c, spectral_norm), act(),
            _conv(c, c, spectral_norm), act(),
            _conv(c, 1, spectral_norm), act(),
            nn.Flatten(),
            maybe_spectral_norm(nn.Linear(400, HIDDEN), spectral_norm), act(),
            nn.Linear(HIDDEN, latent_dim),
        )  # fmt: skip
        self.to(memory_format=torch.channels_last)

    def forward(self, u: Tensor) -> Tensor:
        u = (u * self.input_scale).unsqueeze(1)
        return self.net(u.contiguous(memory_format=torch.channels_last))


class ConvDecoder(nn.Module):
    """(N, latent_dim) -> (N, 40, 40) [or (N, 20, 20) when ``pooled``], pixels in (0, 1)."""

    def __init__(
        self, latent_dim: int, *, activation: Activation, spectral_norm: bool, pooled: bool
    ) -> None:
        super().__init__()
        act = functools.partial(activation_layer, activation)
        c = CHANNELS
        self.dense = nn.Sequential(
            maybe_spectral_norm(nn.Linear(latent_dim, HIDDEN), spectral_norm), act(),
            maybe_spectral_norm(nn.Linear(HIDDEN, 400), spectral_norm), act(),
        )  # fmt: skip
        upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.convs = nn.Sequential(
            _conv(1, c, spectral_norm), act(),
            _conv(c, c, spectral_norm), act(),
            _conv(c, c, spectral_norm), act(),
            *([] if pooled else [upsample]),
            _conv(c, c, spectral_norm), act(),
            nn.Conv2d(c, 1, 3, padding=1),
            nn.Sigmoid(),
        )  # fmt: skip
        side = 20 if pooled else 40
        start_at_mean_pixel(self.convs[-2], side * side)
        self.to(memory_format=torch.channels_last)

    def forward(self, z: Tensor) -> Tensor:
        h = self.dense(z).view(-1, 1, 20, 20).contiguous(memory_format=torch.channels_last)
        return self.convs(h).squeeze(1)
