"""A Gaussian-copula prior with learned marginal CDFs: the copula VAE.

Each latent coordinate z_j passes through a learned, strictly monotone marginal CDF F_j (a
mixture of logistic CDFs), so u_j = F_j(z_j) is uniform on (0, 1) under the prior: the latent
is described as a uniform copula plus its marginals (Sklar's theorem). The dependence between
coordinates is a Gaussian copula with a learned correlation matrix R:

    log p(z) = log c_R(Phi^-1(F(z))) + sum_j log f_j(z_j),
    log c_R(u) = -1/2 log|R| - 1/2 g^T (R^-1 - I) g,   g = Phi^-1(u).

R = L L^T with L lower triangular, positive diagonal, unit rows (so diag R = 1 and R is
positive definite); R^-1 g is a forward substitution written as a loop over the few latent
dimensions, which exports to ONNX. Sampling: g ~ N(0, R), u = Phi(g), z_j = F_j^-1(u_j) by
bisection (F_j is monotone) and Newton steps kept inside the bracket.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import logsigmoid, softplus

from training.models.preprocessing import inverse_normal_cdf

__all__ = ["GaussianCopulaPrior", "LogisticMixtureCDF"]

_U_EDGE = 1e-6  # u kept inside [eps, 1 - eps] before Phi^-1
_BISECTIONS = 24  # the bracket (+-40 scales) shrinks ~1.7e7-fold
_NEWTON_STEPS = 3  # then quadratic convergence to float precision


class LogisticMixtureCDF(nn.Module):
    """Per dimension j: F_j(z) = sum_k w_jk sigmoid((z - m_jk) / s_jk), w > 0 summing to 1,
    s > 0: strictly increasing from 0 to 1 for any parameters, with an analytic density."""

    def __init__(self, dim: int, n_components: int) -> None:
        super().__init__()
        spread = torch.linspace(-2.0, 2.0, n_components) if n_components > 1 else torch.zeros(1)
        self.location = nn.Parameter(spread.repeat(dim, 1))  # (d, K)
        self.raw_scale = nn.Parameter(torch.zeros(dim, n_components))
        self.logit_weight = nn.Parameter(torch.zeros(dim, n_components))

    def _parts(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        scale = softplus(self.raw_scale) + 1e-3
        standard = (z.unsqueeze(-1) - self.location) / scale  # (N, d, K)
        return standard, scale, torch.log_softmax(self.logit_weight, dim=-1)

    def cdf(self, z: Tensor) -> Tensor:  # (N, d) -> (N, d) in (0, 1)
        standard, _, log_w = self._parts(z)
        return torch.exp(torch.logsumexp(log_w + logsigmoid(standard), dim=-1))

    def log_density(self, z: Tensor) -> Tensor:  # (N, d) -> (N, d)
        standard, scale, log_w = self._parts(z)
        log_pdf = logsigmoid(standard) + logsigmoid(-standard) - torch.log(scale)
        return torch.logsumexp(log_w + log_pdf, dim=-1)

    def quantile(self, u: Tensor) -> Tensor:
        """F^-1(u) per dimension: (N, d) in (0, 1) -> (N, d). Bisection on the plain mixture
        sum (cheaper than the log-space ``cdf``), then Newton steps z -= (F(z) - u) / f(z),
        each kept inside the final bracket."""
        scale = softplus(self.raw_scale) + 1e-3
        weight = torch.softmax(self.logit_weight, dim=-1)
        low = (self.location - 40 * scale).min(dim=1).values.expand_as(u).clone()
        high = (self.location + 40 * scale).max(dim=1).values.expand_as(u).clone()

        def cdf_and_density(z: Tensor) -> tuple[Tensor, Tensor]:
            sigmoid = torch.sigmoid((z.unsqueeze(-1) - self.location) / scale)
            return (weight * sigmoid).sum(-1), (weight * sigmoid * (1 - sigmoid) / scale).sum(-1)

        for _ in range(_BISECTIONS):
            middle = 0.5 * (low + high)
            below = cdf_and_density(middle)[0] < u
            low = torch.where(below, middle, low)
            high = torch.where(below, high, middle)
        z = 0.5 * (low + high)
        for _ in range(_NEWTON_STEPS):
            value, density = cdf_and_density(z)
            z = torch.clamp(z - (value - u) / torch.clamp(density, min=1e-30), low, high)
        return z


class GaussianCopulaPrior(nn.Module):
    """p(z) with learned marginals ``LogisticMixtureCDF`` and a Gaussian copula."""

    def __init__(self, dim: int, *, n_components: int) -> None:
        super().__init__()
        self.dim = dim
        self.marginals = LogisticMixtureCDF(dim, n_components)
        self.raw_cholesky = nn.Parameter(torch.zeros(dim, dim))  # lower triangle used
        self.register_buffer("lower", torch.tril(torch.ones(dim, dim), diagonal=-1))

    def cholesky(self) -> Tensor:
        """L (d, d): lower triangular, positive diagonal, unit rows; R = L L^T."""
        diagonal = torch.diag(torch.exp(torch.diagonal(self.raw_cholesky)))
        raw = self.raw_cholesky * self.lower + diagonal
        return raw / raw.norm(dim=1, keepdim=True)

    def log_prob(self, z: Tensor) -> Tensor:  # (N, d) -> (N,)
        u = torch.clamp(self.marginals.cdf(z), _U_EDGE, 1.0 - _U_EDGE)
        g = inverse_normal_cdf(u)
        cholesky = self.cholesky()
        solved = []  # y with L y = g, so g^T R^-1 g = |y|^2
        for i in range(self.dim):
            partial = g[:, i]
            for j in range(i):
                partial = partial - cholesky[i, j] * solved[j]
            solved.append(partial / cholesky[i, i])
        y = torch.stack(solved, dim=1)
        log_det_r = 2.0 * torch.log(torch.diagonal(cholesky)).sum()
        log_copula = -0.5 * log_det_r - 0.5 * (y.square() - g.square()).sum(dim=1)
        return log_copula + self.marginals.log_density(z).sum(dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:  # -> (n, d)
        g = torch.randn(n, self.dim, generator=generator) @ self.cholesky().T
        u = torch.clamp(0.5 * (1.0 + torch.erf(g / math.sqrt(2.0))), _U_EDGE, 1.0 - _U_EDGE)
        return self.marginals.quantile(u)
