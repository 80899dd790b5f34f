"""Public formats: our own shards written in the landscape and ADC2021 layouts convert back to
the same arrays; broken files give one clear ``BadDataFile``."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from training.data.convert import convert_adc2021, convert_landscape
from training.data.shards import Shard, iter_chunks
from training.errors import BadDataFile

pytestmark = pytest.mark.pythia

# The published landscape column names, spelled out here rather than taken from the code.
CONSTITUENT_COLUMNS = [f"{c}_{i}" for i in range(200) for c in ("E", "PX", "PY", "PZ")]


def _landscape_frame(*shards: Shard) -> pd.DataFrame:
    """Jets in the landscape layout, with the truth columns of the real files in front."""
    constituents = np.concatenate([s.arrays["constituents"] for s in shards])
    n = len(constituents)
    frame = pd.DataFrame(constituents.reshape(n, 800), columns=CONSTITUENT_COLUMNS)
    truth = {name: np.ones(n, np.float32) for name in ("truthE", "truthPX", "truthPY", "truthPZ")}
    labels = np.concatenate([s.arrays["label"] for s in shards]).astype(np.int64)
    extra = pd.DataFrame({**truth, "ttv": np.zeros(n, np.int8), "is_signal_new": labels})
    return pd.concat([extra, frame], axis=1)


def _read_all(directory) -> dict[str, np.ndarray]:
    chunks = list(iter_chunks(directory, chunk_size=1000))
    return {name: np.concatenate([c.arrays[name] for c in chunks]) for name in chunks[0].arrays}


@pytest.mark.parametrize("pandas_format", ["fixed", "table"])
def test_landscape_file_of_our_jets_converts_to_our_arrays(
    qcd_jets, top_jets, tmp_path, pandas_format
):
    path = tmp_path / "test.h5"
    _landscape_frame(qcd_jets, top_jets).to_hdf(path, key="table", format=pandas_format)

    paths = convert_landscape(path, tmp_path / "out", chunk_size=70)

    assert [p.name for p in paths] == ["test_00000.h5", "test_00001.h5", "test_00002.h5"]
    converted = _read_all(tmp_path / "out")
    assert sorted(converted) == sorted(qcd_jets.arrays)
    for name, values in converted.items():
        expected = np.concatenate([qcd_jets.arrays[name], top_jets.arrays[name]])
        np.testing.assert_array_equal(values, expected, err_msg=name)


def test_adc2021_file_of_our_events_converts_to_our_arrays(z_events, tmp_path):
    path = tmp_path / "background.h5"
    with h5py.File(path, "w") as f:
        f["Particles"] = z_events.arrays["particles"]
        f["Particles_Names"] = np.array([b"Pt", b"Eta", b"Phi", b"Class"])

    convert_adc2021(path, tmp_path / "bkg", chunk_size=30)
    convert_adc2021(path, tmp_path / "sig", label=1, process="z_as_signal")

    background = _read_all(tmp_path / "bkg")
    np.testing.assert_array_equal(background["particles"], z_events.arrays["particles"])
    np.testing.assert_array_equal(background["label"], z_events.arrays["label"])
    signal = next(iter_chunks(tmp_path / "sig", chunk_size=1000))
    assert (signal.arrays["label"] == 1).all()
    assert signal.attrs["process"] == "z_as_signal"


def _landscape_without_pz_199(shard: Shard, path) -> None:
    _landscape_frame(shard).drop(columns=["PZ_199"]).to_hdf(path, key="table")


def _landscape_with_nan(shard: Shard, path) -> None:
    frame = _landscape_frame(shard)
    frame.loc[5, "PX_0"] = np.nan
    frame.to_hdf(path, key="table")


def _landscape_under_other_key(shard: Shard, path) -> None:
    _landscape_frame(shard).to_hdf(path, key="jets")


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (_landscape_without_pz_199, r"1 columns missing \(first: \['PZ_199'\]\)"),
        (_landscape_with_nan, r"'constituents' has NaN or infinity \(first at row 5\)"),
        (_landscape_under_other_key, "no key 'table'"),
        (lambda shard, path: path.write_text("E_0,PX_0\n1,2\n"), "not a readable"),
    ],
)
def test_bad_landscape_files_name_the_problem(qcd_jets, tmp_path, write, message):
    path = tmp_path / "bad.h5"
    write(qcd_jets, path)
    with pytest.raises(BadDataFile, match=message) as error:
        convert_landscape(path, tmp_path / "out")
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("particles", "message"),
    [
        (lambda p: p[:, :, :3], r"shape \(100, 19, 3\), expected \(N, 19, 4\)"),
        (lambda p: np.where(np.arange(len(p))[:, None, None] == 42, np.nan, p), "row 42"),
    ],
)
def test_bad_adc2021_files_name_the_problem(z_events, tmp_path, particles, message):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["Particles"] = particles(z_events.arrays["particles"])
    with pytest.raises(BadDataFile, match=message) as error:
        convert_adc2021(path, tmp_path / "out", chunk_size=30)
    assert str(path) in str(error.value)


def test_adc2021_without_particles_or_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["Objects"] = np.zeros((3, 19, 4), np.float32)
    with pytest.raises(BadDataFile, match=r"no dataset 'Particles' \(found \['Objects'\]\)"):
        convert_adc2021(path, tmp_path / "out")
    with pytest.raises(BadDataFile, match="no such file"):
        convert_adc2021(tmp_path / "missing.h5", tmp_path / "out")
    assert not (tmp_path / "out").exists()
