"""Checkpoints: RNG states come back exactly, files are written whole, foreign files refused,
configs written by older code load where nothing they set is lost."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from training.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from training.config import RunConfig, load_run_config
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


def _checkpoint_with(section: str, field: str, value) -> dict:
    config = load_run_config("events-sm-nae").model_dump()
    config[section][field] = value
    return {"config": config}


def test_a_removed_field_left_unset_is_dropped_with_a_warning():
    with pytest.warns(UserWarning, match=r"train\.retired_option"):
        config = checkpoint_config(_checkpoint_with("train", "retired_option", None), RunConfig)
    assert config == load_run_config("events-sm-nae")


def test_a_removed_field_with_a_value_is_refused_by_name():
    with pytest.raises(NaeError, match=r"loss\.retired_weight"):
        checkpoint_config(_checkpoint_with("loss", "retired_weight", 10.0), RunConfig)


def test_a_bad_value_is_not_mistaken_for_a_removed_field():
    with pytest.raises(ValidationError):
        checkpoint_config(_checkpoint_with("train", "seed", "not a number"), RunConfig)
