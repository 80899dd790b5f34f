"""``TableVAE``: the VAE family's network on feature tables, as generator and as scorer.

Encoder: (continuous features in normal units, discrete ones one-hot) -> mu, log sigma^2 of a
diagonal Gaussian q(z|x). Decoder: z (and, conditional, the one-hot discrete features) -> a
Gaussian (mean, log sigma) per continuous feature and, unconditional, one categorical over
the joint combinations of the discrete ones (``codec``), so a generated event is a draw from
the decoder's distribution, not its mean (a VAE's mean is blurred; its draws have the data's
spread). The prior p(z) is a part: the
standard normal here (``vae``), a RealNVP flow (``flow.FlowPrior``) or a Gaussian copula
(``copula.GaussianCopulaPrior``).

Loss: the negative ELBO with a beta-weighted KL, nll + beta KL. The KL is analytic for the
normal prior and the one-sample estimate log q(z|x) - log p(z) for the learned ones.

Scores, all deterministic (z = mu), so they export: ``reconstruction`` (the decoder's
negative log-likelihood of the event), ``kl`` (analytic for the normal prior; for learned
priors log q(mu|x) - log p(mu)), ``mu2`` (|mu|^2, the AXOL1TL trigger's), ``latent_nll``
(-log p(mu): how far out the event's code lies under the prior) and, with a discriminator,
``discriminator`` (-logit D(x): how fake the discriminator finds a real event).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from training.config import Activation, GeneratorScore
from training.models.dense import DenseDecoder, DenseEncoder
from training.models.generators.codec import FeatureCodec
from training.models.generators.discriminator import Discriminator, straight_through_onehot

__all__ = ["Decoded", "GaussianPrior", "TableVAE"]

_LOG_VAR_LIMITS = (-12.0, 8.0)
_LOG_SIGMA_LIMITS = (-5.0, 2.0)  # decoder sigma in normal units: 0.007 .. 7.4
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class GaussianPrior(nn.Module):
    """p(z) = N(0, I): the plain VAE's prior."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def log_prob(self, z: Tensor) -> Tensor:  # (N, d) -> (N,)
        return -(0.5 * z.square() + _HALF_LOG_2PI).sum(dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, self.dim, generator=generator)


class Decoded(NamedTuple):
    """The decoder's distribution: per continuous feature a Gaussian (N, c) each; logits of
    the discrete features' joint combination (N, K^d), or None when they are the condition."""

    mean: Tensor
    log_sigma: Tensor
    logits: Tensor | None


class TableVAE(nn.Module):
    """``forward(x)``: raw (N, k) events -> the ``default_score`` (N,), higher = more anomalous."""

    def __init__(
        self,
        codec: FeatureCodec,
        prior: nn.Module,
        *,
        latent_dim: int,
        hidden: Sequence[int],
        activation: Activation,
        conditional: bool,
        discriminator_hidden: Sequence[int] | None,
        score: GeneratorScore,
    ) -> None:
        super().__init__()
        self.codec = codec
        self.prior = prior
        self.latent_dim = latent_dim
        self.conditional = conditional
        c, h = codec.n_continuous, codec.onehot_size
        options = {"activation": activation, "spectral_norm": False}
        self.encoder = DenseEncoder((c + h,), hidden, 2 * latent_dim, **options)
        n_out = 2 * c + (0 if conditional else codec.n_combinations)
        n_condition = h if conditional else 0
        self.decoder = DenseDecoder(
            (n_out,), hidden, latent_dim + n_condition, sigmoid=False, **options
        )
        self.discriminator = (
            Discriminator(c + h, discriminator_hidden, activation=activation)
            if discriminator_hidden is not None
            else None
        )
        self.default_score = score
        self.input_shape = (codec.n_features,)

    # --- the pieces, on network units ---------------------------------------------------------

    def encode(self, u: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:  # -> mu, log_var
        mu, log_var = self.encoder(torch.cat([u, onehot], dim=1)).chunk(2, dim=1)
        return mu, torch.clamp(log_var, *_LOG_VAR_LIMITS)

    def decode(self, z: Tensor, onehot: Tensor | None = None) -> Decoded:
        """z (N, latent) and, conditional, the condition's one-hot (N, d * K)."""
        inputs = torch.cat([z, onehot], dim=1) if self.conditional else z
        out = self.decoder(inputs)
        c = self.codec.n_continuous
        logits = None if self.conditional else out[:, 2 * c :]
        return Decoded(out[:, :c], torch.clamp(out[:, c : 2 * c], *_LOG_SIGMA_LIMITS), logits)

    def nll(self, u: Tensor, categories: Tensor, decoded: Decoded) -> Tensor:
        """-log p(x|z) per event (N,): Gaussian per continuous feature, the joint categorical
        of the discrete ones (not for a conditional model, whose discrete features are given)."""
        z_score = (u - decoded.mean) * torch.exp(-decoded.log_sigma)
        nll = (0.5 * z_score.square() + decoded.log_sigma + _HALF_LOG_2PI).sum(dim=1)
        if decoded.logits is None:
            return nll
        log_p = torch.log_softmax(decoded.logits, dim=1)
        return nll - (log_p * self.codec.combination_onehot_of(categories)).sum(dim=1)

    def kl(self, mu: Tensor, log_var: Tensor, z: Tensor) -> Tensor:
        """KL(q(z|x) || p(z)) per event (N,): analytic for the normal prior, else the
        estimate log q(z|x) - log p(z) at the given z."""
        if isinstance(self.prior, GaussianPrior):
            return 0.5 * (mu.square() + log_var.exp() - 1.0 - log_var).sum(dim=1)
        log_q = -(0.5 * (z - mu).square() * torch.exp(-log_var) + 0.5 * log_var).sum(dim=1)
        return log_q - self.latent_dim * _HALF_LOG_2PI - self.prior.log_prob(z)

    def draw(
        self, decoded: Decoded, condition: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """A sample of the decoder's distribution in network units: continuous u (N, c),
        reparameterised, and the per-feature one-hot (N, d * K) of a straight-through sample
        of the joint combination (or the condition)."""
        noise = torch.randn(decoded.mean.shape, generator=generator)
        u = decoded.mean + torch.exp(decoded.log_sigma) * noise
        if decoded.logits is None:
            return u, condition
        joint = straight_through_onehot(decoded.logits, self.codec.n_combinations, generator)
        return u, joint @ self.codec.combination_onehot

    def sample_conditions(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, d) categories drawn from the joint frequencies of the fitted sample."""
        combination = torch.multinomial(
            self.codec.combination_counts.float(), n, replacement=True, generator=generator
        )
        return self.codec.categories_of(combination)

    # --- generation and scores ------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` new events in raw units (n, k) float32: z from the prior, then a draw from
        the decoder; discrete features are integers."""
        condition = self.sample_conditions(n, generator) if self.conditional else None
        onehot = None if condition is None else self.codec.onehot(condition)
        decoded = self.decode(self.prior.sample(n, generator), onehot)
        u, drawn = self.draw(decoded, onehot, generator)
        grouped = drawn.unflatten(1, (-1, self.codec.n_categories))
        categories = grouped.argmax(dim=-1).to(torch.float32)
        return self.codec.decode(u, categories, generator)

    @torch.no_grad()
    def latent_means(self, x: Tensor) -> Tensor:  # raw (N, k) -> mu (N, latent)
        u, onehot = self.codec(x)
        return self.encode(u, onehot)[0]

    @property
    def score_names(self) -> list[str]:
        """The keys of ``scores``."""
        names = ["reconstruction", "kl", "mu2", "latent_nll"]
        return names + (["discriminator"] if self.discriminator is not None else [])

    def scores(self, x: Tensor) -> dict[str, Tensor]:
        """Every anomaly score of raw events ``x`` (N, k), each (N,)."""
        u, onehot = self.codec(x)
        mu, log_var = self.encode(u, onehot)
        decoded = self.decode(mu, onehot)
        scores = {
            "reconstruction": self.nll(u, self.codec.categories(x), decoded),
            "kl": self.kl(mu, log_var, mu),
            "mu2": mu.square().sum(dim=1),
            "latent_nll": -self.prior.log_prob(mu),
        }
        if self.discriminator is not None:
            scores["discriminator"] = -self.discriminator(torch.cat([u, onehot], dim=1))
        return scores

    def forward(self, x: Tensor) -> Tensor:
        return self.scores(x)[self.default_score]
