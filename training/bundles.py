"""``nae bundle verify``, ``nae bundle score`` and ``nae bundle drop-int8``: a bundle checked
and run offline by the service's own code, ``service.bundle.load_bundle`` and
``service.runtime.OnnxModel``, so that what passes here loads in the service and offline scores
are the served ones.

Inputs are checked as the service checks a request (the bundle's per-event shape, finite
values, ``input.ranges``), but a bad event names its row in the whole sample.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from service.bundle import (
    INT8_FILE,
    MODEL_FILE,
    Bundle,
    InvalidBundle,
    ModelChoice,
    load_bundle,
    write_bundle,
)
from training.calibration import CONFIDENCE, Efficiency
from training.data.inputs import Inputs
from training.errors import BadBundle, BadSample
from training.metrics import clopper_pearson

if TYPE_CHECKING:
    from service.runtime import OnnxModel

__all__ = ["ScoreSummary", "bundle_inputs", "drop_int8", "score_bundle", "verify_bundle"]

_CHUNK = 10_000


class ScoreSummary(NamedTuple):
    """What ``score_bundle`` did: the file it ran, the number of events, and per working point
    the events passing (``score > threshold``) with their Clopper-Pearson 95% interval."""

    model_file: str
    n_events: int
    passing: dict[str, Efficiency]
    scores_path: Path | None


def verify_bundle(directory: str | Path) -> Bundle:
    """Check a bundle as the service loads it: schema, every file's sha256, and each ONNX
    file's interface and test run; raises ``BadBundle`` with the service's one-line reason."""
    from service.runtime import OnnxModel

    directory = Path(directory)
    try:
        bundle = load_bundle(directory)
        for model_file in (MODEL_FILE, INT8_FILE):
            if model_file in bundle.files:
                OnnxModel(bundle, directory, model_file=model_file)
    except InvalidBundle as exc:
        raise BadBundle(str(exc)) from None
    return bundle


def drop_int8(directory: str | Path, why: str) -> Bundle:
    """Withdraw a bundle's int8 file in place: ``bundle.json`` loses its entry, recommends
    ``model.onnx`` and records ``int8.withdrawn`` (the method that had shipped, ``why``, when),
    then the file is deleted. The fp32 model and the thresholds, calibrated on its scores, are
    untouched, so whoever serves ``model.onnx`` sees no change; a service serving the int8
    file falls back to fp32 at its next reload. For an int8 file found wrong after it shipped
    (session 23: scores that depend on the CPU's instruction set)."""
    directory = Path(directory)
    bundle = verify_bundle(directory)
    if INT8_FILE not in bundle.files:
        raise BadBundle(f"{directory}: ships no {INT8_FILE}: nothing to withdraw")
    if not why.strip():
        raise BadBundle("say why the int8 file is withdrawn (--why)")
    raw = bundle.model_dump(mode="json")
    del raw["files"][INT8_FILE]
    raw["recommended"] = MODEL_FILE
    int8 = dict(raw.get("int8") or {})
    int8["withdrawn"] = {
        "method": int8.get("shipped"),
        "why": why.strip(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    int8["shipped"] = None
    raw["int8"] = int8
    write_bundle(directory, Bundle.model_validate(raw))  # bundle.json first: never a dangling entry
    (directory / INT8_FILE).unlink()
    return verify_bundle(directory)


def score_bundle(
    directory: str | Path,
    source: str | Path,
    *,
    out: str | Path | None = None,
    model_file: ModelChoice = "recommended",
    progress: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Score every event of ``source`` (a shard directory or file, an ``.npy``, a landscape or
    ADC2021 file) with the bundle in ``directory``; writes the float32 scores ``(N,)`` to
    ``out`` (``.npy``) when given. ``progress(k)`` is called after each chunk of k events."""
    from service.runtime import OnnxModel

    bundle = verify_bundle(directory)
    model = OnnxModel(bundle, Path(directory), model_file=model_file)
    inputs = bundle_inputs(bundle, source)
    scores, fired, n_events = [], np.zeros(len(model.working_points), np.int64), 0
    for chunk in inputs.chunks(_CHUNK):
        x = _checked(chunk, model, first_row=n_events, source=inputs.path)
        chunk_scores = model.score(x)
        fired += model.fired(chunk_scores).sum(axis=1)
        scores.append(chunk_scores)
        n_events += len(x)
        if progress is not None:
            progress(len(x))
    if n_events == 0:
        raise BadSample(f"{inputs.path}: no events to score")
    scores_path = None
    if out is not None:
        scores_path = Path(out)
        np.save(scores_path, np.concatenate(scores))
    interval = {k: clopper_pearson(k, n_events, confidence=CONFIDENCE) for k in fired.tolist()}
    passing = {
        name: Efficiency(k, n_events, k / n_events, interval[k])
        for name, k in zip(model.working_points, fired.tolist(), strict=True)
    }
    return ScoreSummary(model.model_file, n_events, passing, scores_path)


def bundle_inputs(bundle: Bundle, source: str | Path) -> Inputs:
    """``source`` read as the bundle's inputs: its kind, and the columns ``_columns`` names."""
    return Inputs(source, bundle.kind, _columns(bundle))


def _columns(bundle: Bundle) -> tuple[str, ...]:
    """The ``Inputs`` features of a bundle: its named columns; none for images, and for event
    bundles that name none, the leading columns its input shape holds."""
    from training.data.inputs import EVENT_FEATURES

    if bundle.kind == "jet-image":
        return ()
    if bundle.kind == "event" and not bundle.input.features:
        return EVENT_FEATURES[: bundle.input.shape[-1]]
    return tuple(bundle.input.features)


def _checked(x: np.ndarray, model: OnnxModel, *, first_row: int, source: Path) -> np.ndarray:
    """Refuse what the service would refuse: another per-event shape, NaN or infinity, values
    outside ``input.ranges``; the message names the row in the whole sample."""
    if x.shape[1:] != model.input_shape:
        raise BadSample(
            f"{source}: events of shape {list(x.shape[1:])}; the bundle takes "
            f"{list(model.input_shape)}"
        )
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        raise BadSample(f"{source}: event {first_row + int(np.argmin(finite))} holds NaN or inf")
    if model.ranges is not None and not model.ranges.contains(x):
        event, index = model.ranges.first_violation(x)
        where, interval = model.ranges.describe(index)
        raise BadSample(
            f"{source}: event {first_row + event}, {where} = {float(x[(event, *index)]):g} is "
            f"outside the bundle's input range {interval}"
        )
    return x
