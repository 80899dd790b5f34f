"""Shards -> tensors: the three inputs of real Pythia jets and events, and a seeded split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import DataConfig
from training.data.loaders import load_inputs, load_split
from training.data.shards import write_shard
from training.errors import BadDataFile


@pytest.fixture(scope="module")
def shard_dirs(qcd_jets, z_events, tmp_path_factory):
    jets, events = tmp_path_factory.mktemp("jets"), tmp_path_factory.mktemp("events")
    write_shard(jets / "qcd_seed11_00000.h5", qcd_jets)
    write_shard(events / "z_seed21_00000.h5", z_events)
    return {"jets": str(jets), "events": str(events)}


def test_each_input_kind_reads_its_datasets(shard_dirs, qcd_jets, z_events):
    images = load_inputs([shard_dirs["jets"]], input="images")
    assert images.dtype == torch.float32 and images.shape == (len(qcd_jets), 40, 40)
    assert np.array_equal(images.numpy(), qcd_jets.arrays["images"])
    features = load_inputs([shard_dirs["jets"]], input="features", features=("tau32", "msd"))
    assert features.shape == (len(qcd_jets), 2)
    assert np.array_equal(features[:, 1].numpy(), qcd_jets.arrays["features/msd"])
    events = load_inputs([shard_dirs["events"]], input="events", max_events=7)
    assert events.shape == (7, 19, 3)
    assert np.array_equal(events.numpy(), z_events.arrays["particles"][:7, :, :3])


def test_split_is_seeded_disjoint_and_complete(shard_dirs, z_events):
    config = DataConfig(input="events", train=(shard_dirs["events"],), validation_fraction=0.2)
    first, again = load_split(config), load_split(config)
    assert torch.equal(first.train, again.train) and len(first.validation) == 20
    assert len(first.train) + len(first.validation) == len(z_events)
    other = load_split(config.model_copy(update={"split_seed": 2}))
    assert not torch.equal(first.validation, other.validation)
    rows = {tuple(r) for r in torch.cat([first.train, first.validation]).flatten(1).tolist()}
    assert len(rows) == len(z_events)


def test_a_missing_feature_names_the_dataset(shard_dirs):
    with pytest.raises(BadDataFile, match="no dataset 'features/nope'"):
        load_inputs([shard_dirs["jets"]], input="features", features=("nope",))
