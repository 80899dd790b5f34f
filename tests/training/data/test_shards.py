"""The shard layout: round trips, partial reads, streaming, atomic writes, validation."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest

from training.data.shards import (
    Shard,
    hash_sample,
    iter_chunks,
    read_shard,
    shard_files,
    shard_info,
    write_shard,
)
from training.errors import BadDataFile

pytestmark = pytest.mark.pythia


def _assert_same(shard: Shard, other: Shard) -> None:
    assert sorted(shard.arrays) == sorted(other.arrays)
    for name, values in shard.arrays.items():
        np.testing.assert_array_equal(other.arrays[name], values, err_msg=name)
        assert other.arrays[name].dtype == values.dtype


@pytest.mark.parametrize("fixture", ["qcd_jets", "z_events"])
def test_write_then_read_gives_the_same_arrays_and_attrs(fixture, request, tmp_path):
    shard = request.getfixturevalue(fixture)
    path = write_shard(tmp_path / "a.h5", shard)

    back = read_shard(path)

    _assert_same(shard, back)
    assert back.attrs == shard.attrs
    assert shard_info(path) == (
        "jets" if "constituents" in shard.arrays else "events",
        len(shard),
        shard.attrs,
    )


def test_datasets_are_compressed(qcd_jets, tmp_path):
    path = write_shard(tmp_path / "a.h5", qcd_jets)
    raw_bytes = sum(values.nbytes for values in qcd_jets.arrays.values())
    assert path.stat().st_size < raw_bytes / 2


def test_read_selected_datasets_and_groups(qcd_jets, tmp_path):
    path = write_shard(tmp_path / "a.h5", qcd_jets)

    back = read_shard(path, ["features", "jet"])

    features = {name for name in qcd_jets.arrays if name.startswith("features/")}
    assert set(back.arrays) == {"label", "jet", *features}
    np.testing.assert_array_equal(back.arrays["jet"], qcd_jets.arrays["jet"])
    with pytest.raises(BadDataFile, match="no dataset 'pixels'"):
        read_shard(path, ["pixels"])


def test_iter_chunks_streams_a_directory_file_by_file(qcd_jets, z_events, tmp_path):
    first = Shard({k: v[:50] for k, v in z_events.arrays.items()}, {"process": "z", "seed": 1})
    second = Shard({k: v[50:] for k, v in z_events.arrays.items()}, {"process": "z", "seed": 2})
    write_shard(tmp_path / "z_seed1_00000.h5", first)
    write_shard(tmp_path / "z_seed1_00001.h5", second)

    chunks = list(iter_chunks(tmp_path, chunk_size=20, datasets=["particles"]))

    assert [len(c) for c in chunks] == [20, 20, 10, 20, 20, 10]
    assert [c.attrs["seed"] for c in chunks] == [1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(
        np.concatenate([c.arrays["particles"] for c in chunks]), z_events.arrays["particles"]
    )


def test_failed_write_leaves_no_file_and_keeps_the_old_one(z_events, tmp_path):
    path = write_shard(tmp_path / "a.h5", z_events)
    unwritable = Shard(z_events.arrays, {"process": object()})

    with pytest.raises(TypeError):
        write_shard(path, unwritable)
    with pytest.raises(TypeError):
        write_shard(tmp_path / "b.h5", unwritable)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    _assert_same(z_events, read_shard(path))


def _broken(shard: Shard, name: str, values: np.ndarray) -> Shard:
    return Shard({**shard.arrays, name: values}, shard.attrs)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("images", lambda a: np.where(np.arange(len(a))[:, None, None] == 3, np.nan, a), "NaN"),
        ("constituents", lambda a: a[:, :100], r"shape \(80, 100, 4\)"),
        ("jet", lambda a: a.astype(np.float64), "dtype float64"),
        ("label", lambda a: a[:-1], "'label'|'constituents'"),
    ],
)
def test_write_refuses_a_layout_that_breaks_the_contract(qcd_jets, tmp_path, name, make, message):
    bad = _broken(qcd_jets, name, make(qcd_jets.arrays[name]))
    with pytest.raises(BadDataFile, match=message) as error:
        write_shard(tmp_path / "bad.h5", bad)
    assert "bad.h5" in str(error.value)
    assert not (tmp_path / "bad.h5").exists()


def test_write_refuses_an_incomplete_or_mixed_shard(qcd_jets, z_events, tmp_path):
    without_images = {k: v for k, v in qcd_jets.arrays.items() if k != "images"}
    with pytest.raises(BadDataFile, match=r"jet shard without \['images'\]"):
        write_shard(tmp_path / "a.h5", Shard(without_images))
    mixed = {**z_events.arrays, "jet": qcd_jets.arrays["jet"][:100]}
    with pytest.raises(BadDataFile, match=r"\['jet'\] do not belong in event shards"):
        write_shard(tmp_path / "a.h5", Shard(mixed))


def test_read_names_the_file_and_the_problem(z_events, tmp_path):
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("not HDF5")
    with pytest.raises(BadDataFile, match=r"notes\.h5: not a readable HDF5 file"):
        read_shard(not_hdf5)
    with pytest.raises(BadDataFile, match=r"missing\.h5: no such file"):
        read_shard(tmp_path / "missing.h5")

    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as f:
        particles = z_events.arrays["particles"].copy()
        particles[7, 0, 0] = np.inf
        f["particles"] = particles
        f["label"] = z_events.arrays["label"]
    with pytest.raises(BadDataFile, match=r"nan.h5.*'particles'.*row 7"):
        read_shard(path)
    with pytest.raises(BadDataFile, match=r"nan.h5.*'particles'.*row 7"):
        list(iter_chunks([path], chunk_size=5))


def test_shard_files_ignores_temporary_files_and_needs_shards(z_events, tmp_path):
    with pytest.raises(BadDataFile, match="no shard files"):
        shard_files(tmp_path)
    write_shard(tmp_path / "b.h5", z_events)
    write_shard(tmp_path / "a.h5", z_events)
    (tmp_path / ".c.h5.tmp").write_bytes(b"partial")

    assert [p.name for p in shard_files(tmp_path)] == ["a.h5", "b.h5"]


def _rows(shard: Shard, rows: slice | np.ndarray) -> Shard:
    return Shard({k: v[rows] for k, v in shard.arrays.items()}, dict(shard.attrs))


def _documented_hash(shards: list[Shard]) -> str:
    """The recipe of hash_sample's docstring (and docs/data.md), written out with numpy."""
    digest = hashlib.sha256()
    for name in sorted(shards[0].arrays):
        values = np.concatenate([s.arrays[name] for s in shards])
        values = values.astype(values.dtype.newbyteorder("<"))
        shape = "x".join(map(str, values.shape))
        digest.update(f"{name} {values.dtype.str} {shape}\n".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def test_hash_is_the_documented_sha256_of_the_concatenated_arrays(qcd_jets, tmp_path):
    halves = [_rows(qcd_jets, slice(0, 30)), _rows(qcd_jets, slice(30, None))]
    for i, half in enumerate(halves):
        write_shard(tmp_path / "two" / f"qcd_{i}.h5", half)
    write_shard(tmp_path / "one" / "qcd.h5", qcd_jets)

    digest = hash_sample(tmp_path / "two")

    assert digest == _documented_hash(halves)
    assert hash_sample(tmp_path / "one") == digest  # the split into files does not matter
    assert hash_sample(sorted((tmp_path / "two").glob("*.h5"))) == digest


def test_hash_ignores_chunks_compression_and_attributes_but_not_values(z_events, tmp_path):
    digest = hash_sample([write_shard(tmp_path / "z.h5", z_events)])
    plain = tmp_path / "plain" / "z.h5"
    plain.parent.mkdir()
    with h5py.File(plain, "w") as f:  # contiguous, uncompressed, no attributes
        for name, values in z_events.arrays.items():
            f[name] = values

    assert hash_sample(plain.parent) == digest

    changed = z_events.arrays["particles"].copy()
    changed[7, 0, 0] += 1.0
    write_shard(tmp_path / "changed.h5", Shard({**z_events.arrays, "particles": changed}))
    swapped = _rows(z_events, np.r_[1, 0, 2 : len(z_events)])
    write_shard(tmp_path / "swapped.h5", swapped)
    assert hash_sample([tmp_path / "changed.h5"]) != digest
    assert hash_sample([tmp_path / "swapped.h5"]) != digest


def test_hash_refuses_files_of_different_layouts(qcd_jets, z_events, tmp_path):
    write_shard(tmp_path / "a.h5", qcd_jets)
    write_shard(tmp_path / "b.h5", z_events)

    with pytest.raises(BadDataFile, match=r"a\.h5 and .*b\.h5 hold different datasets"):
        hash_sample(tmp_path)
