"""A quick look at a directory of shards: sample size, cross section, key distributions.

The shards are streamed chunk by chunk into fixed-binning histograms (values beyond the range
land in the last bin), so a report of a million jets needs no more memory than one chunk. Each
process in the directory gets its own curve, so a directory holding QCD and top jets shows both.

Jets: jet mass, soft-drop mass, τ32 and image occupancy (pixels above zero). Events: MET,
leading-lepton pT, and the electron, muon and jet multiplicities of the 19-row format.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.data.shards import iter_chunks, shard_files, shard_info
from training.errors import BadDataFile

__all__ = ["Quantity", "SampleReport", "make_report"]

Arrays = dict[str, np.ndarray]
_CHUNK_SIZE = 20_000
_E_ROWS, _MU_ROWS, _JET_ROWS = slice(1, 5), slice(5, 9), slice(9, 19)  # ADC2021 row layout


@dataclass(frozen=True)
class Quantity:
    """One histogrammed quantity: label with unit, bin edges, and how to compute it."""

    label: str
    edges: np.ndarray
    datasets: tuple[str, ...]
    values: Callable[[Arrays], np.ndarray]


def _multiplicity(rows: slice) -> Callable[[Arrays], np.ndarray]:
    return lambda a: (a["particles"][:, rows, 0] > 0).sum(axis=1)


JET_QUANTITIES = (
    Quantity("jet mass [GeV]", np.linspace(0, 300, 61), ("jet",), lambda a: a["jet"][:, 3]),
    Quantity(
        "soft-drop mass [GeV]",
        np.linspace(0, 300, 61),
        ("features/msd",),
        lambda a: a["features/msd"],
    ),
    Quantity("τ32", np.linspace(0, 1.2, 49), ("features/tau32",), lambda a: a["features/tau32"]),
    Quantity(
        "image occupancy [pixels > 0]",
        np.linspace(0, 200, 51),
        ("images",),
        lambda a: (a["images"] > 0).sum(axis=(1, 2)),
    ),
)
EVENT_QUANTITIES = (
    Quantity(
        "MET [GeV]", np.linspace(0, 500, 51), ("particles",), lambda a: a["particles"][:, 0, 0]
    ),
    Quantity(
        "leading lepton pT [GeV]",
        np.linspace(0, 500, 51),
        ("particles",),
        lambda a: np.maximum(a["particles"][:, 1, 0], a["particles"][:, 5, 0]),
    ),
    Quantity("electrons", np.arange(-0.5, 5), ("particles",), _multiplicity(_E_ROWS)),
    Quantity("muons", np.arange(-0.5, 5), ("particles",), _multiplicity(_MU_ROWS)),
    Quantity("jets", np.arange(-0.5, 11), ("particles",), _multiplicity(_JET_ROWS)),
)


@dataclass
class _Moments:
    """Running count, sum and sum of squares: mean and std without keeping the values."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def add(self, values: np.ndarray) -> None:
        values = values.astype(np.float64)
        self.n += len(values)
        self.total += float(values.sum())
        self.total_sq += float((values**2).sum())

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(max(self.total_sq / self.n - self.mean**2, 0.0)) if self.n else math.nan


@dataclass
class ProcessSummary:
    """One process of the directory: sizes, Pythia's cross section, and histograms."""

    process: str
    n_shards: int = 0
    n: int = 0
    n_signal: int = 0
    n_tried: int = 0
    sigma_weighted_pb: float = 0.0  # sum of cross_section_pb * n_tried over shards that have one
    n_tried_with_sigma: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    moments: dict[str, _Moments] = field(default_factory=dict)

    @property
    def cross_section_pb(self) -> float:
        """Pythia's cross-section estimate, averaged over shards weighted by events tried;
        NaN for converted files, which carry none."""
        if not self.n_tried_with_sigma:
            return math.nan
        return self.sigma_weighted_pb / self.n_tried_with_sigma


@dataclass
class SampleReport:
    """The report of one directory: its kind, the quantities and one summary per process."""

    directory: Path
    kind: str
    quantities: tuple[Quantity, ...]
    processes: dict[str, ProcessSummary]
    png_path: Path

    def sample_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the sample table, formatted for printing."""
        header = ["process", "shards", "n", "label=1", "n tried", "σ [pb]", "n / n tried"]
        rows = [
            [
                p.process,
                str(p.n_shards),
                str(p.n),
                str(p.n_signal),
                str(p.n_tried),
                f"{p.cross_section_pb:.4g}",
                f"{p.n / p.n_tried:.3g}" if p.n_tried else "nan",
            ]
            for p in self.processes.values()
        ]
        return header, rows

    def distribution_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows (quantity, process, mean, std) of the distribution table."""
        rows = [
            [q.label, p.process, f"{p.moments[q.label].mean:.4g}", f"{p.moments[q.label].std:.4g}"]
            for q in self.quantities
            for p in self.processes.values()
        ]
        return ["quantity", "process", "mean", "std"], rows


def make_report(
    directory: str | os.PathLike[str], *, png_path: str | os.PathLike[str] | None = None
) -> SampleReport:
    """Summarise every shard under ``directory`` and save the histograms as a PNG
    (default ``<directory>/report.png``)."""
    directory = Path(directory)
    files = shard_files(directory)
    kinds = {shard_info(path).kind for path in files}
    if len(kinds) > 1:
        raise BadDataFile(f"{directory}: mixes jet and event shards; report them separately")
    kind = kinds.pop()
    quantities = JET_QUANTITIES if kind == "jets" else EVENT_QUANTITIES
    processes: dict[str, ProcessSummary] = {}
    for path in files:
        _add_shard(path, quantities, processes)
    report = SampleReport(
        directory, kind, quantities, processes, Path(png_path or directory / "report.png")
    )
    _plot(report)
    return report


def _add_shard(
    path: Path, quantities: tuple[Quantity, ...], processes: dict[str, ProcessSummary]
) -> None:
    info = shard_info(path)
    name = str(info.attrs.get("process", "?"))
    if name not in processes:
        processes[name] = ProcessSummary(
            name,
            counts={q.label: np.zeros(len(q.edges) - 1, np.int64) for q in quantities},
            moments={q.label: _Moments() for q in quantities},
        )
    summary = processes[name]
    summary.n_shards += 1
    n_tried = int(info.attrs.get("n_tried", 0))
    summary.n_tried += n_tried
    sigma = float(info.attrs.get("cross_section_pb", math.nan))
    if math.isfinite(sigma):
        summary.sigma_weighted_pb += sigma * n_tried
        summary.n_tried_with_sigma += n_tried
    datasets = sorted({d for q in quantities for d in q.datasets})
    for chunk in iter_chunks([path], chunk_size=_CHUNK_SIZE, datasets=datasets):
        summary.n += len(chunk)
        summary.n_signal += int((chunk.arrays["label"] == 1).sum())
        for q in quantities:
            values = q.values(chunk.arrays)
            summary.moments[q.label].add(values)
            clipped = np.clip(values, q.edges[0], q.edges[-1])
            summary.counts[q.label] += np.histogram(clipped, q.edges)[0]


def _plot(report: SampleReport) -> None:
    """One panel per quantity, one unit-area step histogram per process (Agg: no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = 2 if len(report.quantities) <= 4 else 3
    n_rows = math.ceil(len(report.quantities) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5 * n_cols, 3.6 * n_rows), squeeze=False)
    for ax, q in zip(axes.flat, report.quantities, strict=False):
        for p in report.processes.values():
            counts = p.counts[q.label]
            density = counts / max(counts.sum(), 1) / np.diff(q.edges)
            ax.stairs(density, q.edges, label=f"{p.process} (n={p.n})")
        ax.set_xlabel(q.label)
        ax.set_ylabel("fraction per unit")
        ax.legend(fontsize="small")
    for ax in axes.flat[len(report.quantities) :]:
        ax.set_visible(False)
    fig.suptitle(f"{report.directory} ({report.kind})")
    fig.tight_layout()
    report.png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(report.png_path, dpi=100)
    plt.close(fig)
