"""The shard report: numbers that match the shards, one curve per process, a real PNG."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.report import make_report
from training.data.shards import Shard, write_shard
from training.errors import BadDataFile

pytestmark = pytest.mark.pythia

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _halves(shard: Shard) -> tuple[Shard, Shard]:
    """Two shards of one sample, with different cross sections, as two seeds would give."""
    n = len(shard) // 2
    first = Shard({k: v[:n] for k, v in shard.arrays.items()}, dict(shard.attrs))
    second = Shard({k: v[n:] for k, v in shard.arrays.items()}, dict(shard.attrs))
    second.attrs["cross_section_pb"] = 2 * shard.attrs["cross_section_pb"]
    second.attrs["n_tried"] = 3 * shard.attrs["n_tried"]
    return first, second


def test_jet_report_matches_the_shards(qcd_jets, top_jets, tmp_path):
    first, second = _halves(qcd_jets)
    write_shard(tmp_path / "qcd_0.h5", first)
    write_shard(tmp_path / "qcd_1.h5", second)
    write_shard(tmp_path / "top_0.h5", top_jets)

    report = make_report(tmp_path, png_path=tmp_path / "plots" / "report.png")

    assert report.kind == "jets"
    qcd, top = report.processes["qcd"], report.processes["top"]
    assert (qcd.n_shards, qcd.n, top.n) == (2, len(qcd_jets), len(top_jets))
    assert top.n_signal == int(top_jets.arrays["label"].sum())
    sigma = qcd_jets.attrs["cross_section_pb"]
    assert qcd.cross_section_pb == pytest.approx((sigma + 2 * sigma * 3) / 4)
    assert qcd.moments["jet mass [GeV]"].mean == pytest.approx(
        qcd_jets.arrays["jet"][:, 3].astype(np.float64).mean(), rel=1e-6
    )
    occupancy = (top_jets.arrays["images"] > 0).sum(axis=(1, 2))
    assert top.moments["image occupancy [pixels > 0]"].std == pytest.approx(occupancy.std())
    assert all(counts.sum() == len(qcd_jets) for counts in qcd.counts.values())
    _, rows = report.sample_rows()
    assert [row[0] for row in rows] == ["qcd", "top"]
    assert report.png_path.read_bytes()[:8] == PNG_MAGIC


def test_event_report_counts_objects(z_events, tmp_path):
    write_shard(tmp_path / "z.h5", z_events)

    report = make_report(tmp_path)

    particles = z_events.arrays["particles"]
    z = report.processes["z"]
    assert z.moments["muons"].mean == pytest.approx((particles[:, 5:9, 0] > 0).sum(1).mean())
    assert z.moments["MET [GeV]"].mean == pytest.approx(particles[:, 0, 0].mean(), rel=1e-6)
    assert report.png_path == tmp_path / "report.png"
    assert report.png_path.read_bytes()[:8] == PNG_MAGIC


def test_report_refuses_empty_and_mixed_directories(qcd_jets, z_events, tmp_path):
    with pytest.raises(BadDataFile, match="no shard files"):
        make_report(tmp_path)
    write_shard(tmp_path / "a.h5", qcd_jets)
    write_shard(tmp_path / "b.h5", z_events)
    with pytest.raises(BadDataFile, match="mixes jet and event shards"):
        make_report(tmp_path)
