"""``OnnxModel``: one ONNX Runtime session behind a bundle, and its working-point thresholds.

It knows nothing about HTTP. Sessions are configured for a server that runs one worker per core:
few intra-op threads, no inter-op parallelism, no spinning (a spinning thread burns the core that
the event loop needs between requests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.bundle import MODEL_FILE, Bundle, InvalidBundle

__all__ = ["OnnxModel"]


class OnnxModel:
    """A loaded bundle: ``score(x)`` runs the network, ``triggers(scores)`` applies thresholds."""

    def __init__(self, bundle: Bundle, directory: Path, *, intra_op_threads: int = 1) -> None:
        self.bundle = bundle
        self.directory = Path(directory)
        self.name = bundle.name
        self.version = bundle.version
        self.input_shape: tuple[int, ...] = tuple(bundle.input.shape)  # per event, no batch axis
        self.working_points: tuple[str, ...] = tuple(wp.name for wp in bundle.working_points)
        self.thresholds = np.array([wp.threshold for wp in bundle.working_points], np.float32)
        self._input_name = bundle.input.name
        self._output_name = bundle.output.name
        self._session = _session(self.directory / MODEL_FILE, intra_op_threads)
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
                f"{self.directory}: {MODEL_FILE} has inputs {sorted(inputs)}, "
                f"bundle.json names {self._input_name!r}"
            )
        declared = list(node.shape)[1:]
        if len(declared) != len(self.input_shape) or any(
            isinstance(dim, int) and dim != expected
            for dim, expected in zip(declared, self.input_shape, strict=True)
        ):
            raise InvalidBundle(
                f"{self.directory}: {MODEL_FILE} input shape {node.shape} does not match "
                f"bundle.json input shape [batch, {', '.join(map(str, self.input_shape))}]"
            )
        outputs = [output.name for output in self._session.get_outputs()]
        if self._output_name not in outputs:
            raise InvalidBundle(
                f"{self.directory}: {MODEL_FILE} has outputs {outputs}, "
                f"bundle.json names {self._output_name!r}"
            )
        probe = self.score(np.zeros((1, *self.input_shape), np.float32))
        if probe.shape != (1,) or probe.dtype != np.float32:
            raise InvalidBundle(
                f"{self.directory}: {MODEL_FILE} returns {probe.dtype} {list(probe.shape)} for "
                "one event; the contract is float32 [batch]"
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
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidBundle(
            f"{path.parent}: ONNX Runtime cannot load {path.name}: {reason}"
        ) from exc
