"""The feature codec of a table generator: raw events <-> what the networks see.

Continuous features go through ``QuantileToNormal`` (or ``Standardise``) into roughly normal
units; discrete features (integer counts such as the number of jets) become categories
0 .. K-1 (larger counts fold into K-1), one-hot per feature for the networks' inputs. The
decoder models the discrete features jointly, as one categorical over their K^d combinations
(``combination``): counts that go together (all central jets are jets, so n_central <= n_jets)
keep their joint frequencies, which independent categoricals per feature would lose.
``decode`` inverts both, so generated counts are integers by construction. Derived features
(exact functions of others, ``data.derived``) are neither encoded nor decoded: ``decode``
computes them from the decoded values of their inputs, so every generated event keeps the
identities. Azimuthal angles can be modelled relative to a reference angle
(``data.relative_phi``: phi_ll and MET phi relative to the Z-gamma system's phi): the events
are symmetric under a common rotation, and a difference of two angles that each look uniform
is hard for a Gaussian decoder to get right, while the relative angle carries the physics
directly. The reference itself can be left out of the model (``data.uniform_phi``): the
generator draws it uniform in [-pi, pi), which makes the generated events exactly symmetric
under the rotation, as the simulated ones are. A magnitude and its (relative) angle can be
modelled as the components of their 2-vector (``data.cartesian``: MET along and across the
Z-gamma system): decoding takes the length and the direction back. The events are also
symmetric under a reflection (every azimuth negated): with ``data.reflect`` the model sees one
relative angle as its absolute value and the others multiplied by its sign, and decoding draws
that sign at random, so a two-peaked angle (the dilepton at +-1 rad from the Z-gamma system)
becomes one peak, and the generated events are exactly symmetric. Everything learned is a
buffer, so the codec exports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from training.config import TablePreprocessing
from training.data.particles import wrap_phi
from training.models.preprocessing import QuantileToNormal, Standardise

__all__ = ["FeatureCodec"]


class FeatureCodec(nn.Module):
    """Raw (N, k) events in ``features`` order <-> (continuous u (N, c), categories (N, d)).

    ``discrete``: column indices of the integer features; ``n_categories``: K per discrete
    feature; ``derived``: column indices that ``derive`` (raw (N, k) -> raw (N, k) with those
    columns recomputed) fills in after decoding; the networks never see them; ``relative``:
    (column, reference column) pairs of angles, encoded as the wrapped difference;
    ``uniform``: a column (an angle) that is not modelled but drawn uniform at decoding;
    ``cartesian``: (angle column, magnitude column) pairs encoded as (m sin, m cos) in those
    columns, after the ``relative`` frame; ``reflect``: a ``relative`` column whose sign
    multiplies every ``relative`` column (before ``cartesian``) and is drawn at decoding.
    ``combination_counts`` holds how often each joint combination of the discrete categories
    occurs in the fitted sample (K^d entries): a conditional generator draws its conditions
    from it.
    """

    def __init__(
        self,
        n_features: int,
        discrete: Sequence[int],
        *,
        preprocessing: TablePreprocessing,
        n_quantiles: int,
        n_categories: int,
        derived: Sequence[int] = (),
        derive: Callable[[np.ndarray], np.ndarray] | None = None,
        relative: Sequence[tuple[int, int]] = (),
        uniform: int | None = None,
        cartesian: Sequence[tuple[int, int]] = (),
        reflect: int | None = None,
    ) -> None:
        super().__init__()
        if bool(derived) != (derive is not None):
            raise ValueError("derived columns and their derive function go together")
        skipped = set(discrete) | set(derived) | ({uniform} if uniform is not None else set())
        continuous = [i for i in range(n_features) if i not in skipped]
        self.derive = derive
        self.relative = [(int(column), int(reference)) for column, reference in relative]
        self.cartesian = [(int(angle), int(magnitude)) for angle, magnitude in cartesian]
        if reflect is not None and reflect not in [column for column, _ in self.relative]:
            raise ValueError("the reflected angle must be a relative one")
        self.reflect = reflect
        self.uniform = uniform
        self.n_features = n_features
        self.n_categories = n_categories
        self.register_buffer("continuous_index", torch.tensor(continuous, dtype=torch.long))
        self.register_buffer("discrete_index", torch.tensor(list(discrete), dtype=torch.long))
        if preprocessing == "quantile":
            self.transform: nn.Module = QuantileToNormal(len(continuous), n_quantiles)
        else:
            self.transform = Standardise(len(continuous))
        self.register_buffer("levels", torch.arange(n_categories, dtype=torch.float32))
        n_combinations = n_categories ** len(discrete)
        self.register_buffer("combination_counts", torch.zeros(n_combinations, dtype=torch.float64))
        self.register_buffer(
            "combination_levels", torch.arange(n_combinations, dtype=torch.float32)
        )
        # row c: the per-feature one-hot of combination c, (K^d, d * K)
        self.register_buffer(
            "combination_onehot", self.onehot(self.categories_of(torch.arange(n_combinations)))
        )

    @property
    def n_continuous(self) -> int:
        return len(self.continuous_index)

    @property
    def n_discrete(self) -> int:
        return len(self.discrete_index)

    @property
    def onehot_size(self) -> int:
        return self.n_discrete * self.n_categories

    @property
    def n_combinations(self) -> int:
        return len(self.combination_counts)

    def fit(self, x: np.ndarray) -> FeatureCodec:
        """Fit the continuous transform and count the discrete combinations of ``x`` (N, k)."""
        values = self._to_frame(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()
        self.transform.fit(values[:, self.continuous_index.numpy()])
        categories = self._categories(torch.as_tensor(values, dtype=torch.float32))
        self.combination_counts.copy_(
            torch.bincount(
                self.combination(categories), minlength=len(self.combination_counts)
            ).double()
        )
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, k) raw -> u (N, c) continuous in normal units, one-hot (N, d * K)."""
        u = self.transform(self._to_frame(x).index_select(1, self.continuous_index))
        return u, self.onehot(self._categories(x))

    def _to_frame(self, x: Tensor) -> Tensor:
        """Raw (N, k) with each ``relative`` angle replaced by its difference to its reference,
        then each ``cartesian`` (angle, magnitude) by the 2-vector's (sin, cos) components."""
        if not self.relative and not self.cartesian:
            return x
        framed = x.clone()
        for column, reference in self.relative:
            framed[:, column] = wrap_phi(x[:, column] - x[:, reference])
        if self.reflect is not None:
            self._reflect(framed, torch.where(framed[:, self.reflect] < 0, -1.0, 1.0))
        for angle, magnitude in self.cartesian:
            phi, length = framed[:, angle].clone(), framed[:, magnitude].clone()
            framed[:, angle] = length * torch.sin(phi)
            framed[:, magnitude] = length * torch.cos(phi)
        return framed

    def _reflect(self, framed: Tensor, sign: Tensor) -> None:
        for column, _ in self.relative:
            framed[:, column] = framed[:, column] * sign.to(framed.dtype)

    def _from_frame(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        for angle, magnitude in self.cartesian:
            across, along = x[:, angle].clone(), x[:, magnitude].clone()
            x[:, angle] = torch.atan2(across, along)
            x[:, magnitude] = torch.hypot(across, along)
        if self.reflect is not None:
            if generator is None:
                raise ValueError("decoding draws the reflection: pass a generator")
            self._reflect(x, 2.0 * torch.randint(0, 2, (len(x),), generator=generator) - 1.0)
        for column, reference in self.relative:
            x[:, column] = wrap_phi(x[:, column] + x[:, reference])
        return x

    def onehot(self, categories: Tensor) -> Tensor:  # (N, d) float categories -> (N, d * K)
        return (categories.unsqueeze(-1) == self.levels).flatten(1).to(torch.float32)

    def categories(self, x: Tensor) -> Tensor:  # (N, k) raw -> (N, d) float categories
        return self._categories(x)

    def _categories(self, x: Tensor) -> Tensor:
        counts = x.index_select(1, self.discrete_index)
        return torch.clamp(torch.round(counts), 0.0, float(self.n_categories - 1))

    def combination(self, categories: Tensor) -> Tensor:  # (N, d) -> (N,) long, mixed radix
        weights = self.n_categories ** torch.arange(self.n_discrete - 1, -1, -1)
        return (categories.long() * weights).sum(dim=1)

    def combination_onehot_of(self, categories: Tensor) -> Tensor:
        """(N, d) float categories -> (N, K^d) one-hot of their combination, in float
        arithmetic (exact for these small integers), which exports to ONNX."""
        weights = self.n_categories ** torch.arange(self.n_discrete - 1, -1, -1)
        index = (categories * weights.to(categories.dtype)).sum(dim=1, keepdim=True)
        return (index == self.combination_levels).to(torch.float32)

    def categories_of(self, combination: Tensor) -> Tensor:  # (N,) long -> (N, d) float
        digits = []
        for power in range(self.n_discrete - 1, -1, -1):
            digits.append(combination // self.n_categories**power % self.n_categories)
        return torch.stack(digits, dim=1).to(torch.float32)

    def decode(
        self, u: Tensor, categories: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """u (N, c), categories (N, d) -> raw events (N, k) float32 (counts are integers);
        ``generator`` draws the ``uniform`` angle and the ``reflect`` sign."""
        x = torch.empty(len(u), self.n_features, dtype=torch.float32)
        if self.uniform is not None:
            if generator is None:
                raise ValueError("decoding draws the uniform angle: pass a generator")
            x[:, self.uniform] = (2 * torch.rand(len(u), generator=generator) - 1) * math.pi
        x[:, self.continuous_index] = self.transform.inverse(u).to(torch.float32)
        x[:, self.discrete_index] = categories.to(torch.float32)
        x = self._from_frame(x, generator)
        if self.derive is None:
            return x
        return torch.from_numpy(self.derive(x.numpy()))
