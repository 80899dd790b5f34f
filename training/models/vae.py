"""Variational autoencoder with the three scores of the CMS AXOL1TL trigger study.

- ``reconstruction``: the energy of the reconstruction from the latent mean;
- ``kl``: KL(q(z|x) || N(0, 1)), the VAE's own measure of how unusual the encoding is;
- ``mu2``: sum of mu^2, the KL without its variance terms, which AXOL1TL computes in its L1
  firmware because it needs the encoder only.

``forward`` returns the one named by ``ModelConfig.vae_score``; all are deterministic (the
latent mean, no sampling), so they export. Training samples z = mu + sigma eps with a caller's
generator (``loss_terms``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.config import VaeScore
from training.losses import kl_divergence
from training.models.autoencoder import reconstruction_energy_of

__all__ = ["VariationalAutoencoder"]

_LOG_VAR_LIMIT = 30.0  # keeps exp(log_var) finite early in training


class VariationalAutoencoder(nn.Module):
    """``forward(x)``: raw (N, *input_shape) -> the ``score`` of ``scores`` (N,)."""

    def __init__(
        self,
        preprocessing: nn.Module,
        encoder: nn.Module,
        decoder: nn.Module,
        *,
        input_shape: Sequence[int],
        latent_dim: int,
        masked: bool,
        score: VaeScore,
    ) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        self.encoder = encoder  # outputs 2 * latent_dim: mu, log sigma^2
        self.decoder = decoder
        self.input_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.masked = masked
        self.default_score = score

    def preprocess(self, x: Tensor) -> Tensor:
        return self.preprocessing(x)

    def encode_distribution(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """mu, log sigma^2: each (N, latent_dim)."""
        mu, log_var = self.encoder(u).chunk(2, dim=1)
        return mu, torch.clamp(log_var, -_LOG_VAR_LIMIT, _LOG_VAR_LIMIT)

    def energy(self, u: Tensor) -> Tensor:
        """Reconstruction energy from the latent mean, (N,)."""
        mu, _ = self.encode_distribution(u)
        return reconstruction_energy_of(u, self.decoder(mu), masked=self.masked)

    def loss_terms(self, u: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Reconstruction energy of a sampled z and the KL, each (N,): the ELBO's two terms."""
        mu, log_var = self.encode_distribution(u)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * log_var) * eps
        energy = reconstruction_energy_of(u, self.decoder(z), masked=self.masked)
        return energy, kl_divergence(mu, log_var)

    def scores(self, x: Tensor) -> dict[str, Tensor]:
        u = self.preprocess(x)
        mu, log_var = self.encode_distribution(u)
        return {
            "reconstruction": reconstruction_energy_of(u, self.decoder(mu), masked=self.masked),
            "kl": kl_divergence(mu, log_var),
            "mu2": mu.square().sum(dim=1),
        }

    def forward(self, x: Tensor) -> Tensor:
        return self.scores(x)[self.default_score]
