"""The VAE-family study's tables (docs/results-vae.md) from its finished runs.

Reads every ``RUNS/<recipe>-seed<S>/`` (and ``RUNS/<recipe>-inject<F>-seed<S>/``) with a
``summary.json`` and an ``evaluation/best/metrics.json`` (``make vae-study`` writes both) and
prints markdown tables: per recipe the mean and the spread (half the max - min over seeds) of

- fidelity: the largest per-feature KS over the continuous features (and which), how many
  continuous features reach KS <= 0.02, the Spearman max |Delta| and Frobenius norm, the
  classifier two-sample AUC, each against the issue's target and by how much it misses;
- speed: generated events per CPU second and the ratio to Pythia + detector;
- classification: the AUC and 1/eps_B at eps_S = 0.3 of every score against the signal;
- cost: training CPU seconds and per epoch;

and the injected runs' classification. Also writes the numbers as JSON (``--out``).

    .venv/bin/python -m benchmarks.vae_study runs/vae --out benchmarks/results/vae_study.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {"max_ks": 0.02, "spearman_max": 0.05, "c2st_auc": 0.60, "speedup": 1000.0}
_RUN = re.compile(r"^(?P<recipe>.+?)(?:-inject(?P<fraction>[0-9.e-]+))?-seed(?P<seed>\d+)$")


def run_numbers(run: Path) -> dict[str, Any]:
    """The headline numbers of one evaluated run."""
    report = json.loads((run / "evaluation" / "best" / "metrics.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    fidelity = report["fidelity"]
    continuous = {n: m for n, m in fidelity["features"].items() if not m["discrete"]}
    worst = max(continuous, key=lambda n: continuous[n]["ks"]["value"])
    numbers: dict[str, Any] = {
        "max_ks": continuous[worst]["ks"]["value"],
        "max_ks_feature": worst,
        "n_ks_pass": sum(m["ks"]["value"] <= TARGETS["max_ks"] for m in continuous.values()),
        "n_continuous": len(continuous),
        "ks_null_95": next(iter(continuous.values()))["ks_null_95"],
        "spearman_max": fidelity["spearman"]["max_abs_difference"]["value"],
        "spearman_frobenius": fidelity["spearman"]["frobenius"]["value"],
        "c2st_auc": fidelity["classifier_two_sample"]["auc"]["value"],
        "generated_per_cpu_s": report["speed"]["generated_per_cpu_second"],
        "speedup": report["speed"]["speedup"] or float("nan"),
        "n_reference": fidelity["n_reference"],
        "train_cpu_s": summary["cpu_seconds"],
        "cpu_s_per_epoch": float(np.median([e["cpu_seconds"] for e in epochs])),
        "selected_epoch": summary["selected_step"],
        "classification": {},
    }
    for signal, entry in report["signals"].items():
        for score, metrics in entry["scores"].items():
            rejection = metrics["rejection_at_eff_0.3"]
            numbers["classification"][f"{signal}/{score}"] = {
                "auc": metrics["auc"]["value"],
                "rejection_at_eff_0.3": rejection["value"] if rejection["value"] else np.nan,
            }
    return numbers


def _mean_spread(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "n/a"
    mean = float(np.mean(values))
    spread = (max(values) - min(values)) / 2
    return f"{mean:.4g} ± {spread:.2g}" if len(values) > 1 else f"{mean:.4g}"


def tables(runs: dict[tuple[str, str | None], list[dict[str, Any]]]) -> str:
    lines = ["### Generation fidelity and speed (mean ± half range over seeds)", ""]
    lines.append(
        "| recipe | seeds | max KS (continuous) [target 0.02] | features KS ≤ 0.02 | "
        "Spearman max Δ [0.05] | Spearman ‖Δ‖F | classifier AUC [0.60] | events / CPU s | "
        "× Pythia + detector [1000] |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for (recipe, fraction), numbers in sorted(runs.items(), key=lambda item: str(item[0])):
        if fraction is not None:
            continue
        worst = {n["max_ks_feature"] for n in numbers}
        lines.append(
            f"| {recipe} | {len(numbers)} | {_mean_spread([n['max_ks'] for n in numbers])} "
            f"({', '.join(sorted(worst))}) | "
            f"{_mean_spread([n['n_ks_pass'] for n in numbers])} of {numbers[0]['n_continuous']} | "
            f"{_mean_spread([n['spearman_max'] for n in numbers])} | "
            f"{_mean_spread([n['spearman_frobenius'] for n in numbers])} | "
            f"{_mean_spread([n['c2st_auc'] for n in numbers])} | "
            f"{_mean_spread([n['generated_per_cpu_s'] for n in numbers])} | "
            f"{_mean_spread([n['speedup'] for n in numbers])} |"
        )
    lines += ["", "### Classification (AUC; 1/ε_B at ε_S = 0.3), mean ± half range", ""]
    keys = sorted({k for ns in runs.values() for n in ns for k in n["classification"]})
    lines.append("| recipe | injected | " + " | ".join(keys) + " |")
    lines.append("|---|---|" + "---|" * len(keys))
    for (recipe, fraction), numbers in sorted(runs.items(), key=lambda item: str(item[0])):
        cells = []
        for key in keys:
            aucs = [n["classification"].get(key, {}).get("auc") for n in numbers]
            rejections = [
                n["classification"].get(key, {}).get("rejection_at_eff_0.3") for n in numbers
            ]
            cells.append(f"{_mean_spread(aucs)}; {_mean_spread(rejections)}")
        lines.append(f"| {recipe} | {fraction or '0'} | " + " | ".join(cells) + " |")
    lines += ["", "### Training cost", ""]
    lines.append("| recipe | injected | CPU s per epoch | training CPU s | selected epoch |")
    lines.append("|---|---|---|---|---|")
    for (recipe, fraction), numbers in sorted(runs.items(), key=lambda item: str(item[0])):
        lines.append(
            f"| {recipe} | {fraction or '0'} | "
            f"{_mean_spread([n['cpu_s_per_epoch'] for n in numbers])} | "
            f"{_mean_spread([n['train_cpu_s'] for n in numbers])} | "
            f"{_mean_spread([n['selected_epoch'] for n in numbers])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="directory of the study's run directories")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON here")
    args = parser.parse_args()
    runs: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for run in sorted(args.runs.iterdir()):
        match = _RUN.match(run.name)
        if not match or not (run / "evaluation" / "best" / "metrics.json").is_file():
            continue
        runs[(match["recipe"], match["fraction"])].append(run_numbers(run))
    if not runs:
        raise SystemExit(f"{args.runs}: no evaluated runs (<recipe>-seed<S>/evaluation/best)")
    print(tables(runs))
    if args.out:
        flat = {
            f"{recipe}|{fraction or 0}": numbers for (recipe, fraction), numbers in runs.items()
        }
        args.out.write_text(json.dumps({"targets": TARGETS, "runs": flat}, indent=2) + "\n")


if __name__ == "__main__":
    main()
