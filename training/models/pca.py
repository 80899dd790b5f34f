"""Principal component analysis as a baseline, as a torch module so it exports like the rest.

Fitted on background by an SVD of the preprocessed training inputs; the score is the
reconstruction energy after projecting onto the leading ``n_components`` directions: how far
an event lies from the background's best-fitting linear subspace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from training.models.autoencoder import reconstruction_energy_of

__all__ = ["PCA"]


class PCA(nn.Module):
    """``forward(x)``: raw (N, *input_shape) -> reconstruction energy (N,)."""

    default_score = "reconstruction"

    def __init__(
        self,
        preprocessing: nn.Module,
        *,
        input_shape: Sequence[int],
        u_shape: Sequence[int],
        n_components: int,
        masked: bool,
    ) -> None:
        super().__init__()
        n_inputs = math.prod(u_shape)
        if not 1 <= n_components <= n_inputs:
            raise ValueError(f"PCA n_components must lie in [1, {n_inputs}], got {n_components}")
        self.preprocessing = preprocessing
        self.input_shape = tuple(input_shape)
        self.masked = masked
        self.register_buffer("mean", torch.zeros(n_inputs))
        self.register_buffer("components", torch.eye(n_inputs)[:n_components])  # (k, D)

    def preprocess(self, x: Tensor) -> Tensor:
        return self.preprocessing(x)

    def fit(self, u: Tensor) -> PCA:
        """Mean and leading right-singular vectors of ``u`` (N, ...), in float64."""
        flat = u.flatten(1).double()
        mean = flat.mean(dim=0)
        _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        self.mean.copy_(mean)
        self.components.copy_(vh[: len(self.components)])
        return self

    def energy(self, u: Tensor) -> Tensor:  # (N, *u_shape) -> (N,)
        centred = u.flatten(1) - self.mean
        projected = centred @ self.components.T @ self.components + self.mean
        return reconstruction_energy_of(u, projected.view_as(u), masked=self.masked)

    def forward(self, x: Tensor) -> Tensor:
        return self.energy(self.preprocess(x))

    def scores(self, x: Tensor) -> dict[str, Tensor]:
        return {self.default_score: self(x)}
