"""Inputs of each bundle kind from every source format, and their provenance hashes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from service.bundle import sha256_file
from training.data.inputs import Inputs, default_ranges, source_format
from training.data.shards import Shard, hash_sample, write_shard
from training.errors import BadDataFile


def _events(n: int, seed: int) -> np.ndarray:
    """Seeded (N, 19, 4) rows: pT, eta, phi, class id (MET in row 0, jets in rows 9-18)."""
    rng = np.random.default_rng(seed)
    particles = np.zeros((n, 19, 4), np.float32)
    particles[:, :, 0] = rng.exponential(30.0, size=(n, 19))
    particles[:, :, 1] = rng.normal(0.0, 1.5, size=(n, 19))
    particles[:, :, 2] = rng.uniform(-np.pi, np.pi, size=(n, 19))
    particles[:, 0, 3], particles[:, 9:, 3] = 1, 4
    return particles


def test_events_from_adc2021_shards_and_npy_agree(tmp_path: Path) -> None:
    particles = _events(25, seed=1)
    with h5py.File(tmp_path / "adc.h5", "w") as f:
        f["Particles"] = particles
    write_shard(
        tmp_path / "shards" / "sm_0.h5",
        Shard({"particles": particles, "label": np.zeros(25, np.int8)}, {"process": "sm"}),
    )
    np.save(tmp_path / "events.npy", particles[..., :3])
    assert source_format(tmp_path / "adc.h5") == "adc2021"
    assert source_format(tmp_path / "shards") == "shards"
    columns = ("pt [GeV]", "eta", "phi [rad]")
    from_adc = np.concatenate(list(Inputs(tmp_path / "adc.h5", "event", columns).chunks(10)))
    from_shards = Inputs(tmp_path / "shards", "event", columns).head(25)
    from_npy = Inputs(tmp_path / "events.npy", "event").head(100)
    np.testing.assert_array_equal(from_adc, particles[..., :3])
    np.testing.assert_array_equal(from_shards, from_adc)
    np.testing.assert_array_equal(from_npy, from_adc)
    shards = Inputs(tmp_path / "shards", "event", columns).provenance()
    assert shards["sha256"] == hash_sample(tmp_path / "shards")
    assert Inputs(tmp_path / "adc.h5", "event").provenance()["sha256"] == sha256_file(
        tmp_path / "adc.h5"
    )
    low, high = default_ranges("event", columns)[2]
    assert low <= from_adc[..., 2].min() and from_adc[..., 2].max() <= high


def test_a_kind_that_does_not_fit_the_source_is_refused(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "adc.h5", "w") as f:
        f["Particles"] = _events(3, seed=2)
    with pytest.raises(BadDataFile, match="a jet-image bundle cannot score it"):
        Inputs(tmp_path / "adc.h5", "jet-image").head(1)
    with pytest.raises(BadDataFile, match="need the names of their features"):
        Inputs(tmp_path / "adc.h5", "jet-features")
    with pytest.raises(BadDataFile, match="must be leading columns"):
        Inputs(tmp_path / "adc.h5", "event", ("eta",))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(BadDataFile, match="not a shard"):
        source_format(tmp_path / "other.h5")


def test_default_ranges_leave_the_soft_drop_mass_open_below() -> None:
    """FastJet gives a groomed jet whose four-momentum rounds to spacelike a negative mass, so
    real QCD jets can have msd < 0 (a calibration sample of Pythia jets broke the old [0, inf)
    range); every other substructure feature stays non-negative."""
    ranges = default_ranges("jet-features", ["msd [GeV]", "tau21", "mass [GeV]", "log_msd"])
    assert ranges == [(None, None), (0.0, None), (0.0, None), (0.0, None)]
