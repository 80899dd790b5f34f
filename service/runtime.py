"""``OnnxModel``: one ONNX Runtime session behind a bundle, and its working-point thresholds.

It knows nothing about HTTP. Sessions are configured for a server that runs one worker per core:
few intra-op threads, no inter-op parallelism, no spinning (a spinning thread burns the core that
the event loop needs between requests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.bundle import Bundle, InputSpec, InvalidBundle, ModelChoice

__all__ = ["InputRanges", "OnnxModel"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BLOCK_VALUES = 4096  # values compared per row of the range check (see ``InputRanges``)


class OnnxModel:
    """A loaded bundle: ``score(x)`` runs the network, ``triggers(scores)`` applies thresholds."""

    def __init__(
        self,
        bundle: Bundle,
        directory: Path,
        *,
        intra_op_threads: int = 1,
        model_file: ModelChoice = "recommended",
    ) -> None:
        self.bundle = bundle
        self.directory = Path(directory)
        self.name = bundle.name
        self.version = bundle.version
        self.input_shape: tuple[int, ...] = tuple(bundle.input.shape)  # per event, no batch axis
        self.working_points: tuple[str, ...] = tuple(wp.name for wp in bundle.working_points)
        self.thresholds = np.array([wp.threshold for wp in bundle.working_points], np.float32)
        self.ranges = InputRanges.from_spec(bundle.input) if bundle.input.ranges else None
        self._input_name = bundle.input.name
        self._output_name = bundle.output.name
        self.model_file = bundle.file_to_serve(model_file)  # the ONNX file this session runs
        self._session = _session(self.directory / self.model_file, intra_op_threads)
        self._check_interface()

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly scores ``(N,)`` float32 of a validated batch ``(N, *input_shape)`` float32."""
        return self._session.run([self._output_name], {self._input_name: x})[0]

    def fired(self, scores: np.ndarray) -> np.ndarray:
        """Bool ``(n_working_points, N)``: ``score > threshold`` (the calibration's rule)."""
        return scores[None, :] > self.thresholds[:, None]

    def triggers(self, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Working point name -> bool ``(N,)``, the rows of ``fired``."""
        return dict(zip(self.working_points, self.fired(scores), strict=True))

    def _check_interface(self) -> None:
        """Refuse a graph whose input/output differ from bundle.json, and warm the session up
        with one event so the first client request does not pay for lazy initialisation."""
        inputs = {node.name: node for node in self._session.get_inputs()}
        node = inputs.get(self._input_name)
        if node is None:
            raise InvalidBundle(
                f"{self.directory}: {self.model_file} has inputs {sorted(inputs)}, "
                f"bundle.json names {self._input_name!r}"
            )
        declared = list(node.shape)[1:]
        if len(declared) != len(self.input_shape) or any(
            isinstance(dim, int) and dim != expected
            for dim, expected in zip(declared, self.input_shape, strict=True)
        ):
            raise InvalidBundle(
                f"{self.directory}: {self.model_file} input shape {node.shape} does not match "
                f"bundle.json input shape [batch, {', '.join(map(str, self.input_shape))}]"
            )
        outputs = [output.name for output in self._session.get_outputs()]
        if self._output_name not in outputs:
            raise InvalidBundle(
                f"{self.directory}: {self.model_file} has outputs {outputs}, "
                f"bundle.json names {self._output_name!r}"
            )
        if node.type != "tensor(float)":
            raise InvalidBundle(
                f"{self.directory}: {self.model_file} input {self._input_name!r} is {node.type}; "
                "the contract is float32 (tensor(float))"
            )
        try:
            probe = self.score(np.zeros((1, *self.input_shape), np.float32))
        except Exception as exc:  # ORT raises its own untyped errors
            raise InvalidBundle(
                f"{self.directory}: {self.model_file} fails its test run on one event of zeros: "
                f"{_first_line(exc)}"
            ) from exc
        if probe.shape != (1,) or probe.dtype != np.float32:
            raise InvalidBundle(
                f"{self.directory}: {self.model_file} returns {probe.dtype} "
                f"{list(probe.shape)} for one event; the contract is float32 [batch]"
            )


def _session(path: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for unreadable graphs
        reason = _first_line(exc).replace(str(path), path.name)
        raise InvalidBundle(
            f"{path.parent}: ONNX Runtime cannot load {path.name}: {reason}"
        ) from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class InputRanges:
    """The valid values of one event, from ``bundle.input.ranges``: ``low`` and ``high``
    ``(*input_shape)`` float32, inclusive; an open side is float32's largest finite value, so
    that the check refuses NaN and infinity as well.

    ``contains`` is the hot-path check: four whole-array comparisons. Compared one event at a
    time, the bounds broadcast along rows of a few values, and numpy's inner loop runs a few
    values per call; so the events are compared in blocks of ``_BLOCK_VALUES`` values against
    bounds tiled to that length."""

    def __init__(self, low: np.ndarray, high: np.ndarray, features: list[str]) -> None:
        self.low = low
        self.high = high
        self.features = features
        self._events_per_block = max(1, _BLOCK_VALUES // low.size)
        self._low_block = np.tile(low.ravel(), self._events_per_block)
        self._high_block = np.tile(high.ravel(), self._events_per_block)

    @classmethod
    def from_spec(cls, spec: InputSpec) -> InputRanges:
        bounds = spec.column_bounds()
        low = np.array([-_FLOAT32_MAX if lo is None else lo for lo, _ in bounds], np.float32)
        high = np.array([_FLOAT32_MAX if hi is None else hi for _, hi in bounds], np.float32)
        shape = tuple(spec.shape)
        columns = spec.features if len(spec.features) == shape[-1] else []
        return cls(
            np.ascontiguousarray(np.broadcast_to(low, shape)),
            np.ascontiguousarray(np.broadcast_to(high, shape)),
            columns,
        )

    def contains(self, x: np.ndarray) -> bool:
        """Whether every value of ``x`` ``(N, *input_shape)`` (C-contiguous float32) lies in
        its interval; false for NaN and infinity."""
        per_event = self.low.size
        flat = x.reshape(-1)
        n_blocked = (len(x) // self._events_per_block) * self._events_per_block
        blocks = flat[: n_blocked * per_event].reshape(-1, self._low_block.size)
        rest = flat[n_blocked * per_event :].reshape(-1, per_event)
        return bool(
            (blocks >= self._low_block).all()
            and (blocks <= self._high_block).all()
            and (rest >= self.low.ravel()).all()
            and (rest <= self.high.ravel()).all()
        )

    def first_violation(self, x: np.ndarray) -> tuple[int, tuple[int, ...]] | None:
        """``(event, index within the event)`` of the first value outside its interval."""
        outside = ~((x >= self.low) & (x <= self.high))  # (N, *input_shape)
        per_event = outside.reshape(len(x), -1)
        events = np.flatnonzero(per_event.any(axis=1))
        if not len(events):
            return None
        event = int(events[0])
        index = np.unravel_index(int(np.argmax(per_event[event])), self.low.shape)
        return event, tuple(int(i) for i in index)

    def describe(self, index: tuple[int, ...]) -> tuple[str, str]:
        """Where ``index`` is in an event (``"row 3, 'eta'"``) and its interval
        (``"[-5, 5]"``)."""
        column = index[-1]
        name = repr(self.features[column]) if self.features else f"column {column}"
        where = ", ".join([*(f"row {i}" for i in index[:-1]), name])
        low, high = float(self.low[index]), float(self.high[index])
        low_text = "-inf" if low == -_FLOAT32_MAX else f"{low:g}"
        high_text = "inf" if high == _FLOAT32_MAX else f"{high:g}"
        return where, f"[{low_text}, {high_text}]"
