"""Session fixtures shared by the test tree.

Service tests need no torch: ``bundle_factory`` writes real bundles whose ``model.onnx`` is a tiny
real ONNX graph built with ``onnx.helper``, score = sum over features of (x - mu)^2, through the
same ``service.bundle.write_bundle`` the training side uses. ``live_server`` runs the real app
under uvicorn on a free loopback port, for clients that need a socket (tritonclient,
Prometheus).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

EVENT_SHAPE = (19, 4)
IMAGE_SHAPE = (40, 40)
EVENT_BUNDLE = "events-test-ae"
IMAGE_BUNDLE = "jets-test-image-nae"


def reference_scores(x: np.ndarray, mu: float = 0.0) -> np.ndarray:
    """What the test graph computes, in numpy: sum over all non-batch axes of (x - mu)^2."""
    return ((x.astype(np.float64) - mu) ** 2).reshape(len(x), -1).sum(axis=1)


def write_test_onnx(path: Path, input_shape: Sequence[int], *, mu: float = 0.0) -> None:
    """A real ONNX graph ``x [batch, *input_shape] -> score [batch]`` = sum (x - mu)^2."""
    import onnx
    from onnx import TensorProto, helper

    axes = list(range(1, len(input_shape) + 1))
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["x", "mu"], ["centred"]),
            helper.make_node("Mul", ["centred", "centred"], ["squared"]),
            helper.make_node("ReduceSum", ["squared", "axes"], ["score"], keepdims=0),
        ],
        "sum_of_squares",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        initializer=[
            helper.make_tensor("mu", TensorProto.FLOAT, [], [mu]),
            helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def make_bundle(
    models_dir: Path,
    name: str,
    version: int,
    input_shape: Sequence[int],
    thresholds: Mapping[str, float] | None = None,
    *,
    kind: str = "event",
    mu: float = 0.0,
    features: Sequence[str] = (),
    ranges: object = None,
) -> Path:
    """Write ``models_dir/name/version/`` with a test graph and a contract-2 bundle.json; returns
    the bundle directory. ``thresholds`` maps working point name -> threshold; ``features``
    and ``ranges`` go to ``bundle.input``."""
    from service.bundle import MODEL_FILE, REFERENCE_RATE_HZ, Bundle, digest_files, write_bundle

    if thresholds is None:
        n_features = int(np.prod(input_shape))
        thresholds = {"eff_1e-1": n_features * 1.2, "eff_1e-2": n_features * 1.5}
    directory = Path(models_dir) / name / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    write_test_onnx(directory / MODEL_FILE, input_shape, mu=mu)
    rate_hz = REFERENCE_RATE_HZ
    working_points = [
        {
            "name": wp_name,
            "target_background_efficiency": 0.1 / 10**i,
            "threshold": threshold,
            "background_efficiency": 0.1 / 10**i,
            "background_efficiency_ci95": [0.09 / 10**i, 0.11 / 10**i],
            "n_background": 10_000,
            "expected_rate_hz": rate_hz * 0.1 / 10**i,
        }
        for i, (wp_name, threshold) in enumerate(thresholds.items())
    ]
    bundle = Bundle(
        schema_version=1,
        name=name,
        version=version,
        kind=kind,
        input={
            "name": "x",
            "shape": list(input_shape),
            "dtype": "float32",
            "features": list(features),
            "ranges": ranges,
        },
        output={"name": "score"},
        files=digest_files(directory, [MODEL_FILE]),
        reference_rate_hz=rate_hz,
        working_points=working_points,
        metrics={"test-signal": {"auc": 0.5}},
    )
    write_bundle(directory, bundle)
    return directory


@pytest.fixture(scope="session")
def bundle_factory() -> Callable[..., Path]:
    """``bundle_factory(models_dir, name, version, input_shape, thresholds=None, *, kind, mu,
    features, ranges)`` writes one real bundle and returns its directory."""
    return make_bundle


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only models directory: ``events-test-ae/1`` (input [19, 4]) and
    ``jets-test-image-nae/1`` (input [40, 40]). Copy it, or use ``bundle_factory`` on a
    ``tmp_path``, before changing anything."""
    directory = tmp_path_factory.mktemp("models")
    make_bundle(directory, EVENT_BUNDLE, 1, EVENT_SHAPE)
    make_bundle(directory, IMAGE_BUNDLE, 1, IMAGE_SHAPE, kind="jet-image")
    return directory


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def _running_server(app: object, settings: object) -> Iterator[str]:
    import uvicorn

    from service.server import uvicorn_config

    port = free_port()
    # As `nae serve` runs it (service.server), without the malloc settings of the process.
    config = uvicorn_config(app, settings, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server() -> Callable[..., AbstractContextManager[str]]:
    """``with live_server(settings) as address:`` runs ``create_app(settings)`` under uvicorn in a
    thread and yields ``"127.0.0.1:PORT"``; the server stops when the block ends."""
    from service.app import create_app

    def serve(settings: object) -> AbstractContextManager[str]:
        return _running_server(create_app(settings), settings)

    return serve


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` (a failed connection counts as false) until it holds, or fail the
    test naming ``what``. Bounded, so a hung server never hangs the suite."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, httpx.TransportError):  # not listening yet
            pass
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., None]:
    """``wait_for(condition, what, timeout_s=60)``: poll until true, else fail naming ``what``."""
    return wait_until


@contextmanager
def _running_process(
    command: Sequence[str | Path], log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(part) for part in command], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def running_process() -> Callable[..., AbstractContextManager[subprocess.Popen[bytes]]]:
    """``with running_process(command, log_path, env=None) as process:`` runs a server the
    test needs, its output in ``log_path``, and always stops it (terminate, then kill)."""
    return _running_process


@pytest.fixture(scope="session")
def loopback_port() -> Callable[[], int]:
    """``loopback_port()``: a free TCP port on 127.0.0.1 for a server the test starts."""
    return free_port


def _metric_value(metrics_text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="session")
def metric_value() -> Callable[..., float]:
    """``metric_value(metrics_text, name, **labels)``: one sample's value (0 when absent)."""
    return _metric_value


@pytest.fixture(scope="session")
def nae() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``nae(*args)``: the installed ``nae`` command on one thread, output captured, never
    raising on a failing exit code (tests check ``returncode`` and ``stderr`` themselves)."""
    command = Path(sys.executable).with_name("nae")

    def run(*args: str | Path | int | float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(command), *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=300,
            check=False,
        )

    return run
