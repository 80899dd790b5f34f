"""The autoencoder shared by the AE and NAE families: preprocessing -> encoder -> (sphere) ->
decoder, scored by its reconstruction energy.

AE and NAE are the same network trained differently (the NAE adds negative samples after AE
pre-training), so they share this class; the encoder and decoder come from ``dense`` or ``conv``.
Besides ``forward(x)`` (raw input -> score, what ONNX exports), the sampler uses the pieces:
``preprocess``, ``encode``, ``decode`` and ``energy`` on preprocessed inputs ``u``, and the
``domain_low``/``domain_high`` bounds of ``u`` (pixels in [0, 1], event pT >= 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.losses import masked_reconstruction_energy, reconstruction_energy
from training.models.preprocessing import event_mask

__all__ = ["Autoencoder", "project_to_sphere", "reconstruction_energy_of"]


def project_to_sphere(z: Tensor) -> Tensor:
    """z / |z| per sample: (N, d) -> (N, d) on the unit sphere S^(d-1)."""
    return z / torch.clamp(z.norm(dim=1, keepdim=True), min=1e-12)


def reconstruction_energy_of(u: Tensor, u_hat: Tensor, *, masked: bool) -> Tensor:
    """The energy of a reconstruction, (N, ...) -> (N,): masked for events (empty slots' eta,
    phi do not count, ``losses.masked_reconstruction_energy``)."""
    if masked:
        return masked_reconstruction_energy(u, u_hat, event_mask(u))
    return reconstruction_energy(u, u_hat)


class Autoencoder(nn.Module):
    """AE/NAE: ``forward(x)`` takes raw inputs (N, *input_shape) float32 and returns the
    reconstruction energy (N,), higher = more anomalous."""

    default_score = "reconstruction"

    def __init__(
        self,
        preprocessing: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        input_shape: Sequence[int],
        latent_dim: int,
        spherical: bool,
        masked: bool,
        domain: tuple[Tensor, Tensor],
    ) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.encoder = encoder
        self.decoder = decoder
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.spherical = spherical
        self.masked = masked
        self.register_buffer("domain_low", domain[0])
        self.register_buffer("domain_high", domain[1])

    def preprocess(self, x: Tensor) -> Tensor:
        return self.preprocessing(x)

    def encode(self, u: Tensor) -> Tensor:  # (N, *u_shape) -> (N, latent_dim)
        z = self.encoder(u)
        return project_to_sphere(z) if self.spherical else z

    def decode(self, z: Tensor) -> Tensor:  # (N, latent_dim) -> (N, *u_shape)
        return self.decoder(z)

    def energy(self, u: Tensor) -> Tensor:  # (N, *u_shape) -> (N,)
        return reconstruction_energy_of(u, self.decode(self.encode(u)), masked=self.masked)

    def forward(self, x: Tensor) -> Tensor:  # raw (N, *input_shape) -> score (N,)
        return self.energy(self.preprocess(x))

    def scores(self, x: Tensor) -> dict[str, Tensor]:
        return {self.default_score: self(x)}
