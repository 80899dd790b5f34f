"""Model cards: one markdown page per shipped bundle, written from what the bundle and its run
recorded, never typed by hand (``nae bundle card``, ``nae bundle cards``).

A card says what a bundle is and how far to trust it: the training, calibration and signal
samples with their content hashes; the metrics per signal with their uncertainties (the run's
``metrics.json`` from ``nae evaluate`` where it is found, and the export's own, computed by
ONNX Runtime on the calibration sample); the working points with thresholds and Clopper-Pearson
intervals on efficiency and rate; the int8 gate (speed at batch 1, 256 and 4096, Spearman, AUC
change, efficiencies at the fp32 and the int8 model's own thresholds, shipped or not and why);
the files and their size on disk; the commands that rebuild it; and, where a fresh background
sample of the calibration process is at hand (``data/fresh/<process>``, ``make fresh-samples``,
or ``--fresh``), the fraction of it passing each working point through the service's runtime,
judged by ``training.calibration.check_rate``.

The bundle is checked first with the service's loader (``training.bundles.verify_bundle``): a
card never describes files other than those the service would serve. The commands come from
the bundle's provenance (``export_run`` records them); for a bundle exported before they were
recorded they are rebuilt from its other fields, and the card says so. A ``metrics.json`` of
another checkpoint than the exported one is refused rather than quoted.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from service.bundle import BUNDLE_FILE, Bundle
from training.bundles import verify_bundle
from training.errors import BadBundle, NaeError

__all__ = ["BUNDLE_TABLE_BEGIN", "BUNDLE_TABLE_END", "Card", "bundle_card", "write_cards"]

BUNDLE_TABLE_BEGIN = "<!-- bundle table: written by `nae bundle cards`; do not edit by hand -->"
BUNDLE_TABLE_END = "<!-- end of bundle table -->"
_DYNAMIC_NOTE = [
    "Dynamic quantization takes each batch's activation ranges at run time, so an event's "
    "int8 score depends on the events batched with it; the numbers below are for the "
    "export's batches (up to 4096 events).",
    "",
]
_KINDS = {
    "jet-image": "jet images",
    "jet-features": "jet substructure features",
    "event": "events",
    "event-features": "per-event feature rows",
}
# How the metrics section opens when it quotes a run, and the fresh check table's column:
# written by _metrics and _fresh, looked for by _keep_old in a card already on disk.
_FROM_METRICS = "From `nae evaluate`"
_FRESH_TABLE = "fresh passing / events"


class Card(NamedTuple):
    """A bundle's card: its ``markdown``, the ``metrics_path`` it quotes (``None``: only the
    export's metrics), the ``fresh_path`` it checked the working points on (``None``: none
    found) and the index ``row`` of ``write_cards``' table."""

    bundle: Bundle
    markdown: str
    metrics_path: Path | None
    fresh_path: Path | None
    row: dict[str, str]


def bundle_card(
    directory: str | Path,
    *,
    metrics: str | Path | None = None,
    fresh: str | Path | None = None,
    root: str | Path = ".",
) -> Card:
    """The card of the bundle in ``directory``. ``metrics`` is the run's ``metrics.json``
    (default: ``RUN/evaluation/CHECKPOINT/metrics.json`` of the bundle's run, where it
    exists); ``fresh`` a background sample of the calibration process with other seeds
    (default: ``data/fresh/<process>``, where it exists); relative paths of the provenance
    are taken from ``root`` (where ``nae export`` ran, the repository root)."""
    directory = Path(directory)
    bundle = verify_bundle(directory)
    _check_names(directory, bundle)
    extra = bundle.model_extra or {}
    provenance = extra.get("provenance", {})
    metrics_path, report = _run_metrics(provenance, metrics, Path(root))
    fresh_path = _fresh_path(provenance, fresh, Path(root))
    fresh_rows = _fresh_checks(directory, bundle, fresh_path) if fresh_path else None
    sections = [
        _header(bundle, directory),
        _files(directory, bundle),
        _data(provenance),
        _metrics(bundle, report, metrics_path),
        _working_points(bundle),
        _fresh(fresh_path, fresh_rows),
        _int8(extra.get("int8")),
        _rebuild(bundle, directory, provenance, report),
    ]
    markdown = "\n\n".join(section.strip("\n") for section in sections) + "\n"
    row = _row(bundle, directory)
    row["fresh check"] = _fresh_verdict(fresh_rows)
    return Card(bundle, markdown, metrics_path, fresh_path, row)


def write_cards(
    models_dir: str | Path,
    out_dir: str | Path,
    *,
    readme: str | Path | None = None,
    root: str | Path = ".",
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """``out_dir/NAME.md`` for the highest version of every bundle under ``models_dir`` (the
    version the service serves by default), and, with ``readme``, the table of bundles between
    ``BUNDLE_TABLE_BEGIN`` and ``BUNDLE_TABLE_END`` in that file. A card already written from
    the same export, with a run's metrics or a fresh check that this machine cannot redo (its
    run or fresh sample is not here), is kept with its table row (``_keep_old``). Returns the
    cards written."""
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    directories = _highest_versions(models_dir)
    if not directories:
        raise NaeError(f"{models_dir}: no bundle (NAME/VERSION/{BUNDLE_FILE}) to write cards for")
    out_dir.mkdir(parents=True, exist_ok=True)
    old_rows = _table_rows(Path(readme)) if readme is not None else {}
    written, rows = [], []
    for directory in directories:
        card = bundle_card(directory, root=root)
        path = out_dir / f"{card.bundle.name}.md"
        row = {**card.row, "card": _link(path, Path(readme).parent if readme else out_dir)}
        if _keep_old(card, path) and card.bundle.name in old_rows:
            rows.append(old_rows[card.bundle.name])
            if progress is not None:
                progress(f"{path} kept: written from this export where its data was at hand")
            continue
        path.write_text(card.markdown)
        written.append(path)
        rows.append(row)
        if progress is not None:
            notes = [str(card.metrics_path or "export metrics only")]
            if card.fresh_path is not None:
                notes.append(f"fresh {card.fresh_path}: {card.row['fresh check']}")
            progress(f"{path} ({'; '.join(notes)})")
    if readme is not None:
        _replace_table(Path(readme), rows)
    return written


def _keep_old(card: Card, path: Path) -> bool:
    """Whether the card already at ``path`` stays: it describes this same export (its
    exported-at line) and quotes a run's metrics or a fresh-sample check that the new card
    could not, because that run or sample is not on this machine; rewriting it would only
    lose what was measured."""
    if not path.is_file():
        return False
    old = path.read_text()
    exported = (card.bundle.model_extra or {}).get("provenance", {}).get("exported_at")
    if not exported or f"Exported {exported} " not in old:
        return False
    if _section(old, "## Files") != _section(card.markdown, "## Files"):
        return False  # the bundle's files changed since (an int8 file withdrawn)
    lost_metrics = card.metrics_path is None and _FROM_METRICS in old
    lost_fresh = card.fresh_path is None and _FRESH_TABLE in old
    return lost_metrics or lost_fresh


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of its level ('' without it)."""
    if heading not in markdown:
        return ""
    return markdown.split(heading, 1)[1].split("\n## ", 1)[0]


def _table_rows(readme: Path) -> dict[str, str]:
    """The bundle table's rows now in ``readme``, by bundle name, as their markdown lines."""
    if not readme.is_file():
        return {}
    text = readme.read_text()
    inside = text.split(BUNDLE_TABLE_BEGIN, 1)[-1].split(BUNDLE_TABLE_END, 1)[0]
    rows: dict[str, str] = {}
    for line in inside.splitlines() if BUNDLE_TABLE_BEGIN in text else []:
        if match := re.match(r"^\| `([^`]+)` \|", line):
            rows[match.group(1)] = line
    return rows


# --- the sections ---------------------------------------------------------------------------


def _header(bundle: Bundle, directory: Path) -> str:
    extra = bundle.model_extra or {}
    model = extra.get("model", {})
    hyper = model.get("hyperparameters", {})
    family = str(model.get("family", "unknown family")).upper()
    shape = " x ".join(map(str, bundle.input.shape))
    keys = ["architecture", "hidden", "latent_dim", "preprocessing"]
    if bundle.kind == "jet-image":
        keys += ["pt_power", "image_smoothing"]
    if bundle.kind == "event":
        keys += ["event_frame"]
    described = ", ".join(f"{key} {hyper[key]}" for key in keys if key in hyper)
    lines = [
        f"# {bundle.name}, version {bundle.version}",
        "",
        f"<!-- Written by `nae bundle card {directory}`; re-run it rather than edit. -->",
        "",
        f"Kind `{bundle.kind}` ({_KINDS[bundle.kind]}, {shape} per event); model {family} "
        f"({described or 'no hyperparameters recorded'}). Input `{bundle.input.name}`: "
        f"float32 `[batch, {', '.join(map(str, bundle.input.shape))}]` in raw physics units, "
        f"all preprocessing inside the graph; output `{bundle.output.name}`: float32 `[batch]`, "
        "higher = more anomalous. An event triggers a working point when score > threshold.",
    ]
    if bundle.input.features:
        lines += [
            "",
            f"Features (last axis): {', '.join(f'`{f}`' for f in bundle.input.features)}.",
        ]
    if bundle.input.ranges is not None:
        lines += [
            "",
            f"Accepted input ranges (`input.ranges`; outside is a 400): {_ranges(bundle)}.",
        ]
    lines += [
        "",
        f"Served file: `{bundle.recommended}` (the bundle's recommendation; `NAE_MODEL_FILE` "
        f"overrides it). Reference input rate {bundle.reference_rate_hz:,.1f} Hz.",
    ]
    return "\n".join(lines)


def _files(directory: Path, bundle: Bundle) -> str:
    names = [BUNDLE_FILE, *bundle.files]
    sizes = {name: (directory / name).stat().st_size for name in names}
    rows = [
        [f"`{name}`", _size(sizes[name]), f"`{bundle.files[name].sha256}`"]
        if name in bundle.files
        else [f"`{name}`", _size(sizes[name]), "(holds the others' sha256)"]
        for name in names
    ]
    return "\n".join(
        [
            "## Files",
            "",
            _table(["file", "size", "sha256"], rows),
            "",
            f"On disk: {_size(sum(sizes.values()))} in all. `nae bundle verify {directory}` "
            "checks every sha256 as the service does before it serves the bundle.",
        ]
    )


def _data(provenance: Mapping[str, Any]) -> str:
    samples = [("training", sample) for sample in provenance.get("training_samples", [])]
    if "calibration_sample" in provenance:
        samples.append(("calibration (thresholds)", provenance["calibration_sample"]))
    for name, sample in provenance.get("signal_samples", {}).items():
        samples.append((f"signal `{name}`", sample))
    rows = [
        [
            role,
            f"`{sample.get('path', '?')}`",
            str(sample.get("process", "not recorded")),
            _count(sample.get("n_events")),
            f"`{sample.get('sha256', 'not recorded')}`",
        ]
        for role, sample in samples
    ]
    lines = ["## Data", ""]
    if rows:
        lines += [_table(["role", "sample", "process", "events", "content sha256"], rows), ""]
        lines.append(
            "The hashes are `nae data hash SAMPLE` of the arrays (attributes aside); the "
            f"samples are made by {_sample_target(provenance)} (Makefile; docs/data.md)."
        )
    else:
        lines.append("The bundle records no samples (it was not made by `nae export`).")
    run = provenance.get("run_dir")
    if run is not None:
        checkpoint = provenance.get("checkpoint", {})
        metric = ", ".join(f"{k} {_number(v)}" for k, v in (checkpoint.get("metric") or {}).items())
        lines += [
            "",
            f"Run `{run}`, checkpoint `{checkpoint.get('name', 'best')}` (stage "
            f"{checkpoint.get('stage')}, step {checkpoint.get('step')}"
            + (f", selected on {metric}" if metric else "")
            + f"); training seed {provenance.get('seed')}, config sha256 "
            f"`{provenance.get('config_sha256', 'not recorded')}`.",
        ]
    git = provenance.get("git", {})
    if git:
        dirty = " with uncommitted changes" if git.get("dirty") else ""
        lines.append(
            f"Exported {provenance.get('exported_at', '')} from commit `{git.get('commit')}`"
            f"{dirty}, nae-trigger {provenance.get('code_version')}, "
            + ", ".join(f"{k} {v}" for k, v in provenance.get("tools", {}).items())
            + "."
        )
    return "\n".join(lines)


def _metrics(bundle: Bundle, report: Mapping[str, Any] | None, path: Path | None) -> str:
    lines = ["## Metrics", ""]
    if report is not None:
        lines += [
            f"{_FROM_METRICS} (`{path}`): {report['background']['n']:,} background events "
            f"of `{report['background']['path']}`; {report.get('uncertainties', '')}.",
            "",
        ]
        fprs = sorted(
            {
                key
                for signal in report["signals"].values()
                for score in signal["scores"].values()
                for key in score
                if key.startswith("tpr_at_fpr_")
            },
            key=lambda key: -float(key.removeprefix("tpr_at_fpr_")),
        )
        header = ["signal", "score", "events", "AUC", "1/eps_B at eps_S 0.2", "at 0.3"]
        header += [f"TPR at FPR {key.removeprefix('tpr_at_fpr_')}" for key in fprs]
        served = (bundle.model_extra or {}).get("model", {}).get("score")
        rows = []
        for name, signal in report["signals"].items():
            for score, values in signal["scores"].items():
                default = " (served)" if score == (served or report.get("default_score")) else ""
                rows.append(
                    [
                        f"`{name}`",
                        score + default,
                        _count(signal["n"]),
                        _auc(values["auc"]),
                        _estimate(values.get("rejection_at_eff_0.2")),
                        _estimate(values.get("rejection_at_eff_0.3")),
                        *(_estimate(values.get(key)) for key in fprs),
                    ]
                )
        lines += [_table(header, rows), ""]
    else:
        lines += [
            "No `nae evaluate` metrics.json was found for this bundle's run (give it with "
            "`--metrics`); the export's own metrics follow.",
            "",
        ]
    if bundle.metrics:
        lines += [
            "At export, by ONNX Runtime on the calibration background (the served scores; "
            "AUC +- DeLong's error, 1/eps_B with its 68% Clopper-Pearson interval):",
            "",
            _table(
                ["signal", "signal events", "AUC", "1/eps_B at eps_S 0.2", "at 0.3"],
                [
                    [
                        f"`{name}`",
                        _count(values.get("n_signal")),
                        f"{values['auc']:.4f}"
                        + (f" +- {values['auc_error']:.4f}" if "auc_error" in values else ""),
                        _export_rejection(values, "rejection_at_eff_0.2"),
                        _export_rejection(values, "rejection_at_eff_0.3"),
                    ]
                    for name, values in bundle.metrics.items()
                ],
            ),
        ]
    elif report is None:
        lines.append("The bundle records no metrics (exported without `--signal`).")
    return "\n".join(lines)


def _working_points(bundle: Bundle) -> str:
    rows = []
    for point in bundle.working_points:
        fields = point.model_extra or {}
        low, high = point.background_efficiency_ci95
        threshold_ci = fields.get("threshold_ci95")
        rate_ci = fields.get("expected_rate_hz_ci95")
        passing = fields.get("n_background_passing")
        rows.append(
            [
                f"`{point.name}`",
                f"{point.target_background_efficiency:g}",
                f"{point.threshold:.6g}"
                + (f" [{threshold_ci[0]:.6g}, {threshold_ci[1]:.6g}]" if threshold_ci else ""),
                f"{point.background_efficiency:.3g} [{low:.3g}, {high:.3g}]",
                f"{_count(passing)} / {point.n_background:,}"
                if passing is not None
                else f"? / {point.n_background:,}",
                f"{point.expected_rate_hz:,.4g}"
                + (f" [{rate_ci[0]:,.4g}, {rate_ci[1]:,.4g}]" if rate_ci else ""),
                str(fields.get("prescale", 1)),
                f"{fields['accepted_rate_hz']:,.4g}" if "accepted_rate_hz" in fields else "",
            ]
        )
    header = ["working point", "target eps_B", "threshold [95% range]"]
    header += ["background efficiency [CP 95%]", "passing / background", "rate Hz [95%]"]
    header += ["prescale", "accepted Hz"]
    return "\n".join(
        [
            "## Working points",
            "",
            "Calibrated on the calibration background with the fp32 model's ONNX Runtime "
            "scores. The efficiency's interval is the exact Clopper-Pearson 95% interval of the "
            "passing count; the threshold's is the thresholds at that interval's ends; the "
            "rate is efficiency x reference rate, before the prescale.",
            "",
            _table(header, rows),
        ]
    )


def _fresh(path: Path | None, rows: list[list[str]] | None) -> str:
    lines = ["## On a fresh background", ""]
    if path is None or rows is None:
        lines.append(
            "No fresh background sample was found (`make fresh-samples` makes one per "
            "calibration process in `data/fresh/`; or give one with `--fresh`). "
            "`tests/integration/test_shipped_bundles.py` makes a small one on every test run."
        )
        return "\n".join(lines)
    from training.data.shards import hash_sample

    lines += [
        f"`{path}` (content sha256 `{hash_sample(path)}`; its shards share no seed with the "
        "samples above), scored through the service's runtime with each shipped file. "
        "Check: the fresh and the calibration sample's counts of passing events agree as two "
        "samples of one efficiency (exact conditional binomial test, two-sided p >= 0.01 where "
        "5 or more fresh events are expected to pass, else >= 0.001; "
        "`training.calibration.check_rate`).",
        "",
        _table(
            [
                "file",
                "working point",
                "calibrated eps_B [CP 95%]",
                _FRESH_TABLE,
                "fresh eps_B [CP 95%]",
                "check",
            ],
            rows,
        ),
    ]
    return "\n".join(lines)


def _fresh_checks(directory: Path, bundle: Bundle, path: Path) -> list[list[str]]:
    """One row per shipped file and working point: the fresh sample scored as the service
    scores it, and ``check_rate``'s verdict."""
    from training.bundles import score_bundle
    from training.calibration import check_rate

    rows = []
    for model_file in bundle.files:
        summary = score_bundle(directory, path, model_file=model_file)
        for point in bundle.working_points:
            passing = summary.passing[point.name]
            check = check_rate(
                passing.n_passing,
                passing.n_events,
                point.background_efficiency,
                n_calibration=point.n_background,
            )
            low, high = point.background_efficiency_ci95
            verdict = "consistent" if check.consistent else "**inconsistent**"
            rows.append(
                [
                    f"`{model_file}`",
                    f"`{point.name}`",
                    f"{point.background_efficiency:.3g} [{low:.3g}, {high:.3g}]",
                    f"{passing.n_passing:,} / {passing.n_events:,}",
                    f"{passing.value:.3g} [{passing.ci95.low:.3g}, {passing.ci95.high:.3g}]",
                    f"{verdict} (two-sample p {check.p_value:.3g}; needs >= "
                    f"{1 - check.confidence:.2g})",
                ]
            )
    return rows


def _fresh_path(provenance: Mapping[str, Any], fresh: str | Path | None, root: Path) -> Path | None:
    """The fresh sample to check on (given, or ``data/fresh/<process>`` of the calibration
    sample's process), refused when it shares a shard seed with the bundle's samples."""
    from training.data.shards import describe_sample

    calibration = provenance.get("calibration_sample", {})
    if fresh is None:
        process = calibration.get("process")
        candidate = root / "data" / "fresh" / str(process)
        if process is None or not candidate.is_dir():
            return None
        fresh = candidate
    path = Path(fresh)
    if not path.exists():
        raise NaeError(f"--fresh {path}: no such sample")
    samples = [calibration, *provenance.get("training_samples", [])]
    used = {seed for sample in samples for seed in sample.get("shard_seeds", [])}
    shared = sorted(set(describe_sample(path)["shard_seeds"]) & used)
    if shared:
        raise NaeError(
            f"{path} shares shards (seeds {shared[:3]}) with the bundle's training or "
            "calibration samples: a fresh sample needs other seeds"
        )
    return path


def _fresh_verdict(rows: list[list[str]] | None) -> str:
    if rows is None:
        return "-"
    failing = sorted({row[1].strip("`") for row in rows if "inconsistent" in row[-1]})
    return "consistent" if not failing else "inconsistent at " + ", ".join(failing)


def _int8(record: Mapping[str, Any] | None) -> str:
    lines = ["## int8", ""]
    if not record or not record.get("requested"):
        lines.append("Not requested at export (`nae export --int8`): only fp32 ships.")
        return "\n".join(lines)
    shipped = record.get("shipped")
    if withdrawn := record.get("withdrawn"):
        lines += [
            f"**Withdrawn** {withdrawn.get('at', '')} (it had shipped as {withdrawn.get('method')} "
            f"quantization; `nae bundle drop-int8`): {withdrawn.get('why', '')}",
            "",
        ]
    lines.append(
        f"Shipped: **{shipped or 'no'}**"
        + (f" (as `model.int8.onnx`, {shipped} quantization)." if shipped else ".")
        + " int8 ships only where, at every working point, its background efficiency at the "
        "fp32 threshold lies inside the fp32 Clopper-Pearson 95% interval and |AUC change| <= "
        f"{record.get('criteria', {}).get('max_abs_auc_change', '?')} for every signal"
        + (
            f", and each event's score is the same alone as in a batch (relative change <= "
            f"{record['criteria']['max_batch_dependence']:g})"
            if "max_batch_dependence" in record.get("criteria", {})
            else ""
        )
        + (
            ", and its int8 kernels score as its quantized graph evaluated in float (relative "
            f"change <= {record['criteria']['max_kernel_deviation']:g}: alike on every CPU)"
            if "max_kernel_deviation" in record.get("criteria", {})
            else ""
        )
        + "; it is recommended only where it is also faster at batch 256 and above."
    )
    for method, gate in record.get("gates", {}).items():
        verdict = "passed" if gate.get("passed") else "failed: " + "; ".join(gate["reasons"])
        changes = ", ".join(f"`{k}` {v:+.4f}" for k, v in gate.get("auc_change", {}).items())
        lines += [
            "",
            f"### {method} quantization: {verdict}",
            "",
            *_DYNAMIC_NOTE * (method == "dynamic"),
            f"Spearman rank correlation with fp32 on the calibration background "
            f"{gate['spearman']:.6f}; AUC change {changes or 'not measured (no signal)'}.",
            "",
            _table(
                [
                    "working point",
                    "fp32 threshold",
                    "fp32 eps_B [CP 95%]",
                    "int8 eps_B at fp32 threshold",
                    "inside",
                    "int8 own threshold",
                    "int8 eps_B at own",
                    "own threshold inside fp32's 95% range",
                    "rate shift Hz",
                ],
                [
                    [
                        f"`{point['name']}`",
                        f"{point['fp32_threshold']:.6g}",
                        f"{point['fp32_background_efficiency']:.3g} "
                        f"[{point['fp32_background_efficiency_ci95'][0]:.3g}, "
                        f"{point['fp32_background_efficiency_ci95'][1]:.3g}]",
                        f"{point['int8_background_efficiency_at_fp32_threshold']:.3g}",
                        "yes" if point["inside_ci95"] else "**no**",
                        f"{point['int8_threshold']:.6g}",
                        f"{point['int8_background_efficiency_at_own_threshold']:.3g}",
                        "yes" if point["int8_threshold_inside_fp32_threshold_ci95"] else "no",
                        f"{point['rate_shift_hz']:+,.4g}",
                    ]
                    for point in gate.get("working_points", [])
                ],
            ),
        ]
        if gate.get("timings"):
            lines += [
                "",
                "Median CPU time per call (one intra-op thread, spinning off, fp32 and int8 "
                "called in turn):",
                "",
                _table(
                    ["batch", "fp32 CPU ms / call", "int8 CPU ms / call", "fp32 / int8"],
                    [
                        [
                            f"{timing['batch_size']:,}",
                            f"{timing['fp32_cpu_s'] * 1e3:.4g}",
                            f"{timing['int8_cpu_s'] * 1e3:.4g}",
                            f"x{timing['speedup']:.2f}",
                        ]
                        for timing in gate["timings"]
                    ],
                ),
            ]
    return "\n".join(lines)


def _sample_target(provenance: Mapping[str, Any]) -> str:
    """The Makefile target that makes the bundle's samples: the Z-gamma ones have their own."""
    calibration = provenance.get("calibration_sample", {})
    if str(calibration.get("process", "")) == "zgamma":
        return "`make zgamma-samples`"
    return "`make train-samples test-samples`"


def _rebuild(
    bundle: Bundle,
    directory: Path,
    provenance: Mapping[str, Any],
    report: Mapping[str, Any] | None,
) -> str:
    commands = dict(provenance.get("commands", {}))
    notes = []
    if "train" not in commands and "run_dir" in provenance:
        commands["train"] = f"nae train {Path(provenance['run_dir']) / 'config.toml'} " + (
            f"--run-dir {provenance['run_dir']}"
        )
        notes.append("the train line is the run's own config.toml (not recorded at export)")
    if report is not None:
        commands["evaluate"] = _evaluate_command(report)
    if "export" not in commands and "run_dir" in provenance:
        commands["export"] = _export_command(bundle, directory, provenance)
        notes.append("the export line is rebuilt from bundle.json (not recorded at export)")
    lines = ["## Rebuild", ""]
    if not commands:
        lines.append("The bundle records no run: it was not made by `nae export`.")
        return "\n".join(lines)
    lines += [
        "From the repository root, with the samples of the table above "
        f"({_sample_target(provenance)}):",
        "",
        "```bash",
        *(commands[step] for step in ("train", "evaluate", "export") if step in commands),
        f"nae bundle verify {directory}",
        f"nae bundle card {directory} --out docs/models/{bundle.name}.md",
        "```",
    ]
    if notes:
        lines += ["", "Note: " + "; ".join(notes) + "."]
    if "config_toml" in provenance:
        lines += [
            "",
            "<details><summary>The run's resolved config (config.toml; sha256 above)</summary>",
            "",
            "```toml",
            provenance["config_toml"].rstrip("\n"),
            "```",
            "",
            "</details>",
        ]
    return "\n".join(lines)


# --- metrics.json and commands --------------------------------------------------------------


def _run_metrics(
    provenance: Mapping[str, Any], metrics: str | Path | None, root: Path
) -> tuple[Path | None, dict[str, Any] | None]:
    """The evaluate report the card quotes, and its path: ``metrics`` where given (refused
    unless it scored the exported checkpoint), else the run's own
    ``RUN/evaluation/CHECKPOINT/metrics.json`` where it exists and scored the exported
    checkpoint; one that did not is from a later training in the same run directory, another
    network, and is not quoted (``(None, None)``)."""
    if metrics is not None:
        path = Path(metrics)
        if not path.is_file():
            raise NaeError(f"--metrics {metrics}: no such file (nae evaluate writes metrics.json)")
        report = _read_metrics(path)
        if mismatch := _other_checkpoint(report, provenance):
            raise NaeError(
                f"{path} {mismatch}: evaluate the exported checkpoint (nae evaluate RUN "
                "--checkpoint ...) or give its metrics with --metrics"
            )
        return path, report
    run = provenance.get("run_dir")
    if run is None:
        return None, None
    checkpoint = provenance.get("checkpoint", {}).get("name", "best")
    path = root / run / "evaluation" / Path(checkpoint).stem / "metrics.json"
    if not path.is_file():
        return None, None
    report = _read_metrics(path)
    return (None, None) if _other_checkpoint(report, provenance) else (path, report)


def _read_metrics(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NaeError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(report, dict) or not {"run", "background", "signals"} <= set(report):
        raise NaeError(f"{path}: not a metrics.json of nae evaluate (no run, background, signals)")
    return report


def _other_checkpoint(report: Mapping[str, Any], provenance: Mapping[str, Any]) -> str | None:
    """How ``report`` evaluated another checkpoint than the exported one (``None``: the
    same). The selection value tells apart two trainings that stopped at the same stage and
    step, such as a later run of the recipe in the same run directory."""
    checkpoint = provenance.get("checkpoint", {})
    exported = (checkpoint.get("stage"), checkpoint.get("step"))
    evaluated = (report.get("stage"), report.get("step"))
    if checkpoint and exported != evaluated:
        return (
            f"evaluates stage {evaluated[0]} step {evaluated[1]}, but the bundle holds "
            f"stage {exported[0]} step {exported[1]}"
        )
    exported_metric, evaluated_metric = checkpoint.get("metric"), report.get("selection_metric")
    if exported_metric and evaluated_metric and exported_metric != evaluated_metric:
        return (
            f"evaluates a checkpoint selected on {evaluated_metric}, but the bundle's was "
            f"selected on {exported_metric} (another training)"
        )
    return None


def _evaluate_command(report: Mapping[str, Any]) -> str:
    """The ``nae evaluate`` line that writes ``report`` again (it records its run, checkpoint
    and samples)."""
    args = [
        "nae",
        "evaluate",
        str(report["run"]),
        "--background",
        str(report["background"]["path"]),
    ]
    for name, signal in report["signals"].items():
        args += ["--signal", f"{name}={signal['path']}"]
    if report.get("checkpoint", "best") != "best":
        args += ["--checkpoint", str(report["checkpoint"])]
    return shlex.join(args)


def _export_command(bundle: Bundle, directory: Path, provenance: Mapping[str, Any]) -> str:
    from training.export import export_command_line

    int8 = (bundle.model_extra or {}).get("int8", {})
    prescales = [(point.model_extra or {}).get("prescale", 1) for point in bundle.working_points]
    return export_command_line(
        provenance["run_dir"],
        directory,
        background=provenance.get("calibration_sample", {}).get("path", "CALIBRATION_SAMPLE"),
        signals={name: s["path"] for name, s in provenance.get("signal_samples", {}).items()},
        checkpoint=provenance.get("checkpoint", {}).get("name", "best"),
        int8=bool(int8.get("requested")),
        target_efficiencies=[point.target_background_efficiency for point in bundle.working_points],
        prescales=prescales,
        reference_rate_hz=bundle.reference_rate_hz,
    )


# --- the index table ------------------------------------------------------------------------


def _row(bundle: Bundle, directory: Path) -> dict[str, str]:
    extra = bundle.model_extra or {}
    size = sum((directory / name).stat().st_size for name in [BUNDLE_FILE, *bundle.files])
    aucs = ", ".join(f"{name} {values['auc']:.3f}" for name, values in bundle.metrics.items())
    int8 = extra.get("int8", {})
    return {
        "bundle": f"`{bundle.name}`",
        "version": str(bundle.version),
        "kind": bundle.kind,
        "model": str(extra.get("model", {}).get("family", "?")),
        "files": ", ".join(f"`{name}`" for name in bundle.files),
        "size": _size(size),
        "int8": "withdrawn"
        if int8.get("withdrawn")
        else (int8.get("shipped") or "not shipped")
        if int8.get("requested")
        else "not requested",
        "AUC at export": aucs or "-",
    }


def _replace_table(readme: Path, rows: list[dict[str, str] | str]) -> None:
    """The table between the markers: a row per bundle, a written card's from its fields, a
    kept card's as the line it had."""
    text = readme.read_text() if readme.is_file() else ""
    pattern = re.compile(
        re.escape(BUNDLE_TABLE_BEGIN) + r"\n(.*?)" + re.escape(BUNDLE_TABLE_END), re.S
    )
    found = pattern.search(text)
    if not found:
        raise NaeError(
            f"{readme}: no bundle table to replace; put the lines {BUNDLE_TABLE_BEGIN!r} and "
            f"{BUNDLE_TABLE_END!r} where it goes"
        )
    fields = [row for row in rows if isinstance(row, dict)]
    old_header = found.group(1).splitlines()[:2]
    header = _table(list(fields[0]), []).splitlines() if fields else old_header
    lines = [row if isinstance(row, str) else _table([], [list(row.values())]).splitlines()[-1]
             for row in rows]  # fmt: skip
    table = "\n".join([*header, *lines])
    readme.write_text(
        pattern.sub(lambda _: f"{BUNDLE_TABLE_BEGIN}\n{table}\n{BUNDLE_TABLE_END}", text)
    )


def _highest_versions(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        raise NaeError(f"{models_dir}: no such directory")
    directories = []
    for name in sorted(path for path in models_dir.iterdir() if path.is_dir()):
        versions = [
            path
            for path in name.iterdir()
            if path.name.isdigit() and (path / BUNDLE_FILE).is_file()
        ]
        if versions:
            directories.append(max(versions, key=lambda path: int(path.name)))
    return directories


# --- formatting -----------------------------------------------------------------------------


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _estimate(values: Mapping[str, Any] | None) -> str:
    """``{value, error, low, high}`` of ``nae evaluate`` as text: the value with its 68%
    interval; a lower limit where no background passed; the background events needed where
    the sample cannot reach that false-positive rate."""
    if not values:
        return "-"
    low, high = values.get("low"), values.get("high")
    if values.get("value") is None:
        if "needs_background" in values:
            return f"needs {values['needs_background']:,} background"
        return f"> {low:.3g}" if low is not None else "-"
    high_text = "inf" if high is None else f"{high:.3g}"
    return f"{values['value']:.3g} [{low:.3g}, {high_text}]"


def _auc(values: Mapping[str, Any]) -> str:
    """An AUC with DeLong's standard error."""
    return f"{values['value']:.4f} +- {values.get('error') or 0.0:.4f}"


def _export_rejection(values: Mapping[str, float], key: str) -> str:
    if key in values:
        return f"{values[key]:.3g} [{values[f'{key}_low']:.3g}, {values[f'{key}_high']:.3g}]"
    if f"{key}_lower_limit" in values:
        return f"> {values[f'{key}_lower_limit']:.3g}"
    return "-"


def _ranges(bundle: Bundle) -> str:
    bounds = bundle.input.column_bounds()
    names = bundle.input.features or [f"column {i}" for i in range(len(bounds))]
    if bundle.kind == "jet-image" and len(set(bounds)) == 1:
        return f"every pixel in {_interval(bounds[0])}"
    return ", ".join(
        f"`{name}` {_interval(pair)}" for name, pair in zip(names, bounds, strict=False)
    )


def _interval(pair: tuple[float | None, float | None]) -> str:
    low, high = pair
    return f"[{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"


def _size(n_bytes: int) -> str:
    if n_bytes < 1024**2:
        return f"{n_bytes / 1024:.1f} KiB"
    return f"{n_bytes / 1024**2:.2f} MiB"


def _count(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) and math.isfinite(value) else "?"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _link(path: Path, base: Path) -> str:
    """A markdown link to ``path`` from a file in ``base``."""
    return f"[{path.stem}]({Path(os.path.relpath(path, base)).as_posix()})"


def _check_names(directory: Path, bundle: Bundle) -> None:
    if directory.parent.name != bundle.name or directory.name != str(bundle.version):
        raise BadBundle(
            f"{directory}: holds {bundle.name} v{bundle.version}; a shipped bundle lives in "
            f"models/{bundle.name}/{bundle.version}/"
        )
