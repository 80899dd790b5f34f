"""Sharded generation: layout, seeds, determinism across workers, resume."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import EventSampleConfig, JetSampleConfig
from training.data.generation import generate_shards, shard_seed
from training.data.pythia import MAX_SEED
from training.data.shards import read_shard, write_shard
from training.errors import NaeError

Z = EventSampleConfig(process="z")


def test_shard_seeds_are_distinct_deterministic_and_in_pythias_range():
    seeds = [shard_seed(run, index) for run in (0, 1, 2) for index in range(200)]

    assert len(set(seeds)) == len(seeds)
    assert all(1 <= s <= MAX_SEED for s in seeds)
    assert shard_seed(1, 5) == shard_seed(1, 5)


@pytest.mark.pythia
def test_generate_shards_splits_resumes_and_is_deterministic(tmp_path):
    counts: list[int] = []
    paths = generate_shards(
        "events", Z, n=3, out_dir=tmp_path / "a", seed=3, shard_size=2, progress=counts.append
    )

    assert [p.name for p in paths] == ["z_seed3_00000.h5", "z_seed3_00001.h5"]
    shards = [read_shard(p) for p in paths]
    assert [len(s) for s in shards] == [2, 1]
    assert sum(counts) == 3
    assert shards[0].attrs["seed"] != shards[1].attrs["seed"]

    # Same seed, two worker processes, another directory: the same arrays.
    again = generate_shards(
        "events", Z, n=3, out_dir=tmp_path / "b", seed=3, shard_size=2, workers=2
    )
    for shard, path in zip(shards, again, strict=True):
        np.testing.assert_array_equal(
            read_shard(path).arrays["particles"], shard.arrays["particles"]
        )

    # Resume: a truncated shard (as a crash outside write_shard would leave) is made again,
    # the complete one is left alone, and progress still adds up to n.
    untouched = paths[0].stat().st_mtime_ns
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    counts.clear()
    generate_shards(
        "events", Z, n=3, out_dir=tmp_path / "a", seed=3, shard_size=2, progress=counts.append
    )

    assert paths[0].stat().st_mtime_ns == untouched
    assert sum(counts) == 3
    for shard, path in zip(shards, paths, strict=True):
        np.testing.assert_array_equal(
            read_shard(path).arrays["particles"], shard.arrays["particles"]
        )


@pytest.mark.pythia
def test_a_shard_of_other_settings_stops_the_run(z_events, tmp_path):
    write_shard(tmp_path / "z_seed3_00000.h5", z_events)  # z with detector, 100 events
    truth = EventSampleConfig(process="z", detector=None)

    with pytest.raises(
        NaeError, match=r"z_seed3_00000\.h5 holds a sample made with other settings"
    ):
        generate_shards("events", truth, n=2, out_dir=tmp_path, seed=3, shard_size=2)


@pytest.mark.parametrize(
    ("kind", "config", "n", "message"),
    [
        ("events", Z, 0, "n must be positive"),
        ("events", Z, -3, "n must be positive"),
        ("jets", Z, 5, "does not match"),
        ("events", JetSampleConfig(process="qcd"), 5, "does not match"),
    ],
)
def test_bad_requests_fail_before_generating(tmp_path, kind, config, n, message):
    with pytest.raises(NaeError, match=message):
        generate_shards(kind, config, n=n, out_dir=tmp_path, seed=1, shard_size=2)
    assert list(tmp_path.iterdir()) == []
