"""Shards -> torch tensors for training and evaluation, with a seeded train/validation split.
The only ``data`` module that imports torch.

The inputs of one run fit in memory (100k images are 640 MB of float32), so the loaders read
whole tensors once and training indexes them with its own seeded generator: cheaper and
simpler to make bit-identical on resume than a ``DataLoader`` with worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from training.config import DataConfig, InputKind
from training.data.shards import iter_chunks
from training.errors import BadDataFile

__all__ = ["Split", "load_inputs", "load_split"]

_CHUNK_ROWS = 10_000
_EVENT_COLUMNS = 3  # pT, eta, phi; the class id is implied by the row


class Split(NamedTuple):
    """Training and validation inputs, each (N, *input_shape) float32."""

    train: torch.Tensor
    validation: torch.Tensor


def load_inputs(
    directories: Sequence[str | os.PathLike[str]],
    *,
    input: InputKind,
    features: Sequence[str] = (),
    max_events: int = 0,
) -> torch.Tensor:
    """The inputs of the shards under ``directories`` (in order), as one float32 tensor:
    images (N, 40, 40), features (N, k) in ``features`` order, or events (N, 19, 3) = the pT
    [GeV], eta, phi of ``particles``. ``max_events`` > 0 keeps the first that many rows."""
    datasets = {
        "images": ["images"],
        "features": [f"features/{name}" for name in features],
        "events": ["particles"],
    }[input]
    if input == "features" and not features:
        raise BadDataFile("input = 'features' needs feature names (data.features)")
    parts: list[np.ndarray] = []
    n = 0
    for directory in directories:
        for chunk in iter_chunks(directory, chunk_size=_CHUNK_ROWS, datasets=datasets):
            if input == "features":
                values = np.stack([chunk.arrays[name] for name in datasets], axis=1)
            elif input == "events":
                values = chunk.arrays["particles"][..., :_EVENT_COLUMNS]
            else:
                values = chunk.arrays["images"]
            parts.append(values)
            n += len(values)
            if 0 < max_events <= n:
                break
        if 0 < max_events <= n:
            break
    if n == 0:
        raise BadDataFile(f"no rows in {[str(d) for d in directories]}")
    values = np.concatenate(parts)[: max_events or None]
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def load_split(config: DataConfig) -> Split:
    """``config.train``'s inputs split at random (seed ``config.split_seed``) into training and
    validation parts; validation gets ``round(validation_fraction * N)`` rows, at least one."""
    x = load_inputs(
        config.train, input=config.input, features=config.features, max_events=config.max_events
    )
    n_validation = max(1, round(config.validation_fraction * len(x)))
    if n_validation >= len(x):
        raise BadDataFile(
            f"{len(x)} rows leave nothing to train on after a validation fraction of "
            f"{config.validation_fraction}: use more rows or a smaller data.validation_fraction"
        )
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.split_seed))
    return Split(x[order[n_validation:]], x[order[:n_validation]])
