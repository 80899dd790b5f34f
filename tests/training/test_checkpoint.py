"""Checkpoints: RNG states come back exactly, files are written whole, foreign files refused."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from training.errors import NaeError


def _draws(generator: torch.Generator) -> tuple:
    return (
        torch.rand(3).tolist(),
        np.random.rand(3).tolist(),
        random.random(),
        torch.rand(3, generator=generator).tolist(),
    )


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(4)
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    path = save_checkpoint(tmp_path / "c.pt", {"rng": rng_states({"data": generator})})
    expected = _draws(generator)
    restore_rng_states(load_checkpoint(path)["rng"], {"data": generator})
    assert _draws(generator) == expected
    assert not list(tmp_path.glob(".*.tmp"))  # written under a temporary name, then renamed


def test_foreign_or_missing_files_are_refused(tmp_path):
    with pytest.raises(NaeError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NaeError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": 99}, tmp_path / "future.pt")
    with pytest.raises(NaeError, match="format 99"):
        load_checkpoint(tmp_path / "future.pt")
