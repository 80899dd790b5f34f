"""The headline study's tables (docs/results.md) from the runs' own evaluation files.

Reads ``runs/<recipe>-seed<S>/evaluation/best/metrics.json`` (``nae evaluate RUN``) and, where
present, ``runs/<recipe>-seed<S>/evaluation/checkpoints.json`` (``--all-checkpoints``); prints
one markdown table per recipe group and writes every number to ``benchmarks/results/study.json``.
Nothing is typed in: a run that was not evaluated is listed as missing.

Per recipe and signal: the AUC of each score as the mean over seeds with the spread (the
sample standard deviation of the seeds; with one seed, the DeLong error of that run), 1/eps_B at
eps_S = 0.2 and 0.3 and TPR at FPR = 1e-3 (mean over seeds), and the sample sizes. For NAEs:
the selected checkpoint's AUC minus the best checkpoint's, per seed.

    python -m benchmarks.study --runs runs
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

GROUPS = {
    "events-sm": "events on the SM mix",
    "jets-qcd-features": "QCD jet substructure features",
    "jets-qcd-image": "QCD jet images",
    "jets-top-image": "top jet images",
}
_RESULTS = Path(__file__).parent / "results" / "study.json"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _runs(root: Path, group: str) -> dict[str, dict[int, Path]]:
    """recipe -> seed -> run directory, for the runs of one group."""
    found: dict[str, dict[int, Path]] = {}
    for run in sorted(root.glob(f"{group}-*-seed*")):
        recipe, _, seed = run.name.rpartition("-seed")
        if seed.isdigit():
            found.setdefault(recipe, {})[int(seed)] = run
    return found


def _value(entry: dict[str, Any] | None) -> float | None:
    return None if entry is None else entry.get("value")


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present and len(present) == len(values) else None


def summarise_recipe(seeds: dict[int, Path]) -> dict[str, Any]:
    """Mean and spread over the seeds of one recipe, per signal and score."""
    metrics = {
        seed: _load(run / "evaluation" / "best" / "metrics.json") for seed, run in seeds.items()
    }
    evaluated = {seed: m for seed, m in metrics.items() if m is not None}
    summary: dict[str, Any] = {
        "seeds": sorted(evaluated),
        "missing": sorted(set(seeds) - set(evaluated)),
        "signals": {},
    }
    if not evaluated:
        return summary
    first = next(iter(evaluated.values()))
    summary["n_background"] = first["background"]["n"]
    summary["background"] = first["background"]["path"]
    summary["default_score"] = first["default_score"]
    summary["selected_steps"] = {seed: m["step"] for seed, m in evaluated.items()}
    for signal, record in first["signals"].items():
        per_score: dict[str, Any] = {}
        for score in record["scores"]:
            rows = [m["signals"][signal]["scores"][score] for m in evaluated.values()]
            aucs = [row["auc"]["value"] for row in rows]
            spread = statistics.stdev(aucs) if len(aucs) > 1 else rows[0]["auc"]["error"]
            per_score[score] = {
                "auc": statistics.fmean(aucs),
                "auc_spread": spread,
                "auc_spread_kind": "std over seeds" if len(aucs) > 1 else "DeLong error",
                "auc_per_seed": aucs,
                "rejection_at_eff_0.2": _mean([_value(r["rejection_at_eff_0.2"]) for r in rows]),
                "rejection_at_eff_0.3": _mean([_value(r["rejection_at_eff_0.3"]) for r in rows]),
                "tpr_at_fpr_0.001": _mean([_value(r["tpr_at_fpr_0.001"]) for r in rows]),
            }
        summary["signals"][signal] = {"n": record["n"], "scores": per_score}
    gaps = {}
    for seed, run in seeds.items():
        table = _load(run / "evaluation" / "checkpoints.json")
        if table is not None:
            gaps[seed] = {
                signal: {
                    "selected_minus_best": best["selected_minus_best"],
                    "best_checkpoint": best["checkpoint"],
                }
                for signal, best in table["best_auc"].items()
            }
    summary["selection_gap"] = gaps
    return summary


def _number(value: float | None, digits: int) -> str:
    """``digits`` significant figures: TPRs at 1e-3 can be 0.0016."""
    return "n/a" if value is None else f"{value:.{digits}g}"


def markdown(group: str, recipes: dict[str, dict[str, Any]]) -> str:
    """One table: a row per recipe and score, a column block per signal."""
    signals = sorted({s for r in recipes.values() for s in r["signals"]})
    head = "| model | seeds | " + " | ".join(
        f"{s} AUC | {s} 1/eps_B(0.2) | {s} TPR(1e-3)" for s in signals
    )
    lines = [f"**{GROUPS[group]}**", "", head + " |", "|" + "---|" * (2 + 3 * len(signals))]
    for recipe, summary in recipes.items():
        if not summary["signals"]:
            lines.append(f"| `{recipe}` | not evaluated |" + " |" * (3 * len(signals)))
            continue
        scores = next(iter(summary["signals"].values()))["scores"]
        for score in scores:
            label = f"`{recipe}`" + (f" ({score})" if len(scores) > 1 else "")
            cells = []
            for signal in signals:
                entry = summary["signals"].get(signal, {}).get("scores", {}).get(score)
                if entry is None:
                    cells += ["n/a"] * 3
                    continue
                cells += [
                    f"{entry['auc']:.3f} ± {entry['auc_spread']:.3f}",
                    _number(entry["rejection_at_eff_0.2"], 3),
                    _number(entry["tpr_at_fpr_0.001"], 2),
                ]
            lines.append(f"| {label} | {len(summary['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the runs directory")
    parser.add_argument("--out", type=Path, default=_RESULTS, help="JSON output")
    args = parser.parse_args()
    everything: dict[str, Any] = {}
    for group in GROUPS:
        recipes = {
            recipe: summarise_recipe(seeds) for recipe, seeds in _runs(args.runs, group).items()
        }
        if recipes:
            everything[group] = recipes
            print(markdown(group, recipes) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(everything, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
