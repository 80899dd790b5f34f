"""Benchmarks of the scoring service against raw ONNX Runtime (issue 3, item 8), and of each
shipped bundle's int8 model against its fp32 model (issue 9).

    .venv/bin/python -m benchmarks.service [--seconds 2] [--rounds 3]
    .venv/bin/python -m benchmarks.service --bundle models/events-sm-nae/3 models/jets-...
    .venv/bin/python -m benchmarks.service --bundle models/*/[0-9]* --parts int8 --out B.json

(run as a module from the repository root: as a plain script, this file's name would shadow the
``service`` package it benchmarks)

Prints one table per experiment and writes everything, with a description of the machine, to
benchmarks/results/service.json (``--out``); docs/performance.md discusses the numbers.

Without ``--bundle`` the served bundle is a dense autoencoder on the 19x4 trigger event
(76-64-32-8-32-64-76, ReLU, standardisation in the graph, score = mean squared reconstruction
error), built with onnx.helper from seeded random weights: a realistic ONNX Runtime cost per
event without needing torch. ``--bundle DIR...`` benchmarks those bundles instead (any kind:
event, jet-image, jet-features), each served with its recommended file, on the real Pythia
inputs of examples/ for its kind and shape (``examples/examples.json``), repeated to the batch
size.

How the numbers are taken, and why:

- The server is `nae serve` in its own process (one uvicorn worker, ONNX Runtime on 1 thread),
  exactly as deployed. Load comes from `wrk` (C, one thread, keep-alive connections, the body set
  in a Lua script), which spends far less CPU per request than any Python client; that matters
  because this machine's two vCPUs behave like one core shared by server and load generator.
- The machine's speed drifts by up to ~1.8x within seconds, so every HTTP measurement is paired
  with a raw ONNX Runtime measurement of the same batch size taken right before it, in short
  alternating rounds; tables report the median over rounds of the ratio HTTP / raw.
- CPU time is reported too: the server's CPU seconds per event (from /proc) against raw ONNX
  Runtime's, which does not depend on how the core is shared with the load generator.
- wrk is closed-loop, so single-event latency is also measured open-loop: a separate Python
  process sends requests at Poisson arrival times over keep-alive connections and measures each
  latency from the scheduled arrival, so queueing delay is counted (no coordinated omission).
- int8 against fp32 (part ``int8``, bundles that ship ``model.int8.onnx``): both files loaded by
  the service's ``OnnxModel`` (1 intra-op thread, spinning off), at batch 1, 256 and 4096, in
  paired rounds that call fp32 and int8 in turn (the order alternating) for about the same CPU
  time each; per round the ratio of CPU time per call, reported as the median over rounds with
  its range. CPU time (this process's), not wall time, so a busy sibling core counts less.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import itertools
import json
import math
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import orjson
from onnx import TensorProto, helper, numpy_helper
from scipy.stats import beta

from service.bundle import (
    MODEL_FILE,
    REFERENCE_RATE_HZ,
    Bundle,
    digest_files,
    load_bundle,
    write_bundle,
)
from service.runtime import OnnxModel
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "service.json"
BUNDLE_NAME = "bench-ae"
EVENT_SHAPE = (19, 4)  # MET, 4 e, 4 mu, 10 jets x (pt, eta, phi, class id)
LAYER_WIDTHS = (76, 64, 32, 8, 32, 64, 76)
BATCH_SIZES = (1, 100, 1_000, 10_000)
CLIENT_COUNTS = (1, 8)
FORMATS = ("json", "npy", "raw", "v2")
PARTS = ("throughput", "latency", "batching", "int8")
INT8_BATCH_SIZES = (1, 256, 4096)  # the export's int8 gate times the same batch sizes
EXAMPLES = ROOT / "examples"
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


# --- the benchmark bundle -------------------------------------------------------------------


def events_from_seed(n: int, seed: int) -> np.ndarray:
    """Synthetic trigger events ``(n, 19, 4)`` float32 with physical ranges: pt [GeV]
    exponential, eta normal, phi uniform, class id per row; random rows zero-padded."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, *EVENT_SHAPE), np.float32)
    x[..., 0] = rng.exponential(30.0, (n, 19))
    x[..., 1] = rng.normal(0.0, 1.5, (n, 19))
    x[..., 2] = rng.uniform(-np.pi, np.pi, (n, 19))
    x[..., 3] = np.array([0] + [1] * 4 + [2] * 4 + [3] * 10, np.float32)
    x[rng.random((n, 19)) < 0.5] = 0.0
    return x


def autoencoder_from_seed(seed: int) -> onnx.ModelProto:
    """The dense autoencoder with standardisation in the graph; output ``score`` (N,) is the
    mean squared error between the standardised input and its reconstruction."""
    rng = np.random.default_rng(seed)
    sample = events_from_seed(10_000, seed + 1).reshape(-1, LAYER_WIDTHS[0])
    constants = {
        "shape": np.array([-1, LAYER_WIDTHS[0]], np.int64),
        "mean": sample.mean(axis=0),
        "inv_std": 1.0 / (sample.std(axis=0) + 1e-3),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_std"], ["h0"]),
    ]
    n_layers = len(LAYER_WIDTHS) - 1
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(LAYER_WIDTHS)):
        constants[f"w{i}"] = rng.normal(0, np.sqrt(2 / fan_in), (fan_in, fan_out)).astype("f4")
        constants[f"b{i}"] = np.zeros(fan_out, np.float32)
        linear = f"h{i + 1}" if i in (2, n_layers - 1) else f"a{i + 1}"
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"w{i}", f"b{i}"], [linear]))
        if linear.startswith("a"):  # ReLU everywhere except the latent and output layers
            nodes.append(helper.make_node("Relu", [linear], [f"h{i + 1}"]))
    nodes += [
        helper.make_node("Sub", [f"h{n_layers}", "h0"], ["error"]),
        helper.make_node("Mul", ["error", "error"], ["squared"]),
        helper.make_node("ReduceMean", ["squared"], ["score"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "dense_autoencoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *EVENT_SHAPE])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        initializer=[numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def write_benchmark_bundle(models_dir: Path, seed: int = 0) -> Path:
    """models_dir/bench-ae/1/ with working points calibrated on 200k synthetic events."""
    directory = models_dir / BUNDLE_NAME / "1"
    directory.mkdir(parents=True)
    onnx.save(autoencoder_from_seed(seed), directory / MODEL_FILE)
    session = ort.InferenceSession(directory / MODEL_FILE, providers=["CPUExecutionProvider"])
    n_background = 200_000
    scores = session.run(["score"], {"x": events_from_seed(n_background, seed + 2)})[0]
    working_points = []
    for efficiency in (1e-2, 1e-3):
        threshold = float(np.quantile(scores, 1 - efficiency))
        k = int((scores > threshold).sum())
        low = float(beta.ppf(0.025, k, n_background - k + 1)) if k else 0.0
        high = float(beta.ppf(0.975, k + 1, n_background - k))
        working_points.append(
            {
                "name": f"eff_{efficiency:.0e}",
                "target_background_efficiency": efficiency,
                "threshold": threshold,
                "background_efficiency": k / n_background,
                "background_efficiency_ci95": [low, high],
                "n_background": n_background,
                "expected_rate_hz": k / n_background * REFERENCE_RATE_HZ,
            }
        )
    bundle = Bundle(
        schema_version=1,
        name=BUNDLE_NAME,
        version=1,
        kind="event",
        input={"name": "x", "shape": list(EVENT_SHAPE), "dtype": "float32"},
        output={"name": "score"},
        files=digest_files(directory, [MODEL_FILE]),
        reference_rate_hz=REFERENCE_RATE_HZ,
        working_points=working_points,
    )
    write_bundle(directory, bundle)
    return directory


# --- request bodies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request as wrk and the Poisson client send it."""

    path: str
    headers: dict[str, str]
    body: bytes

    def wire_bytes(self, host: str) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(self.body)}"]
        lines += [f"{key}: {value}" for key, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def request_for(fmt: str, x: np.ndarray, name: str = BUNDLE_NAME) -> Request:
    """The request carrying inputs ``x`` (N, *input_shape) to bundle ``name`` in one of FORMATS.
    Binary formats ask for a binary answer too, so neither direction builds per-number Python
    objects."""
    if fmt == "json":
        # Clients send decimal text: round to 4 decimals (float64, so orjson writes it short).
        inputs = x.astype(np.float64).round(4).tolist()
        body = orjson.dumps({"model": name, "inputs": inputs})
        return Request("/score", {"Content-Type": "application/json"}, body)
    if fmt == "npy":
        stream = io.BytesIO()
        np.save(stream, x)
        headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
        return Request(f"/score?model={name}", headers, stream.getvalue())
    if fmt == "raw":
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Shape": ",".join(map(str, x.shape)),
            "Accept": "application/x-npy",
        }
        return Request(f"/score?model={name}", headers, x.astype("<f4").tobytes())
    if fmt == "v2":
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": list(x.shape),
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes},
                    }
                ],
                "outputs": [{"name": "score", "parameters": {"binary_data": True}}],
            }
        )
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
        return Request(f"/v2/models/{name}/infer", headers, header + x.tobytes())
    raise ValueError(f"unknown format {fmt!r}, expected one of {FORMATS}")


# --- the server under test --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A running `nae serve` process."""

    process: subprocess.Popen[bytes]
    port: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND

    def memory_mib(self) -> dict[str, float]:
        """Resident memory now (VmRSS) and at its peak (VmHWM), MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return {
            key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) / 1024
            for key in ("VmRSS", "VmHWM")
        }

    def post(self, request: Request) -> bytes:
        """Send one request and return the body; raises unless the answer is 200."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", request.path, request.body, request.headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"{request.path} answered {response.status}: {body[:200]!r}")
        return body

    def metric_total(self, name: str) -> float:
        """Sum of all samples of one metric on /metrics (e.g. nae_batch_size_count)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        pattern = rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$"
        return sum(float(value) for value in re.findall(pattern, text, re.M))


@contextmanager
def running_server(
    models_dir: Path, command: list[str] | None = None, **settings: str
) -> Iterator[Server]:
    """Start `nae serve` (or ``command``, which gets ``--port PORT`` appended) on a free
    loopback port with NAE_* settings; always stop it."""
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env |= {f"NAE_{key.upper()}": value for key, value in settings.items()}
    if command is None:
        nae = str(Path(sys.executable).with_name("nae"))
        command = [nae, "serve", "--models", str(models_dir), "--host", "127.0.0.1"]
    command = [*command, "--port", str(port)]
    # The server's log (start-up lines; `nae serve` has no access log by default) goes next to
    # the models directory, out of the tables.
    with (models_dir.parent / f"serve-{port}.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_ready(port, process)
            yield Server(process, port)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nae serve exited with code {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"nae serve not ready after {timeout_s} s")


# --- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """Throughput, CPU cost and (for HTTP) latency of one timed run."""

    events_per_s: float
    cpu_us_per_event: float
    p50_ms: float | None = None
    p99_ms: float | None = None


def measure_raw(model: OnnxModel, x: np.ndarray, seconds: float) -> Measurement:
    """Raw ONNX Runtime on the service's own session settings, in this process."""
    calls = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while (wall := time.perf_counter() - wall0) < seconds:
        model.score(x)
        calls += 1
    events = calls * len(x)
    return Measurement(events / wall, (time.process_time() - cpu0) / events * 1e6)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.path = {path}
{headers}
local file = assert(io.open({body_path}, "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f\\n", summary.requests, summary.duration,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def measure_wrk(
    server: Server, request: Request, n_events: int, connections: int, seconds: int
) -> Measurement:
    """Closed-loop load from wrk (one thread, `connections` keep-alive connections)."""
    with tempfile.TemporaryDirectory() as scratch:
        body_path = Path(scratch) / "body"
        body_path.write_bytes(request.body)
        headers = "\n".join(
            f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}"
            for key, value in request.headers.items()
        )
        script = Path(scratch) / "request.lua"
        script.write_text(
            WRK_SCRIPT.format(
                path=json.dumps(request.path), headers=headers, body_path=json.dumps(str(body_path))
            )
        )
        cpu0 = server.cpu_seconds()
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                f"http://127.0.0.1:{server.port}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = server.cpu_seconds() - cpu0
    requests, duration_us, status_errors, socket_errors, p50_us, p99_us = (
        float(v) for v in re.search(r"^RESULT (.*)$", output, re.M).group(1).split()
    )
    if status_errors or socket_errors or not requests:
        raise RuntimeError(f"wrk: {status_errors:.0f} bad statuses, {socket_errors:.0f} errors")
    events = requests * n_events
    return Measurement(events / duration_us * 1e6, cpu / events * 1e6, p50_us / 1e3, p99_us / 1e3)


def measure_poisson(
    server: Server, request: Request, rate_hz: float, connections: int, seconds: float
) -> Measurement:
    """Open-loop single-event latency from a separate process (``poisson`` subcommand)."""
    with tempfile.NamedTemporaryFile(suffix=".http") as wire:
        wire.write(request.wire_bytes(f"127.0.0.1:{server.port}"))
        wire.flush()
        cpu0 = server.cpu_seconds()
        output = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.service",
                "poisson",
                "--port",
                str(server.port),
                "--request",
                wire.name,
                "--rate",
                str(rate_hz),
                "--connections",
                str(connections),
                "--seconds",
                str(seconds),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
        cpu = server.cpu_seconds() - cpu0
    result = json.loads(output)
    return Measurement(
        result["sent"] / seconds, cpu / result["sent"] * 1e6, result["p50_ms"], result["p99_ms"]
    )


async def _poisson_client(
    port: int, wire: bytes, rate_hz: float, connections: int, seconds: float
) -> dict[str, float]:
    """Send `wire` at Poisson arrival times over keep-alive connections; latency counts from
    each request's scheduled arrival, so waiting for a free connection is included."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(1)
    offsets = np.cumsum(rng.exponential(1 / rate_hz, int(rate_hz * seconds * 1.5) + 10))
    offsets = offsets[offsets < seconds]
    queue: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (scheduled := await queue.get()) is not None:
            writer.write(wire)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"server answered {head.splitlines()[0]!r}")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append(loop.time() - scheduled)
        writer.close()

    clients = [asyncio.create_task(client()) for _ in range(connections)]
    start = loop.time() + 0.2
    for offset in offsets:
        await asyncio.sleep(max(0.0, start + offset - loop.time()))
        queue.put_nowait(start + offset)
    for _ in clients:
        queue.put_nowait(None)
    await asyncio.gather(*clients)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return {"sent": len(latencies), "p50_ms": float(p50), "p99_ms": float(p99)}


# --- what is benchmarked ---------------------------------------------------------------------


@dataclass
class Target:
    """One served bundle: its name, its directory, the recommended model as the service runs
    it, and ``inputs(n, seed)``, a batch (n, *input_shape) float32 it accepts."""

    name: str
    directory: Path
    model: OnnxModel
    inputs: Callable[[int, int], np.ndarray]


def synthetic_target(models_dir: Path) -> Target:
    """The seeded benchmark bundle (``write_benchmark_bundle``) and its synthetic events."""
    directory = write_benchmark_bundle(models_dir)
    model = OnnxModel(load_bundle(directory), directory, intra_op_threads=1)
    return Target(BUNDLE_NAME, directory, model, lambda n, seed: events_from_seed(n, seed))


def bundle_targets(directories: list[Path], models_dir: Path) -> list[Target]:
    """Each bundle directory linked into ``models_dir`` as NAME/VERSION (the layout the service
    reads), with the examples/ inputs of its kind and shape as its requests."""
    targets = []
    for directory in directories:
        bundle = load_bundle(directory)
        link = models_dir / bundle.name / str(bundle.version)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(directory.resolve(), target_is_directory=True)
        model = OnnxModel(bundle, link, intra_op_threads=1)
        targets.append(Target(bundle.name, link, model, _example_inputs(bundle)))
    return targets


def _example_inputs(bundle: Bundle) -> Callable[[int, int], np.ndarray]:
    """``inputs(n, seed)``: the examples/ file of the bundle's kind and input shape, its events
    in a seeded random order, repeated to n."""
    manifest = json.loads((EXAMPLES / "examples.json").read_text())
    stems = [
        entry["stem"]
        for entry in manifest
        if (entry["kind"], entry["shape"]) == (bundle.kind, bundle.input.shape)
    ]
    if not stems:
        sys.exit(
            f"{bundle.name}: examples/ holds no {bundle.kind} input of shape {bundle.input.shape}"
        )
    pool = np.concatenate([np.load(EXAMPLES / f"{stem}.npy") for stem in stems])

    def inputs(n: int, seed: int) -> np.ndarray:
        order = np.random.default_rng(seed).integers(len(pool), size=n)
        return np.ascontiguousarray(pool[order])

    return inputs


# --- experiments ------------------------------------------------------------------------------


def paired_rounds(
    target: Target, server: Server, fmt: str, batch: int, clients: int, args: argparse.Namespace
) -> dict[str, float] | None:
    """Alternate raw ONNX Runtime and HTTP measurements; medians over rounds. ``None`` for a
    body above the server's limit (``NAE_MAX_BODY_BYTES``: JSON of 10,000 images, say)."""
    x = target.inputs(batch, 3)
    request = request_for(fmt, x, target.name)
    if len(request.body) > Settings().max_body_bytes:
        print(f"{target.name} {fmt} {batch}: body of {len(request.body):,} bytes is above "
              "NAE_MAX_BODY_BYTES: skipped", flush=True)  # fmt: skip
        return None
    start = time.perf_counter()
    server.post(request)  # the answer must be 200 before it is timed
    # Slow configurations (10,000 events as JSON) run long enough for ~4 requests per client.
    seconds = max(args.seconds, math.ceil(4 * clients * (time.perf_counter() - start)))
    raws, https, ratios = [], [], []
    for _ in range(args.rounds):
        raw = measure_raw(target.model, x, args.seconds / 2)
        http = measure_wrk(server, request, batch, clients, seconds)
        raws.append(raw)
        https.append(http)
        ratios.append(http.events_per_s / raw.events_per_s)
    return {
        "bundle": target.name,
        "format": fmt,
        "events_per_request": batch,
        "clients": clients,
        "body_bytes": len(request.body),
        "raw_events_per_s": statistics.median(m.events_per_s for m in raws),
        "http_events_per_s": statistics.median(m.events_per_s for m in https),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "raw_cpu_us_per_event": statistics.median(m.cpu_us_per_event for m in raws),
        "server_cpu_us_per_event": statistics.median(m.cpu_us_per_event for m in https),
        "p50_ms": statistics.median(m.p50_ms for m in https),
        "p99_ms": statistics.median(m.p99_ms for m in https),
    }


def throughput_matrix(
    targets: list[Target], models_dir: Path, args: argparse.Namespace
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Every bundle x format x events per request x clients on one server, plus the server's
    memory afterwards."""
    rows = []
    with running_server(models_dir) as server:
        idle = server.memory_mib()["VmRSS"]
        for target in targets:
            for fmt in args.formats:
                for batch in args.batch_sizes:
                    for clients in args.clients:
                        row = paired_rounds(target, server, fmt, batch, clients, args)
                        if row is not None:
                            rows.append(row)
                            _print_row(row)
        memory = {"idle_rss_mib": idle, **server.memory_mib()}
    return rows, memory


def single_event_latency(
    target: Target, models_dir: Path, single_rate: float, args: argparse.Namespace
) -> list[dict[str, float]]:
    """Open-loop Poisson arrivals of single-event JSON requests at fractions of capacity."""
    rows = []
    request = request_for("json", target.inputs(1, 4), target.name)
    with running_server(models_dir) as server:
        server.post(request)
        for load in (0.25, 0.5, 0.75):
            result = measure_poisson(server, request, load * single_rate, 8, args.seconds * 4)
            rows.append({"bundle": target.name, "load": load, "clients": 8, **asdict(result)})
            print(f"poisson load {load:.0%}: {rows[-1]}", flush=True)
    return rows


def micro_batching(
    target: Target, models_dir: Path, args: argparse.Namespace
) -> list[dict[str, float]]:
    """Single-event JSON requests from 32 clients, micro-batching off and on, paired rounds on
    two servers started side by side (an idle server costs nothing)."""
    request = request_for("json", target.inputs(1, 5), target.name)
    rows = []
    with (
        running_server(models_dir) as plain,
        running_server(models_dir, batching_enabled="true") as batched,
    ):
        for server in (plain, batched):
            server.post(request)
        for round_index in range(args.rounds):
            for name, server in (("off", plain), ("on", batched)):
                calls0 = server.metric_total("nae_batch_size_count")
                events0 = server.metric_total("nae_batch_size_sum")
                result = measure_wrk(server, request, 1, 32, args.seconds)
                calls = server.metric_total("nae_batch_size_count") - calls0
                events = server.metric_total("nae_batch_size_sum") - events0
                rows.append(
                    {
                        "bundle": target.name,
                        "batching": name,
                        "round": round_index,
                        "mean_events_per_ort_call": events / calls if calls else None,
                        **asdict(result),
                    }
                )
                print(f"micro-batching {name}: {rows[-1]}", flush=True)
    return rows


def int8_against_fp32(target: Target, args: argparse.Namespace) -> list[dict[str, object]]:
    """CPU time per call of the bundle's int8 and fp32 files at ``INT8_BATCH_SIZES``, paired and
    interleaved; empty when the bundle ships no int8 file."""
    bundle = target.model.bundle
    if "model.int8.onnx" not in bundle.files:
        print(f"{target.name}: no model.int8.onnx (int8 not shipped): int8 part skipped")
        return []
    models = {
        name: OnnxModel(bundle, target.directory, intra_op_threads=1, model_file=name)
        for name in ("model.onnx", "model.int8.onnx")
    }
    rows = []
    for batch in INT8_BATCH_SIZES:
        x = target.inputs(batch, 6)
        calls = _calls_for(models["model.onnx"], x, args.seconds / 4)
        per_call: dict[str, list[float]] = {name: [] for name in models}
        for round_index in range(max(args.rounds, 3)):
            order = list(models) if round_index % 2 == 0 else list(models)[::-1]
            for name in order:
                per_call[name].append(_cpu_per_call(models[name], x, calls))
        ratios = [fp32 / int8 for fp32, int8 in zip(*per_call.values(), strict=True)]
        rows.append(
            {
                "bundle": target.name,
                "batch_size": batch,
                "calls_per_round": calls,
                "rounds": len(ratios),
                "fp32_cpu_us_per_call": statistics.median(per_call["model.onnx"]) * 1e6,
                "int8_cpu_us_per_call": statistics.median(per_call["model.int8.onnx"]) * 1e6,
                "fp32_over_int8": statistics.median(ratios),
                "fp32_over_int8_min": min(ratios),
                "fp32_over_int8_max": max(ratios),
                "recommended": bundle.recommended,
            }
        )
        print(f"int8 {target.name} batch {batch}: {rows[-1]}", flush=True)
    return rows


def _calls_for(model: OnnxModel, x: np.ndarray, cpu_seconds: float) -> int:
    """Calls of ``model`` on ``x`` that take about ``cpu_seconds`` of CPU (at least 3)."""
    model.score(x)  # warm-up
    once = _cpu_per_call(model, x, 3)
    return max(3, int(cpu_seconds / max(once, 1e-7)))


def _cpu_per_call(model: OnnxModel, x: np.ndarray, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        model.score(x)
    return (time.process_time() - start) / calls


def machine() -> dict[str, object]:
    """What the numbers were measured on, and how busy it was."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    top = subprocess.run(["top", "-bn1"], capture_output=True, text=True, check=False).stdout
    return {
        "cpu": re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1),
        "logical_cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "wrk": shutil.which("wrk"),
        "load_average": os.getloadavg(),
        "top": "\n".join(top.splitlines()[:12]),
    }


def _print_row(row: dict[str, float]) -> None:
    print(
        f"{row['bundle']} {row['format']:>5} {row['events_per_request']:>6} ev/req "
        f"{row['clients']} clients: http {row['http_events_per_s']:>11,.0f} ev/s  raw "
        f"{row['raw_events_per_s']:>11,.0f} ev/s  ratio {row['ratio']:6.1%}  server "
        f"{row['server_cpu_us_per_event']:8.2f} us/ev  p50 {row['p50_ms']:.2f} ms  p99 "
        f"{row['p99_ms']:.2f} ms",
        flush=True,
    )


def _print_tables(results: dict[str, object]) -> None:
    if results.get("throughput"):
        print(
            "\n| bundle | format | events/request | clients | HTTP events/s | raw ORT events/s "
            "| HTTP/raw (median) | server CPU us/event | raw CPU us/event | p50 ms | p99 ms |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for row in results.get("throughput", []):
        print(
            f"| {row['bundle']} | {row['format']} | {row['events_per_request']:,} "
            f"| {row['clients']} | {row['http_events_per_s']:,.0f} "
            f"| {row['raw_events_per_s']:,.0f} "
            f"| {row['ratio']:.1%} ({row['ratio_min']:.1%}-{row['ratio_max']:.1%}) "
            f"| {row['server_cpu_us_per_event']:.2f} | {row['raw_cpu_us_per_event']:.3f} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |"
        )
    if results.get("single_event_poisson"):
        print("\n| bundle | Poisson load | requests/s | p50 ms | p99 ms | server CPU us/request |")
        print("|---|---:|---:|---:|---:|---:|")
    for row in results.get("single_event_poisson", []):
        print(
            f"| {row['bundle']} | {row['load']:.0%} | {row['events_per_s']:,.0f} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_us_per_event']:.0f} |"
        )
    if results.get("micro_batching_32_clients"):
        print(
            "\n| bundle | micro-batching | round | requests/s | events per ORT call | p50 ms "
            "| p99 ms |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for row in results.get("micro_batching_32_clients", []):
        per_call = row["mean_events_per_ort_call"]
        print(
            f"| {row['bundle']} | {row['batching']} | {row['round']} "
            f"| {row['events_per_s']:,.0f} | {per_call if per_call is None else f'{per_call:.1f}'} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |"
        )
    if results.get("int8_against_fp32"):
        print(
            "\n| bundle | batch | fp32 CPU us/call | int8 CPU us/call | fp32/int8 (median, range) "
            "| recommended |"
        )
        print("|---|---:|---:|---:|---:|---|")  # fmt: skip
    for row in results.get("int8_against_fp32", []):
        print(
            f"| {row['bundle']} | {row['batch_size']:,} | {row['fp32_cpu_us_per_call']:,.1f} "
            f"| {row['int8_cpu_us_per_call']:,.1f} | x{row['fp32_over_int8']:.2f} "
            f"(x{row['fp32_over_int8_min']:.2f}-x{row['fp32_over_int8_max']:.2f}) "
            f"| {row['recommended']} |"
        )
    if "memory_mib" in results:
        print(f"\nmemory (one worker): {results['memory_mib']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=2, help="shortest HTTP run (whole s)")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per configuration")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results (%(default)s)")
    parser.add_argument(
        "--bundle",
        nargs="+",
        type=Path,
        default=[],
        metavar="DIR",
        help="bundle directories models/NAME/VERSION to benchmark (default: the synthetic "
        "bench-ae bundle); their inputs are examples/ of their kind and shape",
    )
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=BATCH_SIZES)
    parser.add_argument("--clients", nargs="+", type=int, default=CLIENT_COUNTS)
    parser.add_argument(
        "--parts",
        nargs="*",
        choices=PARTS,
        default=PARTS,
        help="experiments to run (latency needs the throughput part's JSON 1-event 8-client "
        "row; int8 needs bundles that ship model.int8.onnx)",
    )
    args = parser.parse_args()
    if set(args.parts) - {"int8"} and shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (or --parts int8 alone, which needs none)")
    results: dict[str, object] = {"machine_before": machine(), "settings": vars(args)}
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = Path(scratch) / "models"
        models_dir.mkdir()
        targets = (
            bundle_targets(args.bundle, models_dir)
            if args.bundle
            else [synthetic_target(models_dir)]
        )
        results["bundles"] = [
            {"name": t.name, "directory": str(t.directory.resolve()), "file": t.model.model_file}
            for t in targets
        ]
        if "throughput" in args.parts:
            throughput, memory = throughput_matrix(targets, models_dir, args)
            results["throughput"], results["memory_mib"] = throughput, memory
        for target in targets:
            single_rate = next(
                (
                    row["http_events_per_s"]
                    for row in results.get("throughput", [])
                    if (row["bundle"], row["format"], row["events_per_request"], row["clients"])
                    == (target.name, "json", 1, 8)
                ),
                None,
            )
            if "latency" in args.parts and single_rate is not None:
                rows = single_event_latency(target, models_dir, single_rate, args)
                results.setdefault("single_event_poisson", []).extend(rows)
            if "batching" in args.parts:
                rows = micro_batching(target, models_dir, args)
                results.setdefault("micro_batching_32_clients", []).extend(rows)
            if "int8" in args.parts:
                rows = int8_against_fp32(target, args)
                results.setdefault("int8_against_fp32", []).extend(rows)
    results["machine_after"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    _print_tables(results)
    print(f"\nresults in {args.out}")


def _poisson_main() -> None:
    parser = argparse.ArgumentParser(description="open-loop Poisson client (internal)")
    parser.add_argument("poisson")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--request", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    result = asyncio.run(
        _poisson_client(
            args.port, args.request.read_bytes(), args.rate, args.connections, args.seconds
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["poisson"]:
        _poisson_main()
    else:
        main()
