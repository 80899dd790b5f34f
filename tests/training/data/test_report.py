"""The shard report: numbers that match the shards, one curve per directory and process,
efficiencies from the shard attributes, plot ranges that follow the data, a real PNG."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.data.report import JET_QUANTITIES, Measurement, _binning, _format, make_report
from training.data.shards import Shard, hash_sample, write_shard
from training.errors import BadDataFile, NaeError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _halves(shard: Shard) -> tuple[Shard, Shard]:
    """Two shards of one sample, with different cross sections and efficiencies, as two seeds
    would give."""
    n = len(shard) // 2
    first = Shard({k: v[:n] for k, v in shard.arrays.items()}, dict(shard.attrs))
    second = Shard({k: v[n:] for k, v in shard.arrays.items()}, dict(shard.attrs))
    first.attrs["n_events_generated"] = 10 * n
    second.attrs["n_events_generated"] = 30 * (len(shard) - n)
    second.attrs["cross_section_pb"] = 2 * shard.attrs["cross_section_pb"]
    return first, second


@pytest.mark.pythia
def test_jet_report_matches_the_shards(qcd_jets, top_jets, tmp_path):
    first, second = _halves(qcd_jets)
    write_shard(tmp_path / "qcd_0.h5", first)
    write_shard(tmp_path / "qcd_1.h5", second)
    write_shard(tmp_path / "top_0.h5", top_jets)

    report = make_report(tmp_path, png_path=tmp_path / "plots" / "report.png")

    assert report.kind == "jets"
    qcd, top = report.curves["qcd"], report.curves["top"]
    assert (qcd.n_shards, qcd.n, top.n) == (2, len(qcd_jets), len(top_jets))
    assert top.n_signal == int(top_jets.arrays["label"].sum())
    # ε = Σ n / Σ n_events_generated; σ weighted by n_events_generated; σ×ε their product.
    n_generated = first.attrs["n_events_generated"] + second.attrs["n_events_generated"]
    eff = len(qcd_jets) / n_generated
    assert qcd.efficiency.value == pytest.approx(eff)
    assert qcd.efficiency.error == pytest.approx(math.sqrt(eff * (1 - eff) / n_generated))
    sigma = qcd_jets.attrs["cross_section_pb"]
    weights = (first.attrs["n_events_generated"], second.attrs["n_events_generated"])
    assert qcd.cross_section_pb == pytest.approx(np.average([sigma, 2 * sigma], weights=weights))
    assert qcd.selected_cross_section_pb.value == pytest.approx(qcd.cross_section_pb * eff)
    assert top.efficiency.value == pytest.approx(top_jets.attrs["selection_efficiency"])
    assert qcd.moments["jet mass"].mean == pytest.approx(
        qcd_jets.arrays["jet"][:, 3].astype(np.float64).mean(), rel=1e-6
    )
    occupancy = (top_jets.arrays["images"] > 0).sum(axis=(1, 2))
    assert top.moments["image pixels > 0"].std == pytest.approx(occupancy.std())
    assert all(counts.sum() == len(qcd_jets) for counts in qcd.counts.values())
    _, rows = report.sample_rows()
    assert [row[0] for row in rows] == ["qcd", "top"]
    assert report.hashes == {tmp_path: hash_sample(tmp_path)}
    assert report.png_path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.pythia
def test_directories_overlay_and_same_processes_are_told_apart(z_events, tmp_path):
    write_shard(tmp_path / "train" / "z.h5", z_events)
    write_shard(tmp_path / "test" / "z.h5", z_events)

    report = make_report([tmp_path / "train", tmp_path / "test"])

    assert list(report.curves) == [f"{tmp_path / 'train'}: z", f"{tmp_path / 'test'}: z"]
    assert report.png_path == tmp_path / "report.png"  # the common parent
    particles = z_events.arrays["particles"]
    z = report.curves[f"{tmp_path / 'test'}: z"]
    assert z.moments["muons"].mean == pytest.approx((particles[:, 5:9, 0] > 0).sum(1).mean())
    assert z.moments["MET"].mean == pytest.approx(particles[:, 0, 0].mean(), rel=1e-6)
    assert z.efficiency.value == pytest.approx(z_events.attrs["filter_efficiency"])
    assert report.png_path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(NaeError, match=r"cannot write .*report\.png .*choose another --out"):
        make_report(tmp_path / "test", png_path=tmp_path / "report.png" / "report.png")


def test_plot_range_follows_the_data_and_keeps_the_tails_of_every_curve():
    jet_pt = JET_QUANTITIES[0]  # 1 GeV bins over 0-3000 GeV
    narrow = np.zeros(len(jet_pt.edges) + 1, np.int64)
    narrow[1 + 550 : 1 + 650] = 100  # 550-650 GeV, flat
    wide = np.zeros_like(narrow)
    wide[1 + 400 : 1 + 900] = 100

    only_narrow = _binning(jet_pt, [narrow])
    both = _binning(jet_pt, [narrow, wide])

    edges = jet_pt.edges
    assert 540 <= edges[only_narrow.first] <= 550 and 650 <= edges[only_narrow.last] <= 665
    assert 370 <= edges[both.first] <= 400 and 900 <= edges[both.last] <= 940
    for binning in (only_narrow, both):
        assert (binning.last - binning.first) % binning.merge == 0
        assert 20 <= (binning.last - binning.first) // binning.merge <= 40


def test_counts_show_their_whole_occupied_range():
    constituents = JET_QUANTITIES[4]  # integers 0..200
    counts = np.zeros(len(constituents.edges) + 1, np.int64)
    counts[1 + np.array([12, 40, 97])] = [1, 500, 1]  # rare values at both ends stay visible

    binning = _binning(constituents, [counts])

    assert constituents.edges[binning.first] <= 11.5
    assert constituents.edges[binning.last] >= 97.5


@pytest.mark.pythia
def test_report_refuses_empty_and_mixed_directories(qcd_jets, z_events, tmp_path):
    with pytest.raises(BadDataFile, match="no shard files"):
        make_report(tmp_path)
    write_shard(tmp_path / "a.h5", qcd_jets)
    write_shard(tmp_path / "b.h5", z_events)
    with pytest.raises(BadDataFile, match="mixes jet and event shards"):
        make_report(tmp_path)
    write_shard(tmp_path / "z" / "z.h5", z_events)
    with pytest.raises(BadDataFile, match="mixes jet and event shards"):
        make_report([tmp_path / "z", tmp_path])
    with pytest.raises(NaeError, match="given twice"):
        make_report([tmp_path / "z", tmp_path / "z" / ".." / "z"])


@pytest.mark.parametrize(
    ("value", "error", "text"),
    [
        (0.4335, 0.0073, "0.4335 ± 0.0073"),
        (0.3272, 0.006, "0.3272 ± 0.0060"),
        (15101.0, 280.0, "15101 ± 280"),
        (2.46e-6, 5e-8, "(2.460 ± 0.050)e-06"),
        (4766.0, math.nan, "4766"),
        (math.nan, math.nan, "n/a"),
    ],
)
def test_measurements_print_to_the_precision_of_their_error(value, error, text):
    assert _format(Measurement(value, error)) == text
