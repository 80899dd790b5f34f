"""Figures of an evaluation, from the files ``evaluate`` wrote (matplotlib imported lazily).

``make_plots(out_dir, run_dir=...)`` writes, from ``metrics.json``, ``scores.npz``,
``samples.npz`` and the run's ``metrics.jsonl``:

- ``roc.png``: background rejection 1/eps_B against signal efficiency eps_S, log y, one curve per
  signal (the form of arXiv:2206.14225's ROC figures), random tagging (1/eps_S) dashed;
- ``scores.png``: score distributions of the background and each signal, log y;
- ``negatives.png``: the negative samples of the checkpoint against validation data, in the
  network's (preprocessed) inputs: per feature; mean images for images; per column over filled
  slots for events;
- ``training.png``: the training curves (AE: losses per epoch; NAE: E+, E- and the EMD per
  interval), the selected checkpoint marked.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import require
from training.metrics import roc_curve

__all__ = ["make_plots"]

_DPI = 110


def make_plots(out_dir: str | os.PathLike[str], *, run_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the PNGs of an evaluation in ``out_dir``; returns their paths."""
    require("matplotlib", "train")
    out, run = Path(out_dir), Path(run_dir)
    report = json.loads((out / "metrics.json").read_text())
    config = tomllib.loads((run / "config.toml").read_text())
    with np.load(out / "scores.npz") as npz:
        scores = {key: npz[key] for key in npz.files}
    paths = [
        _plot_roc(report, scores, out / "roc.png"),
        _plot_scores(report, scores, out / "scores.png"),
        _plot_training(run, report, out / "training.png"),
    ]
    if (out / "samples.npz").is_file():
        with np.load(out / "samples.npz") as npz:
            positive, negative = npz["positive"], npz["negative"]
        paths.append(_plot_negatives(config, positive, negative, out / "negatives.png"))
    return paths


def _figure(n_panels: int = 1, *, width: float = 5.0, height: float = 4.0) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    columns = min(n_panels, 4)
    rows = -(-n_panels // columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def _plot_roc(report: dict[str, Any], scores: dict[str, np.ndarray], path: Path) -> Path:
    """One curve per signal and score (a VAE has three: solid, dashed, dotted)."""
    fig, (ax,) = _figure()
    default = report["default_score"]
    others = {s for info in report["signals"].values() for s in info["scores"]} - {default}
    names = [default, *sorted(others)]
    styles = dict(zip(names, ("-", "--", ":", "-."), strict=False))
    for i, (name, info) in enumerate(report["signals"].items()):
        for score in names:
            curve = roc_curve(scores[f"background/{score}"], scores[f"signal/{name}/{score}"])
            keep = curve.background_efficiency > 0
            auc = info["scores"][score]["auc"]["value"]
            label = f"{name} (AUC {auc:.3f})" if len(names) == 1 else f"{name}, {score} ({auc:.3f})"
            ax.plot(
                curve.signal_efficiency[keep],
                1.0 / curve.background_efficiency[keep],
                ls=styles[score],
                color=f"C{i}",
                label=label,
            )
    grid = np.linspace(0.01, 1.0, 100)
    ax.plot(grid, 1.0 / grid, "k--", lw=0.8, label="random")
    ax.set(
        xlabel=r"signal efficiency $\epsilon_S$",
        ylabel=r"background rejection $1/\epsilon_B$",
        yscale="log",
        xlim=(0, 1),
        title=str(report["checkpoint"]),
    )
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=_DPI)
    return path


def _plot_scores(report: dict[str, Any], scores: dict[str, np.ndarray], path: Path) -> Path:
    fig, (ax,) = _figure()
    score = report["default_score"]
    samples = {"background": scores[f"background/{score}"]}
    samples.update({name: scores[f"signal/{name}/{score}"] for name in report["signals"]})
    everything = np.concatenate(list(samples.values()))
    positive = bool((everything > 0).all())
    if positive:
        bins = np.geomspace(everything.min(), everything.max(), 60)
    else:
        bins = np.linspace(everything.min(), everything.max(), 60)
    for name, values in samples.items():
        ax.hist(values, bins=bins, histtype="step", density=True, label=name, lw=1.4)
    ax.set(
        xlabel=f"score ({score})",
        ylabel="density",
        yscale="log",
        xscale="log" if positive else "linear",
    )
    ax.legend()
    fig.savefig(path, dpi=_DPI)
    return path


def _plot_training(run: Path, report: dict[str, Any], path: Path) -> Path:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary_file = run / "summary.json"
    selected = (
        json.loads(summary_file.read_text())["selected_step"] if summary_file.is_file() else None
    )
    stages = [s for s in ("ae", "nae") if any(line["stage"] == s for line in lines)]
    fig, axes = _figure(max(1, len(stages)), width=6.0)
    for ax, stage in zip(axes, stages, strict=False):
        rows = [line for line in lines if line["stage"] == stage]
        steps = [row["step"] for row in rows]
        if stage == "ae":
            ax.plot(steps, [row["train_loss"] for row in rows], label="training loss")
            ax.plot(steps, [row["validation_loss"] for row in rows], label="validation loss")
            ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="AE pre-training")
        else:
            ax.plot(steps, [row["e_pos"] for row in rows], label=r"$E^+$")
            ax.plot(steps, [row["e_neg"] for row in rows], label=r"$E^-$")
            ax.set(xlabel="NAE iteration", ylabel="energy", title="NAE")
            emd = ax.twinx()
            emd.plot(steps, [row["emd"] for row in rows], "k:", label="EMD")
            emd.set_ylabel("EMD(data, negatives)")
            emd.legend(loc="upper right")
        is_selected_stage = stage == ("nae" if "nae" in stages else "ae")
        if selected is not None and is_selected_stage and report["checkpoint"] == "best":
            ax.axvline(selected, color="tab:red", ls="--", label=f"selected ({selected})")
        ax.legend(loc="upper left")
    fig.savefig(path, dpi=_DPI)
    return path


def _plot_negatives(
    config: dict[str, Any], positive: np.ndarray, negative: np.ndarray, path: Path
) -> Path:
    kind = config["data"]["input"]
    if kind == "images":
        fig, axes = _figure(2)
        for ax, (label, values) in zip(
            axes, (("data", positive), ("negatives", negative)), strict=True
        ):
            image = ax.imshow(np.log10(values.mean(axis=0) + 1e-8), origin="lower", cmap="viridis")
            ax.set(title=f"mean {label} image (log10)", xlabel="x pixel", ylabel="y pixel")
            fig.colorbar(image, ax=ax)
    else:
        if kind == "features":
            names = list(config["data"]["features"])
            columns = [(name, positive[:, i], negative[:, i]) for i, name in enumerate(names)]
        else:  # events: each column over the filled slots of each set
            columns = [
                (
                    name,
                    positive[..., i][positive[..., 0] > 0],
                    negative[..., i][negative[..., 0] > 0],
                )
                for i, name in enumerate(("scaled pT", "scaled eta", "scaled phi"))
            ]
        fig, axes = _figure(len(columns), width=3.5, height=3.0)
        for ax, (name, data, model) in zip(axes, columns, strict=False):
            low, high = np.percentile(np.concatenate([data, model]), [0.5, 99.5])
            bins = np.linspace(low, high + 1e-9, 40)
            ax.hist(data, bins=bins, histtype="step", density=True, label="data")
            ax.hist(model, bins=bins, histtype="step", density=True, label="negatives")
            ax.set(xlabel=f"{name} (preprocessed)")
        axes[0].legend()
    fig.savefig(path, dpi=_DPI)
    return path
