"""The ``nae data`` verbs through the installed console script, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from training.data.shards import hash_sample, iter_chunks, read_shard


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def z_dir(tmp_path_factory, nae) -> Path:
    out = tmp_path_factory.mktemp("z")
    _ok(nae("data", "events", "--process", "z", "--n", 3, "--shard-size", 2, "--out", out))
    return out


@pytest.mark.parametrize(
    ("verb", "words"),
    [
        ("jets", ["--process", "--workers", "--shard-size", "--detector", "--set", "--r-inv"]),
        ("events", ["--process", "--no-lepton-filter", "--set", "--dask", "--shard-index"]),
        ("convert", ["FORMAT", "landscape", "adc2021", "--label"]),
        ("report", ["DIR...", "--out"]),
        ("hash", ["DIR", "sha256"]),
        ("zgamma", ["--process", "zgamma", "h_zgamma", "--mass", "--set", "18 features"]),
    ],
)
def test_every_data_verb_explains_itself(verb, words, nae):
    text = _ok(nae("data", verb, "--help"))
    assert all(word in text for word in words)


@pytest.mark.pythia
def test_events_report_and_adc2021_conversion(z_dir, tmp_path, nae):
    assert sorted(p.name for p in z_dir.glob("*.h5")) == ["z_seed1_00000.h5", "z_seed1_00001.h5"]
    particles = np.concatenate([c.arrays["particles"] for c in iter_chunks(z_dir, chunk_size=9)])

    text = _ok(nae("data", "report", z_dir, "--out", tmp_path / "z.png"))
    assert "leading lepton pT" in text and "ε filter" in text
    assert (tmp_path / "z.png").stat().st_size > 0
    digest = hash_sample(z_dir)
    assert _ok(nae("data", "hash", z_dir)) == f"{digest}  {z_dir}\n"
    assert f"sha256 {digest}  {z_dir}" in text

    adc = tmp_path / "adc.h5"
    with h5py.File(adc, "w") as f:
        f["Particles"] = particles
    _ok(nae("data", "convert", "adc2021", adc, tmp_path / "out", "--label", 1))
    converted = read_shard(tmp_path / "out" / "adc_00000.h5")
    np.testing.assert_array_equal(converted.arrays["particles"], particles)
    assert (converted.arrays["label"] == 1).all()


@pytest.mark.pythia
def test_jets_with_a_detector_override_and_landscape_conversion(tmp_path, nae):
    jets = ["data", "jets", "--process", "qcd", "--n", 2, "--out", tmp_path / "qcd"]
    _ok(nae(*jets, "--set", "detector.hcal_cell_eta=0.1", "--pt-power", 0.5))
    shard = read_shard(tmp_path / "qcd" / "qcd_seed1_00000.h5")
    config = json.loads(shard.attrs["settings"])["config"]
    assert (config["detector"]["hcal_cell_eta"], config["image"]["pt_power"]) == (0.1, 0.5)

    columns = [f"{c}_{i}" for i in range(200) for c in ("E", "PX", "PY", "PZ")]
    frame = pd.DataFrame(shard.arrays["constituents"].reshape(2, 800), columns=columns)
    frame["is_signal_new"] = shard.arrays["label"]
    frame.to_hdf(tmp_path / "landscape.h5", key="table")
    _ok(nae("data", "convert", "landscape", tmp_path / "landscape.h5", tmp_path / "out"))
    converted = read_shard(tmp_path / "out" / "landscape_00000.h5")
    np.testing.assert_array_equal(converted.arrays["constituents"], shard.arrays["constituents"])


_Z_EVENTS = ["data", "events", "--process", "z", "--n", 5, "--out"]


def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "jets.csv"
    path.write_text("E_0,PX_0\n1,2\n")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda d: ["data", "convert", "adc2021", d / "missing.h5", d / "o"], "no such file"),
        (lambda d: ["data", "convert", "landscape", _text_file(d), d / "o"], "not a readable"),
        (
            lambda d: ["data", "jets", "--process", "qcd", "--n", 0, "--out", d],
            "Invalid value for '--n'",
        ),
        (lambda d: ["data", "jets", "--process", "bogus", "--n", 5, "--out", d], "'bogus'"),
        (lambda d: [*_Z_EVENTS, d, "--set", "detector.bogus=1"], "--set 'detector.bogus=1'"),
        (lambda d: ["data", "report", d], "no shard files"),
        (lambda d: [*_Z_EVENTS, d, "--shard-index", 2, "--n-shards", 2], "not in 0..1"),
        (lambda d: [*_Z_EVENTS, d, "--shard-index", 0, "--n-shards", 0], "at least 1, got 0"),
        (lambda d: [*_Z_EVENTS, d, "--shard-index", 1], "go together"),
        (
            lambda d: [
                "data",
                "zgamma",
                "--process",
                "zgamma",
                "--n",
                5,
                "--out",
                d,
                "--set",
                "lepton_pt_min_gev=[10, 20]",
            ],
            "leading >= subleading",
        ),
        (lambda d: ["generate", d, "--n", 5, "--out", d / "g"], "no such checkpoint"),
        (
            lambda d: [*_Z_EVENTS, d, "--dask", "tcp://127.0.0.1:8786", "--workers", 2],
            "workers=2 (local processes) cannot be combined with a Dask cluster",
        ),
    ],
)
def test_bad_input_gives_one_error_line_and_a_failing_exit_code(tmp_path, args, message, nae):
    result = nae(*args(tmp_path))

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
