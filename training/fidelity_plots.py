"""Figures of a generator evaluation, from the files ``generator_evaluation`` wrote
(matplotlib imported lazily):

- ``overlays.png``: per feature, generated against simulated (1/N dN/dx) with a ratio panel
  generated / simulated and its Poisson errors; the KS and W1/sigma in the legend;
- ``correlations.png``: the Spearman matrices of simulated and generated events side by side,
  and their difference;
- ``latent.png``: the encoder's means of simulated events against draws of the prior, per
  latent dimension and in the plane of the first two;
- ``roc.png``: background rejection against signal efficiency of every score, per signal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import require
from training.metrics import roc_curve

__all__ = ["make_fidelity_plots"]

_DPI = 100
_BINS = 40


def make_fidelity_plots(out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the PNGs of a generator evaluation in ``out_dir``; returns their paths."""
    require("matplotlib", "train")
    out = Path(out_dir)
    report = json.loads((out / "metrics.json").read_text())
    with np.load(out / "fidelity.npz") as npz:
        samples = {key: npz[key] for key in npz.files}
    with np.load(out / "scores.npz") as npz:
        scores = {key: npz[key] for key in npz.files}
    paths = [
        _overlays(report, samples, out / "overlays.png"),
        _correlations(report, out / "correlations.png"),
        _latent(samples, out / "latent.png"),
    ]
    if report["signals"]:
        paths.append(_roc(report, scores, out / "roc.png"))
    return paths


def _figure(width: float, height: float, *, layout: str | None = "constrained") -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _edges(reference: np.ndarray, discrete: bool) -> np.ndarray:
    if discrete:
        return np.arange(reference.min() - 0.5, reference.max() + 1.5)
    low, high = np.quantile(reference, [0.005, 0.995])
    if high <= low:
        high = low + 1.0
    return np.linspace(low, high, _BINS + 1)


def _overlays(report: dict[str, Any], samples: dict[str, np.ndarray], path: Path) -> Path:
    features = report["features"]
    columns = 6
    rows = -(-len(features) // columns)
    # a fixed layout: the constrained solver takes seconds on 36 axes
    fig = _figure(3.2 * columns, 3.4 * rows, layout=None)
    grid = fig.add_gridspec(
        2 * rows, columns, height_ratios=[3, 1] * rows, left=0.03, right=0.99, bottom=0.03,
        top=0.97, wspace=0.25, hspace=0.45,
    )  # fmt: skip
    for i, name in enumerate(features):
        row, column = divmod(i, columns)
        main = fig.add_subplot(grid[2 * row, column])
        ratio = fig.add_subplot(grid[2 * row + 1, column], sharex=main)
        entry = report["fidelity"]["features"][name]
        reference, generated = samples["reference"][:, i], samples["generated"][:, i]
        edges = _edges(reference, entry["discrete"])
        widths = np.diff(edges)
        counts = {}
        for label, values, style in (
            ("simulated", reference, {"color": "black"}),
            ("generated", generated, {"color": "tab:red"}),
        ):
            k, _ = np.histogram(values, edges)
            counts[label] = k
            main.stairs(k / len(values) / widths, edges, label=label, **style)
        main.set_title(
            f"{name}: KS {entry['ks']['value']:.3f}, W1/σ {entry['w1_over_std']['value']:.3f}",
            fontsize=8,
        )
        main.tick_params(labelbottom=False, labelsize=7)
        centres = 0.5 * (edges[1:] + edges[:-1])
        n_ref, n_gen = len(reference), len(generated)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (counts["generated"] / n_gen) / (counts["simulated"] / n_ref)
            error = value * np.sqrt(1 / counts["generated"] + 1 / counts["simulated"])
        shown = np.isfinite(value) & np.isfinite(error)
        ratio.errorbar(
            centres[shown], value[shown], yerr=error[shown], fmt=".", color="tab:red",
            markersize=3,
        )  # fmt: skip
        ratio.axhline(1.0, color="black", linewidth=0.8)
        ratio.set_ylim(0.5, 1.5)
        ratio.tick_params(labelsize=7)
        if i == 0:
            main.legend(fontsize=7)
            ratio.set_ylabel("gen / sim", fontsize=7)
    fig.savefig(path, dpi=_DPI)
    return path


def _correlations(report: dict[str, Any], path: Path) -> Path:
    spearman = report["fidelity"]["spearman"]
    reference, generated = np.array(spearman["reference"]), np.array(spearman["generated"])
    names = report["features"]
    fig = _figure(19, 6.2)
    axes = fig.subplots(1, 3)
    panels = (
        ("simulated", reference, "RdBu_r", 1.0),
        ("generated", generated, "RdBu_r", 1.0),
        (
            f"generated − simulated (max |Δ| {spearman['max_abs_difference']['value']:.3f})",
            generated - reference,
            "PuOr_r",
            max(0.05, float(np.abs(generated - reference).max())),
        ),
    )
    for ax, (title, matrix, cmap, limit) in zip(axes, panels, strict=True):
        image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit)
        ax.set_title(f"Spearman ρ: {title}", fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.savefig(path, dpi=_DPI)
    return path


def _latent(samples: dict[str, np.ndarray], path: Path) -> Path:
    latent, prior = samples["latent"], samples["prior"]
    dim = latent.shape[1]
    fig = _figure(3 * min(dim + 1, 9), 3.2)
    axes = fig.subplots(1, min(dim, 8) + 1, squeeze=False).ravel()
    for j, ax in enumerate(axes[:-1]):
        edges = np.linspace(-4, 4, 41)
        ax.hist(latent[:, j], edges, density=True, histtype="step", color="black",
                label="encoder μ (simulated)")  # fmt: skip
        ax.hist(prior[:, j], edges, density=True, histtype="step", color="tab:blue",
                label="prior")  # fmt: skip
        ax.set_title(f"z{j}", fontsize=8)
        if j == 0:
            ax.legend(fontsize=6)
    ax = axes[-1]
    if dim >= 2:
        ax.scatter(prior[:2000, 0], prior[:2000, 1], s=1, alpha=0.3, color="tab:blue")
        ax.scatter(latent[:2000, 0], latent[:2000, 1], s=1, alpha=0.3, color="black")
        ax.set_xlabel("z0")
        ax.set_ylabel("z1")
        ax.set_title("μ (black) and prior (blue)", fontsize=8)
    fig.savefig(path, dpi=_DPI)
    return path


def _roc(report: dict[str, Any], scores: dict[str, np.ndarray], path: Path) -> Path:
    signals = list(report["signals"])
    fig = _figure(5 * len(signals), 4)
    axes = np.atleast_1d(fig.subplots(1, len(signals)))
    for ax, signal in zip(axes, signals, strict=True):
        for score, metrics in report["signals"][signal]["scores"].items():
            curve = roc_curve(scores[f"background/{score}"], scores[f"signal/{signal}/{score}"])
            keep = curve.background_efficiency > 0
            ax.plot(
                curve.signal_efficiency[keep],
                1 / curve.background_efficiency[keep],
                label=f"{score} (AUC {metrics['auc']['value']:.3f})",
            )
        grid = np.linspace(0.01, 1, 100)
        ax.plot(grid, 1 / grid, "k--", linewidth=0.8, label="random")
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency ε_S")
        ax.set_ylabel("background rejection 1/ε_B")
        ax.set_title(signal)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=_DPI)
    return path
