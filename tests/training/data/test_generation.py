"""Sharded generation: layout, seeds, determinism across workers and a Dask cluster, slices,
resume."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from training.config import EventSampleConfig, JetSampleConfig
from training.data.generation import ShardSlice, count_rows, generate_shards, shard_seed
from training.data.pythia import MAX_SEED
from training.data.shards import Shard, read_shard, write_shard
from training.errors import NaeError

Z = EventSampleConfig(process="z")
# The run every test below compares with: 3 z events in shards of 2 (sizes 2 and 1), seed 3.
RUN = {"n": 3, "seed": 3, "shard_size": 2}
NAMES = ["z_seed3_00000.h5", "z_seed3_00001.h5"]


@pytest.fixture(scope="module")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RUN made in this process, one shard after the other; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("local")
    generate_shards("events", Z, out_dir=out, **RUN)
    return out


@pytest.fixture(scope="module")
def local_run(local_dir: Path) -> list[Shard]:
    return [read_shard(local_dir / name) for name in NAMES]


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A real two-process Dask cluster on loopback, without dashboards (port 8787 may be taken)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def _assert_same_shards(paths: list[Path], shards: list[Shard]) -> None:
    for path, shard in zip(paths, shards, strict=True):
        back = read_shard(path)
        assert sorted(back.arrays) == sorted(shard.arrays)
        for name, values in shard.arrays.items():
            np.testing.assert_array_equal(back.arrays[name], values, err_msg=name)
        assert back.attrs == shard.attrs


def test_shard_seeds_are_distinct_deterministic_and_in_pythias_range():
    seeds = [shard_seed(run, index) for run in (0, 1, 2) for index in range(200)]

    assert len(set(seeds)) == len(seeds)
    assert all(1 <= s <= MAX_SEED for s in seeds)
    assert shard_seed(1, 5) == shard_seed(1, 5)


@pytest.mark.pythia
def test_generate_shards_splits_resumes_and_is_deterministic(local_dir, local_run, tmp_path):
    assert sorted(p.name for p in local_dir.iterdir()) == NAMES
    assert [len(s) for s in local_run] == [2, 1]
    assert local_run[0].attrs["seed"] != local_run[1].attrs["seed"]

    # Same seed, two worker processes, another directory: the same arrays.
    again = generate_shards("events", Z, out_dir=tmp_path / "b", workers=2, **RUN)
    _assert_same_shards(again, local_run)

    # Resume: a truncated shard (as a crash outside write_shard would leave) is made again,
    # the complete one is left alone, and progress still adds up to n.
    shutil.copytree(local_dir, tmp_path / "a")
    paths = [tmp_path / "a" / name for name in NAMES]
    untouched = paths[0].stat().st_mtime_ns
    paths[1].write_bytes(paths[1].read_bytes()[:100])
    counts: list[int] = []
    generate_shards("events", Z, out_dir=tmp_path / "a", progress=counts.append, **RUN)

    assert paths[0].stat().st_mtime_ns == untouched
    assert sum(counts) == RUN["n"]
    _assert_same_shards(paths, local_run)


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


@pytest.mark.pythia
def test_a_dask_cluster_makes_the_same_shards_as_this_process(
    local_run, dask_address, tmp_path, monkeypatch
):
    # A relative --out, as users type it: the workers' working directory is not this one.
    monkeypatch.chdir(tmp_path)
    counts: list[int] = []

    paths = generate_shards(
        "events", Z, out_dir="dask", dask=dask_address, progress=counts.append, **RUN
    )

    assert paths == [Path("dask", name) for name in NAMES]
    _assert_same_shards(paths, local_run)
    assert sum(counts) == RUN["n"]


@pytest.mark.pythia
def test_slices_make_only_their_shards_and_the_full_run_completes_them(local_run, tmp_path):
    second = generate_shards("events", Z, out_dir=tmp_path, shard_slice=ShardSlice(1, 2), **RUN)

    assert [p.name for p in second] == NAMES[1:]
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == NAMES[1:]
    _assert_same_shards(second, local_run[1:])

    untouched = second[0].stat().st_mtime_ns
    counts: list[int] = []
    paths = generate_shards("events", Z, out_dir=tmp_path, progress=counts.append, **RUN)

    assert second[0].stat().st_mtime_ns == untouched
    assert sum(counts) == RUN["n"]
    _assert_same_shards(paths, local_run)


def test_slices_take_shards_round_robin_and_add_up_to_the_run():
    # 10 rows in shards of 3: sizes 3, 3, 3, 1; slice 0 of 3 holds shards 0 and 3.
    rows = [count_rows(10, shard_size=3, shard_slice=ShardSlice(i, 3)) for i in range(3)]

    assert rows == [4, 3, 3]
    assert count_rows(10, shard_size=3) == 10
    assert count_rows(10, shard_size=3, shard_slice=ShardSlice(5, 6)) == 0


@pytest.mark.parametrize(
    ("index", "count", "message"),
    [
        (2, 2, r"shard index 2 is not in 0\.\.1"),
        (-1, 2, r"shard index -1 is not in 0\.\.1"),
        (0, 0, "slices .* must be at least 1, got 0"),
    ],
)
def test_a_bad_slice_is_refused_when_made(index, count, message):
    with pytest.raises(NaeError, match=message):
        ShardSlice(index, count)


def test_dask_with_local_workers_fails_before_generating(tmp_path):
    with pytest.raises(NaeError, match=r"workers=2 \(local processes\) cannot be combined"):
        generate_shards(
            "events", Z, out_dir=tmp_path, dask="tcp://127.0.0.1:8786", workers=2, **RUN
        )
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_scheduler_is_one_error_naming_it(tmp_path):
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}),
        pytest.raises(NaeError, match=r"cannot reach a Dask scheduler at 'tcp://127\.0\.0\.1:9'"),
    ):
        generate_shards("events", Z, out_dir=tmp_path, dask="tcp://127.0.0.1:9", **RUN)
