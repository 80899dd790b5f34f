"""torch -> ONNX bundles (docs/contracts.md, contract 2): export, parity, int8 and its gate,
calibration.

A model here is a torch ``nn.Module`` whose ``forward(x)`` takes raw physics inputs float32
``(N, *input_shape)``, holds all preprocessing as buffers, and returns float32 ``(N,)`` anomaly
scores. ``export_bundle`` turns one into ``models/<name>/<version>/``:

1. ``model.onnx`` by the dynamo exporter (opset ``OPSET``, weights inside the file, one dynamic
   batch axis), checked by ``onnx.checker``;
2. parity: ONNX Runtime's scores equal torch's within ``PARITY_RTOL`` (relative) on at least
   ``MIN_PARITY_EVENTS`` background events, or the export fails;
3. working points calibrated on ONNX Runtime's fp32 scores of the held-out background
   (``training.calibration``): the scores the service computes, not torch's;
4. optionally int8, static (QDQ, calibrated on background inputs, never random data) and
   dynamic; each is measured against fp32 (the gate, ``Int8Gate``) and the better passing one
   ships as ``model.int8.onnx``;
5. ``bundle.json`` written through ``service.bundle``, and the bundle loaded back by the
   service's own ``load_bundle`` and ``OnnxModel`` before the export returns.

The int8 gate. The bundle holds one set of thresholds, served with whichever file the service
runs, so int8 must keep the fp32 thresholds' rates: it ships only if, at every working point,
the background efficiency of int8 scores at the fp32 threshold lies inside the fp32 Clopper-
Pearson 95% interval, and |AUC(int8) - AUC(fp32)| <= ``MAX_AUC_CHANGE`` for every signal. The
int8 model's own recalibrated threshold is recorded too, with its efficiency on the calibration
sample (the target by construction) and whether it lies inside the fp32 threshold's interval.
Without a signal the AUC condition cannot be checked and int8 does not ship. A trigger decision
must not depend on the other events of a request, so int8 also ships only if each event's score
is the same alone as in a batch (``MAX_BATCH_DEPENDENCE``, relative, over ``_BATCH_PROBE``
background events): dynamic quantization takes its activation scales from each batch and fails
this by construction; static QDQ has fixed scales and passes. An int8 file must also score
alike on every CPU: its scores with ONNX Runtime's int8 kernels must equal those of the same
quantized graph with graph optimisations off, where every DequantizeLinear is a float operation
(``MAX_KERNEL_DEVIATION``). Both quantizations are therefore unsigned 8-bit for activations and
weights (U8U8): with signed weights ONNX Runtime multiplies through VPMADDUBSW on an x86 CPU with
AVX2 but without VNNI, whose 16-bit sums saturate (measured in session 23 on such an EPYC: the
S8S8 file of ``jets-top-image-nae`` v1, whose gate passed on the export's machine, scored up to
74% off its own graph and passed 2.4% of fresh top jets at the 1% working point; U8U8: 4e-7).
Speed is CPU time per call at batch 1, 256 and 4096 with one intra-op thread and spinning
off, the models called in turn (interleaved) so that load on a shared machine hits them alike;
int8 is *recommended* only where it ships and is faster than fp32 at batch 256 and above (a
trigger farm's batches).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from service.bundle import (
    INT8_FILE,
    MODEL_FILE,
    REFERENCE_RATE_HZ,
    Bundle,
    digest_files,
    load_bundle,
    write_bundle,
)
from training import __version__
from training.calibration import WorkingPointCalibration, calibrate, measure_efficiency
from training.data.inputs import Inputs, Kind, default_features, default_ranges
from training.errors import ExportFailed, NaeError, TooFewEvents, require
from training.metrics import rejection_at_signal_efficiency, roc_auc

__all__ = [
    "DEFAULT_EFFICIENCIES",
    "MAX_AUC_CHANGE",
    "MAX_KERNEL_DEVIATION",
    "MIN_PARITY_EVENTS",
    "OPSET",
    "PARITY_RTOL",
    "Int8Gate",
    "Parity",
    "SampleScores",
    "check_parity",
    "export_bundle",
    "export_command_line",
    "export_onnx",
    "export_run",
    "int8_gate",
    "kernel_deviation",
    "quantize",
    "time_models",
]

OPSET = 20  # torch 2.13's default for the dynamo exporter; ONNX Runtime >= 1.17 runs it
PARITY_RTOL = 1e-5
PARITY_SCALE_QUANTILE = 0.9  # differences relative to max(|score|, this quantile of |score|)
MIN_PARITY_EVENTS = 10_000
MAX_AUC_CHANGE = 0.005
MAX_BATCH_DEPENDENCE = 1e-5  # relative score change, event alone against in a batch
MAX_KERNEL_DEVIATION = 1e-4  # relative: int8 kernels against the quantized graph in float
_BATCH_PROBE = 256  # background events scored alone and together for that check
TIMING_BATCH_SIZES = (1, 256, 4096)
DEFAULT_EFFICIENCIES = (1e-2, 1e-3, 1e-4)  # the working points' target background efficiencies
SIGNAL_EFFICIENCIES = (0.2, 0.3)  # where the bundle quotes 1/eps_B (arXiv:2206.14225 uses 0.2)
# Only the layers with weights are quantized: the score (a sum of squared residuals) and the
# in-graph preprocessing stay float, so the tail of the score distribution keeps its resolution.
QUANTIZED_OPS = ["Conv", "ConvTranspose", "MatMul", "Gemm"]
N_QUANTIZER_EVENTS = 4096  # background events the static quantizer's MinMax ranges are taken on
_BATCH = 4096  # events per ONNX Runtime / torch call while scoring samples
Int8Method = Literal["static", "dynamic"]


class SampleScores(NamedTuple):
    """One ONNX file's scores: the calibration background ``(N,)`` and each signal's."""

    background: np.ndarray
    signals: dict[str, np.ndarray]


class Parity(NamedTuple):
    """ONNX Runtime against torch on ``n_events`` inputs.

    The relative difference of an event is |ort - torch| / max(|torch|, median |torch|): plain
    relative above the median score, where every threshold lies, and relative to the median
    below it, where a near-perfect reconstruction's residuals are differences of nearly equal
    float32 numbers, so that their rounding (1e-7 of the inputs) is no longer small against
    the score itself.
    """

    n_events: int
    max_relative_difference: float
    max_absolute_difference: float


@dataclass
class Int8Gate:
    """The measurements that decide whether an int8 model ships (see the module docstring)."""

    method: Int8Method
    spearman: float
    auc_change: dict[str, float]  # signal -> AUC(int8) - AUC(fp32); empty: not evaluated
    working_points: list[dict[str, Any]]
    timings: list[dict[str, float]] = field(default_factory=list)  # filled by time_models
    batch_dependence: float = 0.0  # max relative score change, alone against in a batch
    kernel_deviation: float = 0.0  # max relative change, int8 kernels against the graph in float
    reasons: list[str] = field(default_factory=list)  # why it does not ship; empty: it does

    @property
    def passed(self) -> bool:
        return not self.reasons


# --- export and parity ----------------------------------------------------------------------


def export_onnx(model: Any, example: np.ndarray, path: Path) -> None:
    """Write ``model`` (torch, eval mode) to ``path`` as one self-contained ONNX file: input
    ``x`` float32 ``[batch, *example.shape[1:]]``, output ``score`` float32 ``[batch]``."""
    torch = require("torch", "train")
    onnx = require("onnx", "train")
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(example[:2], dtype=np.float32))
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            model,
            (x,),
            input_names=["x"],
            output_names=["score"],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # a bundle lists its files: weights live inside model.onnx
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    program.save(str(path), external_data=False)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    (output,) = graph.graph.output
    if output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or (
        len(output.type.tensor_type.shape.dim) != 1
    ):
        raise ExportFailed(
            f"{type(model).__name__}.forward must return float32 scores of shape (N,); the "
            "exported graph's output is not a float32 vector"
        )


def check_parity(model: Any, path: Path, inputs: np.ndarray) -> Parity:
    """Compare ONNX Runtime on ``path`` with torch on ``inputs`` ``(N, *input_shape)``;
    raises ``ExportFailed`` beyond ``PARITY_RTOL`` relative difference.

    The difference is taken relative to the score, floored at the background's 90th
    percentile: a reconstruction energy of a well-reconstructed event is a sum of squares of
    differences of O(1) numbers, so its float32 rounding is fixed in absolute terms, and
    relative to a score far below every working point it says nothing about a trigger
    decision (session 19: 1.5e-8 on a score of 5e-4, 1.9e-5 relative, with the thresholds at
    0.07-0.38)."""
    torch = require("torch", "train")
    if len(inputs) < MIN_PARITY_EVENTS:
        raise TooFewEvents(
            f"parity needs at least {MIN_PARITY_EVENTS} background events, got {len(inputs)}"
        )
    with torch.no_grad():
        expected = np.concatenate(
            [model(torch.from_numpy(chunk)).numpy() for chunk in _batches(inputs)]
        )
    actual = _score_file(path, inputs)
    relative = _relative_difference(actual, expected)
    difference = np.abs(actual.astype(np.float64) - expected)
    parity = Parity(len(inputs), float(relative.max()), float(difference.max()))
    if parity.max_relative_difference > PARITY_RTOL:
        worst = int(np.argmax(relative))
        raise ExportFailed(
            f"ONNX Runtime and torch disagree: event {worst} scores {actual[worst]:.9g} vs "
            f"{expected[worst]:.9g} (relative {relative[worst]:.2g} > {PARITY_RTOL}); an "
            "operator exports differently: check forward for data-dependent Python control flow"
        )
    return parity


# --- int8 -----------------------------------------------------------------------------------


def quantize(fp32_path: Path, out_path: Path, method: Int8Method, background: np.ndarray) -> None:
    """int8 copy of ``fp32_path``: ``static`` QDQ with 8-bit weights (per channel) and
    activations whose ranges are the MinMax of ``background`` inputs; or ``dynamic`` (8-bit
    weights, activation ranges per batch at run time; ``background`` is unused). Unsigned
    weights and activations (U8U8), so that no CPU's kernels saturate (module docstring)."""
    quantization = require("onnxruntime.quantization", "train")
    with tempfile.TemporaryDirectory(prefix="nae-quantize-") as directory:
        prepared = Path(directory) / "prepared.onnx"
        # Symbolic shape inference fails on the exporter's Expand of a dynamic batch; ONNX's own
        # shape inference and the graph optimisation still run.
        quantization.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if method == "static":
            quantization.quantize_static(
                str(prepared),
                str(out_path),
                _calibration_reader(quantization.CalibrationDataReader, background),
                quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=QUANTIZED_OPS,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QUInt8,
                calibrate_method=quantization.CalibrationMethod.MinMax,
            )
        else:
            quantization.quantize_dynamic(
                str(prepared),
                str(out_path),
                op_types_to_quantize=["MatMul", "Gemm"],  # ConvInteger is slower than fp32 Conv
                weight_type=quantization.QuantType.QUInt8,
            )


def _calibration_reader(base: type, background: np.ndarray) -> Any:
    """A ``CalibrationDataReader`` over background batches of 256 (``base`` is that class,
    imported lazily with onnxruntime.quantization)."""

    class Reader(base):
        def __init__(self) -> None:
            self._batches = iter(_batches(background, 256))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {"x": batch}

    return Reader()


def time_models(
    paths: Mapping[str, Path],
    inputs: np.ndarray,
    *,
    batch_sizes: Sequence[int] = TIMING_BATCH_SIZES,
    budget_s: float = 3.0,
) -> dict[str, dict[int, float]]:
    """Median CPU seconds per call of each ONNX file at each batch size: one intra-op thread,
    spinning off, the files called in turn within every repeat. Each batch size gets about
    ``budget_s`` of CPU in all (3 to 1000 repeats)."""
    sessions = {name: _session(path) for name, path in paths.items()}
    medians: dict[str, dict[int, float]] = {name: {} for name in paths}
    for batch_size in batch_sizes:
        x = np.ascontiguousarray(np.resize(inputs, (batch_size, *inputs.shape[1:])))
        first = {name: _cpu_seconds(session, x) for name, session in sessions.items()}  # warm-up
        repeats = int(np.clip(budget_s / max(sum(first.values()), 1e-6), 3, 1000))
        samples: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(repeats):
            for name, session in sessions.items():
                samples[name].append(_cpu_seconds(session, x))
        for name, values in samples.items():
            medians[name][batch_size] = float(np.median(values))
    return medians


def int8_gate(
    method: Int8Method,
    fp32: SampleScores,
    int8: SampleScores,
    calibrations: list[WorkingPointCalibration],
) -> Int8Gate:
    from scipy import stats

    working_points, reasons = [], []
    for point in calibrations:
        at_fp32 = measure_efficiency(int8.background, point.threshold)
        (own,) = calibrate(
            int8.background,
            [point.target_background_efficiency],
            reference_rate_hz=point.reference_rate_hz,
        )
        low, high = point.background.ci95
        inside = bool(low <= at_fp32.value <= high)
        working_points.append(
            {
                "name": point.name,
                "fp32_threshold": point.threshold,
                "fp32_background_efficiency": point.background.value,
                "fp32_background_efficiency_ci95": [low, high],
                "int8_background_efficiency_at_fp32_threshold": at_fp32.value,
                "int8_threshold": own.threshold,
                "int8_background_efficiency_at_own_threshold": own.background.value,
                "int8_threshold_inside_fp32_threshold_ci95": bool(
                    point.threshold_ci95.low <= own.threshold <= point.threshold_ci95.high
                ),
                "rate_shift_hz": (at_fp32.value - point.background.value) * point.reference_rate_hz,
                "inside_ci95": inside,
            }
        )
        if not inside:
            reasons.append(
                f"{point.name}: int8 background efficiency {at_fp32.value:.3g} at the fp32 "
                f"threshold is outside [{low:.3g}, {high:.3g}]"
            )
    auc_change = {
        name: roc_auc(int8.background, int8.signals[name]).value
        - roc_auc(fp32.background, signal).value
        for name, signal in fp32.signals.items()
    }
    if not auc_change:
        reasons.append("AUC gate not evaluated: no signal sample given (--signal NAME=DATA)")
    reasons += [
        f"{name}: AUC changes by {change:+.4f}, beyond +-{MAX_AUC_CHANGE}"
        for name, change in auc_change.items()
        if abs(change) > MAX_AUC_CHANGE
    ]
    spearman = float(stats.spearmanr(fp32.background, int8.background).statistic)
    return Int8Gate(method, spearman, auc_change, working_points, reasons=reasons)


# --- the bundle -----------------------------------------------------------------------------


def export_bundle(
    model: Any,
    out_dir: str | Path,
    *,
    name: str,
    version: int,
    kind: Kind,
    background: Inputs,
    target_efficiencies: Sequence[float] = DEFAULT_EFFICIENCIES,
    reference_rate_hz: float = REFERENCE_RATE_HZ,
    prescales: Sequence[int] | None = None,
    signals: Mapping[str, Inputs] | None = None,
    int8: bool = False,
    ranges: list[tuple[float | None, float | None]] | None = None,
    description: Mapping[str, Any] | None = None,
    timing_budget_s: float = 3.0,
    progress: Callable[[str], None] | None = None,
) -> Bundle:
    """Export ``model`` and write a complete bundle into ``out_dir``; returns it as loaded back
    by the service's own loader. The bundle is assembled in a hidden sibling directory and
    renamed into place once complete (``_staged``).

    ``background`` is the held-out calibration sample (apart from training and validation);
    ``signals`` name -> sample for the metrics and the int8 AUC gate. ``ranges`` defaults to
    ``training.data.inputs.default_ranges`` and must contain every background input.
    ``description`` adds the fields that only the training run knows: ``preprocessing``,
    ``model`` (family and hyperparameters) and ``provenance`` (training samples, config hash,
    seed). ``progress(stage)`` is called as each stage starts.
    """
    step = progress or (lambda stage: None)
    signals = dict(signals or {})
    with _staged(Path(out_dir)) as work_dir:
        head = background.head(max(MIN_PARITY_EVENTS, N_QUANTIZER_EVENTS))
        input_shape = list(head.shape[1:])
        features = list(background.features) or default_features(kind, input_shape)
        ranges = default_ranges(kind, features) if ranges is None else ranges
        if len(ranges) > 1 and len(set(ranges)) == 1:
            ranges = ranges[:1]  # the contract's short form: one interval for every column

        step("exporting to ONNX")
        fp32_path = work_dir / MODEL_FILE
        export_onnx(model, head, fp32_path)
        step("checking parity with torch")
        parity = check_parity(model, fp32_path, head)

        step("scoring background and signals")
        paths = {"fp32": fp32_path}
        int8_paths: dict[Int8Method, Path] = {}
        if int8:
            for method in ("static", "dynamic"):
                int8_paths[method] = work_dir / f".{method}.int8.onnx"
                quantize(fp32_path, int8_paths[method], method, head[:N_QUANTIZER_EVENTS])
            paths.update(int8_paths)
        scores = _score_samples(paths, background, signals, ranges, features)
        calibrations = calibrate(
            scores["fp32"].background,
            target_efficiencies,
            reference_rate_hz=reference_rate_hz,
            prescales=prescales,
        )

        gates: dict[Int8Method, Int8Gate] = {}
        if int8:
            step("measuring int8 against fp32")
            gates = _measure_int8(paths, scores, calibrations, head, timing_budget_s)
        shipped = _ship_int8(gates, int8_paths, work_dir)

        step("writing the bundle")
        files = [MODEL_FILE] + ([INT8_FILE] if shipped else [])
        bundle = Bundle(
            schema_version=1,
            name=name,
            version=version,
            kind=kind,
            input={
                "name": "x",
                "shape": input_shape,
                "dtype": "float32",
                "features": features,
                "ranges": ranges,
            },
            output={"name": "score"},
            files=digest_files(work_dir, files),
            reference_rate_hz=reference_rate_hz,
            working_points=[point.bundle_fields() for point in calibrations],
            metrics=_metrics(scores["fp32"]),
            recommended=_recommended(shipped, gates),
            parity=parity._asdict(),
            int8=_int8_record(int8, gates, shipped),
            **_description(description, background, signals),
        )
        write_bundle(work_dir, bundle)
        # The first chunk, batched as the export scored it: dynamic int8 quantizes activations
        # per batch, so its score of an event depends on the batch the event came in.
        first = next(background.chunks(_BATCH))
        served = {MODEL_FILE: scores["fp32"].background[: len(first)]}
        if shipped:
            served[INT8_FILE] = scores[shipped].background[: len(first)]
        _check_served(work_dir, first, served)
    return load_bundle(Path(out_dir))


def _measure_int8(
    paths: Mapping[str, Path],
    scores: Mapping[str, SampleScores],
    calibrations: list[WorkingPointCalibration],
    inputs: np.ndarray,
    budget_s: float,
) -> dict[Int8Method, Int8Gate]:
    """The gate of each int8 file in ``paths`` (all but ``fp32``), with its timings."""
    medians = time_models(paths, inputs, budget_s=budget_s)
    gates = {}
    for method in (name for name in paths if name != "fp32"):
        gate = int8_gate(method, scores["fp32"], scores[method], calibrations)
        gate.timings = [
            {
                "batch_size": batch_size,
                "fp32_cpu_s": medians["fp32"][batch_size],
                "int8_cpu_s": medians[method][batch_size],
                "speedup": medians["fp32"][batch_size] / medians[method][batch_size],
            }
            for batch_size in TIMING_BATCH_SIZES
        ]
        gate.batch_dependence = batch_dependence(paths[method], inputs[:_BATCH_PROBE])
        if gate.batch_dependence > MAX_BATCH_DEPENDENCE:
            gate.reasons.append(
                f"scores depend on the batch: an event scored alone and in a batch of "
                f"{min(len(inputs), _BATCH_PROBE)} differs by up to "
                f"{gate.batch_dependence:.2g} (relative; allowed {MAX_BATCH_DEPENDENCE:g}), so "
                "a trigger decision would depend on the other events of a request"
            )
        gate.kernel_deviation = kernel_deviation(paths[method], inputs[:_BATCH_PROBE])
        if gate.kernel_deviation > MAX_KERNEL_DEVIATION:
            gate.reasons.append(
                f"the int8 kernels of this CPU score up to {gate.kernel_deviation:.2g} (relative; "
                f"allowed {MAX_KERNEL_DEVIATION:g}) off the quantized graph evaluated in float, "
                "so the file would score differently on another CPU"
            )
        gates[method] = gate
    return gates


def batch_dependence(path: Path, inputs: np.ndarray) -> float:
    """Max relative difference between each event's score alone (batch 1) and in one batch."""
    session = _session(path)
    together = _run(session, inputs).astype(np.float64)
    alone = np.concatenate([_run(session, row[None]) for row in inputs]).astype(np.float64)
    scale = np.maximum(np.abs(together), np.finfo(np.float32).tiny)
    return float(np.max(np.abs(alone - together) / scale))


def kernel_deviation(path: Path, inputs: np.ndarray) -> float:
    """Max relative difference between ``path``'s scores as served (ONNX Runtime's fused int8
    kernels) and with graph optimisations off (each QDQ pair evaluated in float, alike on every
    CPU), relative as in ``check_parity``. For a dynamic file both run integer MatMuls, so
    only the fusion is compared."""
    served = _run(_session(path), inputs)
    reference = _run(_session(path, optimize=False), inputs)
    return float(_relative_difference(served, reference).max())


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    background: str | Path,
    signals: Mapping[str, str | Path] | None = None,
    checkpoint: str = "best",
    score: str | None = None,
    **options: Any,
) -> Bundle:
    """``nae export``: the selected checkpoint of a training run as the bundle
    ``out_dir = models/<name>/<version>``, calibrated on the held-out ``background`` sample.

    The bundle's kind, input features and description come from the run's config; its
    provenance adds the run, the checkpoint (name, stage, step, selection metric), the
    resolved config as TOML with its sha256 and seed, every training sample's content hash and
    description, and ``commands``: the ``nae train`` line that remakes the run
    (``_train_command``) and the ``nae export`` line of this export (``export_command_line``),
    so that a bundle says how to rebuild it (its model card prints them). ``score`` picks
    which of a generator's scores (``TableVAE.scores``) the bundle returns (default: its
    config's). ``options`` are those of ``export_bundle`` (``int8``, ``target_efficiencies``,
    ``reference_rate_hz``, ...).
    """
    from training.checkpoint import load_model
    from training.config import config_to_toml
    from training.data.shards import describe_sample, hash_sample

    out_dir = Path(out_dir)
    if not out_dir.name.isdigit() or int(out_dir.name) < 1 or not out_dir.parent.name:
        raise ExportFailed(f"--out {out_dir} must be models/NAME/VERSION with VERSION >= 1")
    model, config, state = load_model(run_dir, checkpoint)
    if score is not None:
        _choose_score(model, score)
    kind = _KINDS[config.data.input]
    training_samples = [Path(path) for path in config.data.train]
    if any(_same_path(background, path) for path in training_samples):
        raise ExportFailed(
            f"calibration sample {background} is one the run trained on: thresholds need a "
            "background apart from training and validation (generate one with another seed)"
        )
    features = tuple(default_features(kind, model.input_shape, config.data.features))
    description = {
        "preprocessing": {
            "in_graph": True,
            "kind": config.model.preprocessing,
            "pt_power": getattr(config.model, "pt_power", 1.0),
        },
        "model": {
            "family": config.model.family,
            "architecture": getattr(config.model, "architecture", "dense"),
            "score": model.default_score,
            "hyperparameters": config.model.model_dump(mode="json"),
        },
        "provenance": {
            "run_dir": str(run_dir),
            "checkpoint": {
                "name": checkpoint,
                **{key: state.get(key) for key in ("stage", "step", "metric")},
            },
            "config_sha256": hashlib.sha256(config_to_toml(config).encode()).hexdigest(),
            "config_toml": config_to_toml(config),
            "seed": config.train.seed,
            "training_samples": [
                {"path": str(path), "sha256": hash_sample(path), **describe_sample(path)}
                for path in training_samples
            ],
            "commands": {
                "train": _train_command(config, run_dir),
                "export": export_command_line(
                    run_dir,
                    out_dir,
                    background=background,
                    signals=signals or {},
                    checkpoint=checkpoint,
                    score=score,
                    **{key: options[key] for key in _COMMAND_OPTIONS if key in options},
                ),
            },
        },
    }
    return export_bundle(
        model,
        out_dir,
        name=out_dir.parent.name,
        version=int(out_dir.name),
        kind=kind,
        background=Inputs(background, kind, features),
        signals={name: Inputs(path, kind, features) for name, path in (signals or {}).items()},
        description=description,
        **options,
    )


_KINDS: dict[str, Kind] = {
    "images": "jet-image",
    "features": "jet-features",
    "events": "event",
    "table": "event-features",
}


_COMMAND_OPTIONS = ("int8", "target_efficiencies", "prescales", "reference_rate_hz")


def export_command_line(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    background: str | Path,
    signals: Mapping[str, str | Path],
    checkpoint: str = "best",
    int8: bool = False,
    target_efficiencies: Sequence[float] = DEFAULT_EFFICIENCIES,
    prescales: Sequence[int] | None = None,
    reference_rate_hz: float = REFERENCE_RATE_HZ,
    score: str | None = None,
) -> str:
    """The ``nae export`` line that exports a run with these arguments (``export_run``'s): what
    a bundle records as its rebuild command. Options at their defaults are left out."""
    args = ["nae", "export", str(run_dir), "--out", str(out_dir), "--calibrate", str(background)]
    for name, path in signals.items():
        args += ["--signal", f"{name}={path}"]
    if int8:
        args.append("--int8")
    args += ["--bkg-eff", ",".join(repr(float(target)) for target in target_efficiencies)]
    if prescales is not None and any(int(prescale) != 1 for prescale in prescales):
        args += ["--prescale", ",".join(str(int(prescale)) for prescale in prescales)]
    if float(reference_rate_hz) != REFERENCE_RATE_HZ:
        args += ["--input-rate-hz", repr(float(reference_rate_hz))]
    if checkpoint != "best":
        args += ["--checkpoint", checkpoint]
    if score is not None:
        args += ["--score", score]
    return shlex.join(args)


def _train_command(config: Any, run_dir: str | Path) -> str:
    """The ``nae train`` line that remakes a run of ``config``: its recipe with its seed where
    that resolves to exactly this config (the Makefile's study runs), else the run's own
    resolved ``config.toml``, which the bundle's provenance also holds. An NAE started from an
    AE run (``train.init_from``) is preceded by the line of that run."""
    from training.config import load_config

    overrides = [f"train.seed={config.train.seed}"]
    source = getattr(config.train, "init_from", None)
    if source is not None:
        overrides += [f"train.init_from={source}", "train.ae_epochs=0"]
    try:
        same = load_config(config.name, overrides) == config
    except NaeError:  # not a recipe of training/configs/
        same = False
    if same:
        line = f"nae train {config.name} {' '.join(f'--set {o}' for o in overrides)}"
    else:
        line = f"nae train {Path(run_dir) / 'config.toml'}"
    line += f" --run-dir {run_dir}"
    if source is None:
        return line
    try:
        first = _train_command(load_config(Path(source) / "config.toml"), source)
    except NaeError:  # the AE run is not on this machine
        first = f"# first: the AE run {source} (train.init_from)"
    return f"{first}\n{line}"


def _choose_score(model: Any, score: str) -> None:
    """Make a generator's ``forward`` return ``score``; other models have one fixed score."""
    from training.models.generators.vae import TableVAE

    if not isinstance(model, TableVAE):
        raise ExportFailed(
            f"--score {score!r}: only generator runs (zgamma-*) choose their exported score"
        )
    available = model.score_names
    if score not in available:
        raise ExportFailed(f"--score {score!r}: this {type(model).__name__} has {available}")
    model.default_score = score


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _score_samples(
    paths: Mapping[str, Path],
    background: Inputs,
    signals: Mapping[str, Inputs],
    ranges: list[tuple[float | None, float | None]],
    features: list[str],
) -> dict[str, SampleScores]:
    """Every file's scores of the background and each signal, reading each sample once."""
    sessions = {name: _session(path) for name, path in paths.items()}

    def score(sample: Inputs, check_ranges: bool) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
        for chunk in sample.chunks(_BATCH):
            if check_ranges:
                _check_ranges(chunk, ranges, features, sample)
            for name, session in sessions.items():
                parts[name].append(_run(session, chunk))
        return {name: np.concatenate(values) for name, values in parts.items()}

    background_scores = score(background, check_ranges=True)
    signal_scores = {name: score(sample, check_ranges=False) for name, sample in signals.items()}
    return {
        name: SampleScores(
            background_scores[name],
            {signal: values[name] for signal, values in signal_scores.items()},
        )
        for name in sessions
    }


def _check_ranges(
    x: np.ndarray,
    ranges: list[tuple[float | None, float | None]],
    features: list[str],
    sample: Inputs,
) -> None:
    """Refuse ranges that the calibration background itself breaks: the service would refuse
    the very events the thresholds were set on."""
    columns = x.shape[-1]
    bounds = ranges * columns if len(ranges) == 1 else ranges
    for column, (low, high) in enumerate(bounds):
        values = x[..., column]
        if (low is not None and values.min() < low) or (high is not None and values.max() > high):
            label = features[column] if len(features) == columns else f"column {column}"
            raise ExportFailed(
                f"{sample.path}: {label} spans [{values.min():g}, {values.max():g}], outside the "
                f"declared input range [{low}, {high}]: widen the range or check the sample"
            )


def _metrics(scores: SampleScores) -> dict[str, dict[str, float]]:
    """Per signal: AUC with its DeLong error, 1/eps_B at each ``SIGNAL_EFFICIENCIES`` with its
    68% Clopper-Pearson interval (a lower limit alone when no background passes)."""
    metrics = {}
    for name, signal in scores.signals.items():
        auc = roc_auc(scores.background, signal)
        entry = {"auc": auc.value, "auc_error": auc.error, "n_signal": float(len(signal))}
        for efficiency in SIGNAL_EFFICIENCIES:
            key = f"rejection_at_eff_{efficiency:g}"
            rejection = rejection_at_signal_efficiency(scores.background, signal, efficiency)
            if np.isfinite(rejection.value):
                entry |= {key: rejection.value, f"{key}_low": rejection.low}
                entry[f"{key}_high"] = rejection.high
            else:
                entry[f"{key}_lower_limit"] = rejection.low
        metrics[name] = entry
    return metrics


def _ship_int8(
    gates: Mapping[Int8Method, Int8Gate], paths: Mapping[Int8Method, Path], out_dir: Path
) -> Int8Method | None:
    """Rename the passing int8 model fastest at batch 256 to ``INT8_FILE``; delete the rest."""
    passing = [method for method, gate in gates.items() if gate.passed]
    shipped = max(passing, key=lambda method: _speedup(gates[method], 256), default=None)
    for method, path in paths.items():
        if method == shipped:
            path.replace(out_dir / INT8_FILE)
        else:
            path.unlink()
    return shipped


def _recommended(shipped: Int8Method | None, gates: Mapping[Int8Method, Int8Gate]) -> str:
    if shipped is None:
        return MODEL_FILE
    faster = all(
        timing["speedup"] > 1 for timing in gates[shipped].timings if timing["batch_size"] >= 256
    )
    return INT8_FILE if faster else MODEL_FILE


def _int8_record(
    requested: bool, gates: Mapping[Int8Method, Int8Gate], shipped: Int8Method | None
) -> dict[str, Any]:
    if not requested:
        return {"requested": False}
    return {
        "requested": True,
        "shipped": shipped,
        "criteria": {
            "rate": "int8 background efficiency at each fp32 threshold inside its CI95",
            "max_abs_auc_change": MAX_AUC_CHANGE,
            "max_batch_dependence": MAX_BATCH_DEPENDENCE,
            "max_kernel_deviation": MAX_KERNEL_DEVIATION,
            "timing": "median CPU s per call, 1 intra-op thread, spinning off, interleaved",
        },
        "gates": {
            method: {**asdict(gate), "passed": gate.passed} for method, gate in gates.items()
        },
    }


def _speedup(gate: Int8Gate, batch_size: int) -> float:
    return next(t["speedup"] for t in gate.timings if t["batch_size"] == batch_size)


def _description(
    description: Mapping[str, Any] | None, background: Inputs, signals: Mapping[str, Inputs]
) -> dict[str, Any]:
    """``preprocessing``, ``model`` and ``provenance``: the caller's, with the calibration and
    signal samples, code version and git commit added to the provenance."""
    description = dict(description or {})
    provenance = dict(description.pop("provenance", {}))
    provenance |= {
        "calibration_sample": background.provenance(),
        "signal_samples": {name: sample.provenance() for name, sample in signals.items()},
        "code_version": __version__,
        "git": _git_state(),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tools": _tool_versions(),
    }
    return {**description, "provenance": provenance}


def _check_served(directory: Path, x: np.ndarray, expected: Mapping[str, np.ndarray]) -> None:
    """Load the bundle with the service's own code and score a few events with each file it
    ships (``expected``: file name -> the export's scores of that file): what was written is
    what the service will serve, whichever file it is told to run."""
    from service.runtime import OnnxModel

    bundle = load_bundle(directory)
    for model_file, scores in expected.items():
        model = OnnxModel(bundle, directory, model_file=model_file)
        if not np.allclose(model.score(np.ascontiguousarray(x)), scores, rtol=PARITY_RTOL, atol=0):
            raise ExportFailed(
                f"{directory}: the service's runtime scores of {model_file} differ from the "
                "export's"
            )


# --- small helpers --------------------------------------------------------------------------


def _session(path: Path, *, optimize: bool = True) -> Any:
    """An ONNX Runtime session configured as the service configures its own (``optimize``
    False: no graph optimisation, so QDQ pairs stay float operations)."""
    ort = require("onnxruntime", "train")
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # the quantized graphs' optimiser notes are not errors
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _relative_difference(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per event |actual - expected| / max(|expected|, its ``PARITY_SCALE_QUANTILE`` quantile)
    (``check_parity`` says why the floor); infinite where only the floor is 0."""
    expected = expected.astype(np.float64)
    difference = np.abs(actual.astype(np.float64) - expected)
    scale = np.abs(expected)
    scale = np.maximum(scale, np.quantile(scale, PARITY_SCALE_QUANTILE))
    relative = np.divide(difference, scale, out=np.zeros_like(difference), where=scale > 0)
    relative[(scale == 0) & (difference > 0)] = np.inf
    return relative


def _run(session: Any, x: np.ndarray) -> np.ndarray:
    return session.run(["score"], {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


def _score_file(path: Path, inputs: np.ndarray) -> np.ndarray:
    session = _session(path)
    return np.concatenate([_run(session, chunk) for chunk in _batches(inputs)])


def _cpu_seconds(session: Any, x: np.ndarray) -> float:
    start = time.process_time()
    _run(session, x)
    return time.process_time() - start


def _batches(x: np.ndarray, size: int = _BATCH) -> Iterator[np.ndarray]:
    for start in range(0, len(x), size):
        yield np.ascontiguousarray(x[start : start + size], dtype=np.float32)


# What a model's numbers depend on. Bundles, cards and docs are written while a bundle is made,
# so counting them would mark every export "dirty".
_CODE_PATHS = ("training", "service", "pyproject.toml")


def _git_state(root: Path = Path(__file__).resolve().parents[1]) -> dict[str, Any]:
    """The commit of this checkout and whether its code (``_CODE_PATHS``) had uncommitted
    changes; empty outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_CODE_PATHS],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "dirty": bool(status.strip())}


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {package: version(package) for package in ("torch", "onnx", "onnxruntime")}


@contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A hidden sibling of ``out_dir`` to build the bundle in, renamed to ``out_dir`` when the
    block succeeds and removed when it fails: a failed export leaves nothing, and a service
    watching ``models/`` never sees half a bundle."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportFailed(f"{out_dir} already holds files: choose a new version or remove it")
    work_dir = out_dir.with_name(f".{out_dir.name}.export")
    shutil.rmtree(work_dir, ignore_errors=True)  # what an interrupted export left
    work_dir.mkdir(parents=True)
    try:
        yield work_dir
        os.replace(work_dir, out_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence what torch's exporter prints on every export and that says nothing about this
    model: its torchvision-operator notes and a FutureWarning of torch's own internals."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)
