"""``nae evaluate``: score a run's checkpoint on background and signal samples and write the
metrics JSON (and, through ``plots``, the figures).

Per signal and per score of the model (a VAE has three): AUC; background rejection 1/eps_B at
signal efficiencies 0.2 and 0.3; signal efficiency (TPR) at background efficiencies (FPR) 1e-3,
1e-4 and 1e-5, each only where the background allows it (``metrics.fpr_reachable``: at least
10 background events above the threshold). Uncertainties, from ``training.metrics``: DeLong's
standard error for the AUC, exact Clopper-Pearson 68.27% intervals on the binomial counts for
the efficiencies and rejections. A rejection with no background event passing has no value
(``null``), only its lower limit ``low``.

``evaluate_checkpoints`` scores every per-epoch and per-interval checkpoint of a run, to put the
signal-agnostic selection (``best.pt``) next to the best checkpoint a signal would have chosen;
for an NAE also what each rule of ``train.selection`` would have chosen (``selection.replay``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from training.checkpoint import BEST, list_checkpoints, load_model
from training.config import RunConfig
from training.data.loaders import load_inputs
from training.errors import NaeError
from training.metrics import (
    Estimate,
    fpr_reachable,
    min_events_for_efficiency,
    rejection_at_signal_efficiency,
    roc_auc,
    tpr_at_fpr,
)
from training.models.families import Model
from training.selection import RULES, replay

__all__ = [
    "FALSE_POSITIVE_RATES",
    "SIGNAL_EFFICIENCIES",
    "EvaluationSummary",
    "evaluate_checkpoints",
    "evaluate_run",
    "score_inputs",
    "separation_metrics",
]

SIGNAL_EFFICIENCIES = (0.2, 0.3)
FALSE_POSITIVE_RATES = (1e-3, 1e-4, 1e-5)
UNCERTAINTIES = (
    "auc: DeLong standard error; rejection and tpr: Clopper-Pearson 68.27% interval on the "
    "binomial count at the threshold (the threshold itself taken as fixed)"
)
_SCORE_BATCH = 4096


class EvaluationSummary(NamedTuple):
    """Where the metrics went and the headline numbers: ``auc[signal][score]``."""

    out_dir: Path
    checkpoint: str
    n_background: int
    auc: dict[str, dict[str, float]]


def score_inputs(model: Model, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every score of ``model`` on raw inputs ``x`` (N, *input_shape), batched, no grad."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for chunk in x.split(_SCORE_BATCH):
            for name, values in model.scores(chunk).items():
                parts.setdefault(name, []).append(values.numpy())
    return {name: np.concatenate(values) for name, values in parts.items()}


def separation_metrics(background: np.ndarray, signal: np.ndarray) -> dict[str, Any]:
    """The metrics of one score: ``auc``, ``rejection_at_eff_S``, ``tpr_at_fpr_F``, each an
    ``{value, error, low, high}`` dict, or ``null`` with the events it would need."""
    result: dict[str, Any] = {"auc": _estimate(roc_auc(background, signal))}
    for eff in SIGNAL_EFFICIENCIES:
        estimate = rejection_at_signal_efficiency(background, signal, eff)
        result[f"rejection_at_eff_{eff:g}"] = _estimate(estimate)
    for fpr in FALSE_POSITIVE_RATES:
        key = f"tpr_at_fpr_{fpr:g}"
        if fpr_reachable(len(background), fpr):
            result[key] = _estimate(tpr_at_fpr(background, signal, fpr))
        else:
            result[key] = {"value": None, "needs_background": min_events_for_efficiency(fpr)}
    return result


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    background: str | os.PathLike[str] | None = None,
    signals: Mapping[str, str | os.PathLike[str]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    checkpoint: str = BEST,
    max_events: int = 0,
    plots: bool = True,
) -> EvaluationSummary:
    """Score checkpoint ``checkpoint`` of ``run_dir`` and write ``metrics.json``,
    ``scores.npz``, ``samples.npz`` (when the checkpoint holds negative samples) and the PNGs
    of ``plots`` to ``out_dir`` (default ``run_dir/evaluation/<checkpoint>``). Background and
    signals default to the run config's ``data.background`` and ``data.signals``."""
    run_dir = Path(run_dir)
    model, config, stored = load_model(run_dir, checkpoint)
    background, signals = _samples(config, background, signals)
    out = Path(out_dir) if out_dir is not None else run_dir / "evaluation" / Path(checkpoint).stem
    out.mkdir(parents=True, exist_ok=True)
    load = _loader(config, max_events)
    background_scores = score_inputs(model, load(background))
    n_background = len(next(iter(background_scores.values())))
    arrays = {f"background/{name}": values for name, values in background_scores.items()}
    report: dict[str, Any] = {
        "run": str(run_dir),
        "checkpoint": str(checkpoint),
        "stage": stored["stage"],
        "step": stored["step"],
        "selection_metric": stored["metric"],
        "default_score": model.default_score,
        "uncertainties": UNCERTAINTIES,
        "background": {"path": str(background), "n": n_background},
        "signals": {},
    }
    auc: dict[str, dict[str, float]] = {}
    for name, path in signals.items():
        signal_scores = score_inputs(model, load(path))
        metrics = {
            score: separation_metrics(background_scores[score], values)
            for score, values in signal_scores.items()
        }
        n_signal = len(next(iter(signal_scores.values())))
        report["signals"][name] = {"path": str(path), "n": n_signal, "scores": metrics}
        auc[name] = {score: m["auc"]["value"] for score, m in metrics.items()}
        arrays.update({f"signal/{name}/{score}": v for score, v in signal_scores.items()})
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    np.savez_compressed(out / "scores.npz", **arrays)
    if stored.get("samples") is not None:
        samples = {key: value.numpy() for key, value in stored["samples"].items()}
        np.savez_compressed(out / "samples.npz", **samples)
    if plots:
        from training.plots import make_plots

        make_plots(out, run_dir=run_dir)
    return EvaluationSummary(out, str(checkpoint), n_background, auc)


def evaluate_checkpoints(
    run_dir: str | os.PathLike[str],
    *,
    background: str | os.PathLike[str] | None = None,
    signals: Mapping[str, str | os.PathLike[str]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    max_events: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The AUC of the default score for every checkpoint of the run, against the selected one.

    Writes ``checkpoints.json``: per checkpoint its stage, step, selection metric and AUC per
    signal; ``selected`` (best.pt's step and AUCs) and ``best_auc`` per signal (the checkpoint a
    signal-aware choice would take), and their difference; for an NAE, ``rules``: per rule of
    ``train.selection`` the checkpoint it picks from the stored EMDs and energies, and its AUCs
    minus the best's, whichever rule the run was trained with."""
    run_dir = Path(run_dir)
    names = list_checkpoints(run_dir)
    if not names:
        raise NaeError(f"{run_dir}: no per-epoch or per-interval checkpoints to compare")
    _, config, _ = load_model(run_dir, names[0])
    background, signals = _samples(config, background, signals)
    load = _loader(config, max_events)
    x_background = load(background)
    x_signals = {name: load(path) for name, path in signals.items()}
    rows = []
    for name in [*names, BEST]:
        model, _, stored = load_model(run_dir, name)
        b = score_inputs(model, x_background)[model.default_score]
        aucs = {
            signal: roc_auc(b, score_inputs(model, x)[model.default_score]).value
            for signal, x in x_signals.items()
        }
        rows.append(
            {
                "checkpoint": name,
                "stage": stored["stage"],
                "step": stored["step"],
                "metric": stored["metric"],
                "auc": aucs,
            }
        )
        if progress is not None:
            progress(1)
    selected = rows.pop()
    stage = selected["stage"]
    candidates = [row for row in rows if row["stage"] == stage]
    best_auc = {
        signal: max(candidates, key=lambda row, s=signal: row["auc"][s]) for signal in x_signals
    }
    table = {
        "run": str(run_dir),
        "selected": selected,
        "best_auc": {
            signal: {
                "checkpoint": row["checkpoint"],
                "step": row["step"],
                "auc": row["auc"][signal],
                "selected_minus_best": selected["auc"][signal] - row["auc"][signal],
            }
            for signal, row in best_auc.items()
        },
        "checkpoints": rows,
    }
    if stage == "nae":
        table["rules"] = _rules(candidates, table["best_auc"], config.train.emd_tolerance)
    out = Path(out_dir) if out_dir is not None else run_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints.json").write_text(json.dumps(table, indent=2) + "\n")
    return table


def _rules(
    rows: list[dict[str, Any]], best_auc: dict[str, dict[str, Any]], tolerance: float
) -> dict[str, Any]:
    """Per selection rule: the NAE checkpoint it ends on over ``rows`` (in training order) and
    its AUCs minus the best's; a rule whose inputs the checkpoints lack is left out."""
    by_step = {row["step"]: row for row in rows}
    chosen = {}
    for rule in RULES:
        try:
            step = replay(rule, [(row["step"], row["metric"]) for row in rows], tolerance)
        except KeyError:  # a checkpoint written before the rule's metric was stored
            continue
        if step in by_step:
            row = by_step[step]
            chosen[rule] = {
                "checkpoint": row["checkpoint"],
                "step": step,
                "auc": row["auc"],
                "minus_best": {s: row["auc"][s] - best["auc"] for s, best in best_auc.items()},
            }
    return chosen


def _samples(
    config: RunConfig,
    background: str | os.PathLike[str] | None,
    signals: Mapping[str, str | os.PathLike[str]] | None,
) -> tuple[str | os.PathLike[str], Mapping[str, str | os.PathLike[str]]]:
    background = background or config.data.background
    signals = signals or config.data.signals
    if not background or not signals:
        raise NaeError(
            "give --background DATA and at least one --signal NAME=DATA (the run's config "
            "names no data.background / data.signals)"
        )
    return background, signals


def _loader(config: RunConfig, max_events: int) -> Callable[[Any], torch.Tensor]:
    """Reads one sample's inputs the way the run's model takes them."""

    def load(path: str | os.PathLike[str]) -> torch.Tensor:
        data = config.data
        return load_inputs([path], input=data.input, features=data.features, max_events=max_events)

    return load


def _estimate(estimate: Estimate) -> dict[str, float | None]:
    """An ``Estimate`` as JSON: non-finite numbers (no event passing) become null."""
    return {key: (float(v) if math.isfinite(v) else None) for key, v in estimate._asdict().items()}
