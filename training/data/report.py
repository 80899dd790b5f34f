"""What a physicist checks first in one or more samples: sizes, efficiencies, cross sections,
key distributions, and each sample's content hash.

Each directory is a sample; each process in it gets one curve, so ``make_report([qcd, top])``
overlays both. Jets: jet pT, jet mass, soft-drop mass, τ32, constituent and image-pixel counts.
Events: MET, leading-lepton and leading-jet pT (of the events that have one), and the electron,
muon and jet multiplicities of the 19-row format. Feature tables (the Z-gamma sample): m_ll,
m_llg, pT of the Z-gamma system, MET and the jet count.

Streaming: shards are read chunk by chunk into histograms on a fine fixed grid (1 GeV bins,
say, over a range no real sample leaves; entries beyond it are counted as overflow), so a
million jets need no more memory than one chunk. The plotted range and binning are chosen
afterwards from those fine counts: the 0.1%-99.9% quantiles of every curve (the occupied
range for counts), rebinned to about 40 bins. Each curve is drawn as 1/N dN/dx with N all its
entries of that quantity, in the axis range or not, with Poisson error bars sqrt(k)/(N dx).

Efficiencies come from the shard attributes, not from Pythia's phase-space try count (which
also counts points rejected by the phase-space sampler): per process,
ε = Σ n / Σ n_events_generated over its shards, with the binomial error sqrt(ε(1-ε)/N); σ is
the n_events_generated-weighted mean of the shards' ``cross_section_pb`` (the process before
any veto and selection) and σ×ε is the cross section of what the sample holds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from training.data.shards import hash_sample, iter_chunks, shard_files, shard_info
from training.errors import BadDataFile, NaeError

__all__ = ["Measurement", "ProcessSummary", "Quantity", "SampleReport", "make_report"]

Arrays = dict[str, np.ndarray]
_CHUNK_SIZE = 20_000
_E_ROWS, _MU_ROWS, _JET_ROWS = slice(1, 5), slice(5, 9), slice(9, 19)  # ADC2021 row layout
_QUANTILES = (0.001, 0.999)  # plotted range of a continuous quantity: these of every curve
_PLOT_BINS = 40  # about this many bins are drawn; fine bins are merged to get there
_MARGIN = 0.05  # of the plotted range, added on each side


class Measurement(NamedTuple):
    """A value and its standard uncertainty; both NaN where the shards do not say."""

    value: float
    error: float


@dataclass(frozen=True)
class Quantity:
    """One histogrammed quantity: name, symbol and unit for the axes, its fine grid, and how to
    compute it from a chunk's ``datasets``. ``count`` marks integers (multiplicities), whose
    bins are centred on whole numbers and whose range is the occupied one."""

    name: str
    symbol: str
    unit: str
    edges: np.ndarray
    datasets: tuple[str, ...]
    values: Callable[[Arrays], np.ndarray]
    count: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name


def _grid(high: float, width: float) -> np.ndarray:
    return np.linspace(0.0, high, round(high / width) + 1)


def _integers(high: int) -> np.ndarray:
    return np.arange(-0.5, high + 1)


def _present(pt: np.ndarray) -> np.ndarray:
    """Only the events that have the object: an empty row of the 19-row format has pT 0, and a
    spike at 0 would hide the spectrum."""
    return pt[pt > 0]


def _multiplicity(rows: slice) -> Callable[[Arrays], np.ndarray]:
    return lambda a: (a["particles"][:, rows, 0] > 0).sum(axis=1)


JET_QUANTITIES = (
    Quantity("jet pT", "pT", "GeV", _grid(3000, 1), ("jet",), lambda a: a["jet"][:, 0]),
    Quantity("jet mass", "m", "GeV", _grid(1000, 1), ("jet",), lambda a: a["jet"][:, 3]),
    Quantity(
        "soft-drop mass",
        "m_SD",
        "GeV",
        _grid(1000, 1),
        ("features/msd",),
        lambda a: a["features/msd"],
    ),
    Quantity(
        "τ32", "τ32", "", _grid(1.5, 0.005), ("features/tau32",), lambda a: a["features/tau32"]
    ),
    Quantity(
        "constituents",
        "n",
        "",
        _integers(200),
        ("constituents",),
        lambda a: (a["constituents"][:, :, 0] > 0).sum(axis=1),
        count=True,
    ),
    Quantity(
        "image pixels > 0",
        "n",
        "",
        _integers(1600),
        ("images",),
        lambda a: (a["images"] > 0).sum(axis=(1, 2)),
        count=True,
    ),
)
EVENT_QUANTITIES = (
    Quantity(
        "MET", "MET", "GeV", _grid(3000, 1), ("particles",), lambda a: a["particles"][:, 0, 0]
    ),
    Quantity(
        "leading lepton pT",
        "pT",
        "GeV",
        _grid(3000, 1),
        ("particles",),
        lambda a: _present(np.maximum(a["particles"][:, 1, 0], a["particles"][:, 5, 0])),
    ),
    Quantity(
        "leading jet pT",
        "pT",
        "GeV",
        _grid(3000, 1),
        ("particles",),
        lambda a: _present(a["particles"][:, 9, 0]),
    ),
    Quantity("electrons", "n", "", _integers(4), ("particles",), _multiplicity(_E_ROWS), True),
    Quantity("muons", "n", "", _integers(4), ("particles",), _multiplicity(_MU_ROWS), True),
    Quantity("jets", "n", "", _integers(10), ("particles",), _multiplicity(_JET_ROWS), True),
)


def _feature(name: str) -> Callable[[Arrays], np.ndarray]:
    return lambda a: a[f"features/{name}"]


TABLE_QUANTITIES = (
    Quantity("m_ll", "m_ll", "GeV", _grid(3000, 1), ("features/m_ll",), _feature("m_ll")),
    Quantity("m_llγ", "m_llγ", "GeV", _grid(5000, 1), ("features/m_llg",), _feature("m_llg")),
    Quantity("pT_llγ", "pT", "GeV", _grid(3000, 1), ("features/pt_llg",), _feature("pt_llg")),
    Quantity("MET", "MET", "GeV", _grid(3000, 1), ("features/met",), _feature("met")),
    Quantity("jets", "n", "", _integers(20), ("features/n_jets",), _feature("n_jets"), True),
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
    """One process of one directory: sizes, efficiency, cross section, histograms.

    ``counts`` per quantity has one bin per fine bin plus an underflow (first) and an overflow
    (last) bin. ``n_generated`` sums ``n_events_generated`` over the shards that record it
    (converted public files do not); ``sigma_weighted_pb`` sums σ_i × n_events_generated_i.
    """

    directory: Path
    process: str
    n_shards: int = 0
    n: int = 0
    n_signal: int = 0
    n_selected: int = 0  # rows of the shards that record n_events_generated
    n_generated: int = 0
    sigma_weighted_pb: float = 0.0
    n_generated_with_sigma: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    moments: dict[str, _Moments] = field(default_factory=dict)

    @property
    def efficiency(self) -> Measurement:
        """Selection (jets) or filter (events) efficiency: Σ n / Σ n_events_generated."""
        if not self.n_generated:
            return Measurement(math.nan, math.nan)
        eff = self.n_selected / self.n_generated
        return Measurement(eff, math.sqrt(eff * (1 - eff) / self.n_generated))

    @property
    def cross_section_pb(self) -> float:
        """Pythia's cross section of the process before veto and selection, averaged over
        shards weighted by events generated; NaN for converted files, which carry none."""
        if not self.n_generated_with_sigma:
            return math.nan
        return self.sigma_weighted_pb / self.n_generated_with_sigma

    @property
    def selected_cross_section_pb(self) -> Measurement:
        """σ × ε, with the binomial error of ε (Pythia's own σ error is not stored)."""
        eff = self.efficiency
        return Measurement(self.cross_section_pb * eff.value, self.cross_section_pb * eff.error)


@dataclass
class SampleReport:
    """The report of one or more directories: kind, quantities, one summary per curve
    (keyed by its legend label), each directory's ``hash_sample`` and the PNG's path."""

    directories: tuple[Path, ...]
    kind: str
    quantities: tuple[Quantity, ...]
    curves: dict[str, ProcessSummary]
    hashes: dict[Path, str]
    png_path: Path

    def sample_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows of the sample table, formatted for printing."""
        eff = "ε selection" if self.kind == "jets" else "ε filter"
        header = ["sample", "shards", "n", "label=1", "n generated", eff, "σ [pb]", "σ×ε [pb]"]
        rows = [
            [
                label,
                str(p.n_shards),
                str(p.n),
                str(p.n_signal),
                str(p.n_generated) if p.n_generated else "n/a",
                _format(p.efficiency),
                _format(Measurement(p.cross_section_pb, math.nan)),
                _format(p.selected_cross_section_pb),
            ]
            for label, p in self.curves.items()
        ]
        return header, rows

    def distribution_rows(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows (quantity, sample, mean, std) of the distribution table."""
        rows = [
            [q.label, label, f"{p.moments[q.name].mean:.4g}", f"{p.moments[q.name].std:.4g}"]
            for q in self.quantities
            for label, p in self.curves.items()
        ]
        return ["quantity", "sample", "mean", "std"], rows


def make_report(
    directories: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    png_path: str | os.PathLike[str] | None = None,
) -> SampleReport:
    """Summarise every shard under ``directories`` and save the histograms as a PNG (default
    ``report.png`` in the directories' common parent: ``DIR/report.png`` for one directory)."""
    if isinstance(directories, str | os.PathLike):
        directories = [directories]
    dirs = tuple(Path(d) for d in directories)
    if len({d.resolve() for d in dirs}) < len(dirs):
        raise NaeError(f"a directory is given twice in {', '.join(map(str, dirs))}")
    files = {d: shard_files(d) for d in dirs}
    kinds = {shard_info(path).kind for paths in files.values() for path in paths}
    if len(kinds) > 1:
        where = ", ".join(map(str, dirs))
        named = " and ".join(k.removesuffix("s") for k in ("jets", "events", "table") if k in kinds)
        raise BadDataFile(f"{where}: mixes {named} shards; report them separately")
    kind = kinds.pop()
    quantities = {"jets": JET_QUANTITIES, "events": EVENT_QUANTITIES, "table": TABLE_QUANTITIES}[
        kind
    ]
    summaries: dict[tuple[Path, str], ProcessSummary] = {}
    for directory, paths in files.items():
        for path in paths:
            _add_shard(directory, path, quantities, summaries)
    report = SampleReport(
        dirs,
        kind,
        quantities,
        _labelled(summaries),
        {d: hash_sample(paths) for d, paths in files.items()},
        Path(png_path) if png_path is not None else _default_png(dirs),
    )
    _plot(report)
    return report


def _default_png(dirs: tuple[Path, ...]) -> Path:
    """``report.png`` in the common parent; absolute only if relative and absolute paths mix."""
    mixed = len({d.is_absolute() for d in dirs}) > 1
    return (
        Path(os.path.commonpath([str(d.absolute() if mixed else d) for d in dirs])) / "report.png"
    )


def _labelled(summaries: dict[tuple[Path, str], ProcessSummary]) -> dict[str, ProcessSummary]:
    """Legend labels: the process name where that is unique, else ``directory: process``."""
    processes = [process for _, process in summaries]
    unique = len(set(processes)) == len(processes)
    return {
        (process if unique else f"{directory}: {process}"): summary
        for (directory, process), summary in summaries.items()
    }


def _add_shard(
    directory: Path,
    path: Path,
    quantities: tuple[Quantity, ...],
    summaries: dict[tuple[Path, str], ProcessSummary],
) -> None:
    info = shard_info(path)
    process = str(info.attrs.get("process", "?"))
    if (directory, process) not in summaries:
        summaries[directory, process] = ProcessSummary(
            directory,
            process,
            counts={q.name: np.zeros(len(q.edges) + 1, np.int64) for q in quantities},
            moments={q.name: _Moments() for q in quantities},
        )
    summary = summaries[directory, process]
    summary.n_shards += 1
    n_generated = int(info.attrs.get("n_events_generated", 0))
    if n_generated:
        summary.n_selected += info.n
        summary.n_generated += n_generated
        sigma = float(info.attrs.get("cross_section_pb", math.nan))
        if math.isfinite(sigma):
            summary.sigma_weighted_pb += sigma * n_generated
            summary.n_generated_with_sigma += n_generated
    datasets = sorted({d for q in quantities for d in q.datasets})
    for chunk in iter_chunks([path], chunk_size=_CHUNK_SIZE, datasets=datasets):
        summary.n += len(chunk)
        summary.n_signal += int((chunk.arrays["label"] == 1).sum())
        for q in quantities:
            values = q.values(chunk.arrays)
            summary.moments[q.name].add(values)
            # searchsorted puts values below the grid in bin 0 and above it in the last bin
            bins = np.searchsorted(q.edges, values, side="right")
            bins[values == q.edges[-1]] = len(q.edges) - 1  # the grid's last edge is inside
            summary.counts[q.name] += np.bincount(bins, minlength=len(q.edges) + 1)


class _Binning(NamedTuple):
    """The plotted bins of one quantity: the fine bins ``first..last`` merged ``merge`` at a
    time (``last - first`` is a multiple of ``merge``)."""

    first: int
    last: int
    merge: int


def _binning(q: Quantity, fine_counts: list[np.ndarray]) -> _Binning:
    """Range from every curve's quantiles (occupied bins for counts), plus a margin; then as
    many fine bins merged as keep about ``_PLOT_BINS`` bins."""
    n_fine = len(q.edges) - 1
    lows, highs = [], []
    for counts in fine_counts:
        inside = counts[1:-1]
        if not inside.any():
            continue
        if q.count:
            occupied = np.flatnonzero(inside)
            lows.append(occupied[0])
            highs.append(occupied[-1] + 1)
        else:
            cumulative = np.cumsum(inside) / inside.sum()
            lows.append(int(np.searchsorted(cumulative, _QUANTILES[0], side="right")))
            highs.append(int(np.searchsorted(cumulative, _QUANTILES[1])) + 1)
    if not lows:
        return _Binning(0, n_fine, max(1, math.ceil(n_fine / _PLOT_BINS)))
    first, last = min(lows), max(highs)
    if not q.count:
        margin = math.ceil(_MARGIN * (last - first))
        first, last = max(0, first - margin), min(n_fine, last + margin)
    merge = max(1, math.ceil((last - first) / _PLOT_BINS))
    last = first + merge * math.ceil((last - first) / merge)
    if last > n_fine:  # the grid's end: shift the bins left, or drop the incomplete one
        first = max(0, first - (last - n_fine))
        last = first + merge * ((n_fine - first) // merge)
    return _Binning(first, last, merge)


def _plot(report: SampleReport) -> None:
    """One panel per quantity, one 1/N dN/dx step histogram with error bars per curve, one
    legend for the figure (Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n_cols = 3
    n_rows = math.ceil(len(report.quantities) / n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(5 * n_cols, 3.8 * n_rows + 0.8),
        squeeze=False,
        layout="constrained",
    )
    for ax, q in zip(axes.flat, report.quantities, strict=False):
        binning = _binning(q, [p.counts[q.name] for p in report.curves.values()])
        edges = q.edges[binning.first : binning.last + 1 : binning.merge]
        width = np.diff(edges)
        for i, (label, p) in enumerate(report.curves.items()):
            fine = p.counts[q.name][1 + binning.first : 1 + binning.last]
            counts = fine.reshape(-1, binning.merge).sum(axis=1)
            n = max(int(p.counts[q.name].sum()), 1)
            color = f"C{i}"
            ax.stairs(
                counts / n / width, edges, color=color, label=f"{label} ({p.n} {report.kind})"
            )
            ax.errorbar(
                0.5 * (edges[:-1] + edges[1:]),
                counts / n / width,
                yerr=np.sqrt(counts) / n / width,
                fmt="none",
                ecolor=color,
                elinewidth=1,
            )
        ax.set_xlim(edges[0], edges[-1])
        if q.count:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.set_xlabel(q.label)
        ax.set_ylabel(_density_label(q))
    for ax in axes.flat[len(report.quantities) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 4),
        title="N: a sample's entries, in the axis range or not; error bars: Poisson",
        title_fontsize="small",
    )
    fig.suptitle(f"{', '.join(map(str, report.directories))} ({report.kind})")
    try:
        report.png_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(report.png_path, dpi=100)
    except OSError as exc:
        raise NaeError(f"cannot write {report.png_path} ({exc}); choose another --out") from exc
    finally:
        plt.close(fig)


def _density_label(q: Quantity) -> str:
    per = f" [1/{q.unit}]" if q.unit else ""
    return f"1/N dN/d{q.symbol}{per}"


def _format(m: Measurement) -> str:
    """``0.4335 ± 0.0073``: the error to two significant digits and the value to the same
    decimal place; ``(2.46 ± 0.05)e-06`` outside 0.001..10^6."""
    if not math.isfinite(m.value):
        return "n/a"
    if not (math.isfinite(m.error) and m.error > 0):
        return f"{m.value:.4g}"
    if m.value != 0 and not 1e-3 <= abs(m.value) < 1e6:
        exponent = math.floor(math.log10(abs(m.value)))
        scale = 10.0**exponent
        return f"({_format(Measurement(m.value / scale, m.error / scale))})e{exponent:+03d}"
    decimals = max(0, 1 - math.floor(math.log10(m.error)))
    return f"{m.value:.{decimals}f} ± {m.error:.{decimals}f}"
