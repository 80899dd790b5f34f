"""What the service's checks cost (issue 10, item 8): events per server CPU second against raw
ONNX Runtime's events per CPU second, for binary requests of 1,000 and 10,000 events from 4
clients, on an older checkout of the service ("before") and this one ("after"); then a profile
of where the server's CPU goes.

    git archive <before-commit> service training | tar -x -C /tmp/before
    .venv/bin/python -m benchmarks.cost --before /tmp/before [--rounds 3] [--seconds 3]

(run as a module from the repository root, as benchmarks/service.py)

Method, and why:

- **CPU time, not throughput.** The machine's speed drifts ~1.8x within seconds and its two
  vCPUs are shared with wrk and other jobs, so requests/s says more about the machine than about
  the code. The server's CPU seconds (utime + stime from /proc) per event, against raw ONNX
  Runtime's CPU seconds per event (``time.process_time`` in a tight loop, the service's session
  settings, one thread), is the cost that stays: ``efficiency = raw CPU per event / server CPU
  per event`` (1.0: the server spends nothing but ONNX Runtime's own time).
- **Paired and interleaved.** Both servers run side by side (an idle server costs nothing);
  each round measures raw ONNX Runtime and then both servers on the same batch, alternating
  which server goes first; medians and ranges over rounds are reported.
- **Two bundles.** The benchmark's dense autoencoder (``benchmarks/service.py``) as it is, and
  the same graph with ``input.ranges`` on every column (the "before" service ignores the field),
  so the range check's cost shows separately from the rest.
- **Profile.** ``py-spy --native`` samples the "after" server (every thread, 100 Hz) while
  wrk sends 10,000-event ``.npy`` requests to the ranged bundle. Samples of a thread that waits
  (the event loop in ``epoll_pwait``, the inference thread waiting for work) are dropped; each
  other sample goes to one category: socket reads and writes by the native call it is in,
  the rest by the innermost service or library frame it recognises.

Writes benchmarks/results/cost.json and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.service import (
    BUNDLE_NAME,
    ROOT,
    Request,
    events_from_seed,
    machine,
    measure_raw,
    measure_wrk,
    request_for,
    running_server,
    write_benchmark_bundle,
)
from service.bundle import Bundle, load_bundle, write_bundle
from service.runtime import OnnxModel

RESULTS = ROOT / "benchmarks" / "results" / "cost.json"
RANGED = "bench-ranged"
# Every column bounded: pT [GeV], eta (the synthetic sample's normal eta stays inside), phi,
# class id. The bounds' values do not change the check's cost.
RANGES = [[0.0, 13000.0], [-10.0, 10.0], [-3.1416, 3.1416], [0.0, 4.0]]
FORMATS = ("npy", "raw", "v2")
BATCH_SIZES = (1_000, 10_000)
CLIENTS = 4

# (category, frame substrings): the first category with a frame in a sample's stack, searched
# from the innermost frame outwards, takes the sample.
_METRICS = ("record_scores", "record_inference", "record_request", "observe (service/metrics")
_DECODE = ("array_from_npy", "array_from_raw", "tensor_from_binary", "split_binary_body")
CATEGORIES = [
    ("ONNX Runtime", ("run (onnxruntime", "score (service/runtime.py")),
    ("checks (shape, finiteness, ranges)", ("check_batch", "contains (service/runtime")),
    ("thresholds", ("fired (service/runtime",)),
    ("metrics", (*_METRICS, "prometheus_client")),
    ("decode", (*_DECODE, "json_from_body", "model_validate", "_input_array")),
    ("encode answer", ("npy_bytes", "json_bytes", "binary_body_from_parts", "_reply")),
    ("read body", ("body (service/api/exchange", "_next_chunk", "receive (uvicorn", "on_body")),
    ("write answer", ("http_protocol.py", "send (uvicorn", "writelines")),
]


REST = "event loop, HTTP parsing and the rest (uvicorn, asyncio)"


def write_ranged_bundle(models_dir: Path, source: Path) -> Path:
    """The benchmark bundle's graph as bundle ``bench-ranged`` with input ranges."""
    directory = models_dir / RANGED / "1"
    shutil.copytree(source, directory)
    (directory / "bundle.json").unlink()
    raw = load_bundle(source).model_dump(mode="json")
    raw["name"] = RANGED
    raw["input"] |= {"features": ["pt [GeV]", "eta", "phi [rad]", "class id"], "ranges": RANGES}
    write_bundle(directory, Bundle.model_validate(raw))
    return directory


def request_to(bundle: str, fmt: str, x: np.ndarray) -> Request:
    request = request_for(fmt, x)
    return Request(request.path.replace(BUNDLE_NAME, bundle), request.headers, request.body)


def paired_rounds(models_dir: Path, before: Path, args: argparse.Namespace) -> list[dict]:
    model = OnnxModel(load_bundle(models_dir / BUNDLE_NAME / "1"), models_dir / BUNDLE_NAME / "1")
    before_command = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(before)!r}); sys.argv[0] = 'nae'; "
        "from training.cli import main; main()",
        "serve", "--models", str(models_dir), "--host", "127.0.0.1",
    ]  # fmt: skip
    rows = []
    with (
        running_server(models_dir, command=before_command) as old,
        running_server(models_dir) as new,
    ):
        servers = {"before": old, "after": new}
        for bundle in (BUNDLE_NAME, RANGED):
            for fmt in args.formats:
                for batch in args.batch_sizes:
                    x = events_from_seed(batch, seed=3)
                    request = request_to(bundle, fmt, x)
                    for server in servers.values():
                        server.post(request)  # 200 before anything is timed
                    samples: dict[str, list] = {"raw": [], "before": [], "after": []}
                    for round_index in range(args.rounds):
                        samples["raw"].append(measure_raw(model, x, args.seconds / 2))
                        order = ("before", "after") if round_index % 2 == 0 else ("after", "before")
                        for name in order:
                            measured = measure_wrk(
                                servers[name], request, batch, CLIENTS, args.seconds
                            )
                            samples[name].append(measured)
                    rows.append(_row(bundle, fmt, batch, samples))
                    _print_row(rows[-1])
    return rows


def _row(bundle: str, fmt: str, batch: int, samples: dict[str, list]) -> dict:
    raw_cpu = [m.cpu_us_per_event for m in samples["raw"]]
    row: dict[str, object] = {
        "bundle": bundle,
        "format": fmt,
        "events_per_request": batch,
        "raw_cpu_us_per_event": statistics.median(raw_cpu),
    }
    for name in ("before", "after"):
        server_cpu = [m.cpu_us_per_event for m in samples[name]]
        ratios = [raw / server for raw, server in zip(raw_cpu, server_cpu, strict=True)]
        row[name] = {
            "server_cpu_us_per_event": statistics.median(server_cpu),
            "efficiency": statistics.median(ratios),
            "efficiency_range": [min(ratios), max(ratios)],
            "events_per_s": statistics.median(m.events_per_s for m in samples[name]),
        }
    return row


def profile(models_dir: Path, py_spy: str, seconds: int) -> dict[str, dict[str, float]]:
    """Where the after server's CPU goes on 10,000-event .npy requests to the ranged bundle."""
    request = request_to(RANGED, "npy", events_from_seed(10_000, seed=3))
    with running_server(models_dir) as server, tempfile.TemporaryDirectory() as scratch:
        server.post(request)
        out = Path(scratch) / "profile.txt"
        command = [py_spy, "record", "--pid", str(server.process.pid), "--rate", "100"]
        command += ["--duration", str(seconds + 2), "--format", "raw", "--output", str(out)]
        sampler = subprocess.Popen(
            [*command, "--native"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        measure_wrk(server, request, 10_000, CLIENTS, seconds)
        sampler.wait(timeout=seconds + 60)
        counts: Counter[str] = Counter()
        rest: Counter[str] = Counter()  # innermost frames of the uncategorised samples
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            category = _category(frames)
            if category is None:
                continue
            counts[category] += int(count)
            if category == REST:
                rest[_where(frames)] += int(count)
    total = sum(counts.values())
    shares = {category: count / total for category, count in counts.most_common()}
    return {
        "categories": shares,
        "rest_top_frames": {f: n / total for f, n in rest.most_common(12)},
    }


def _where(frames: list[str]) -> str:
    """The innermost Python frame and the native leaf of a sample."""
    python = [frame for frame in frames if ".py:" in frame]
    return f"{python[-1] if python else '-'} <- {frames[-1].split(' (')[0]}"


_WAITS = ("Condition.wait (threading.py", "_worker (concurrent/futures/thread.py:81)")


def _category(frames: list[str]) -> str | None:
    """The category of one sample (innermost frame last), or None for a waiting thread."""
    python = [frame for frame in frames if ".py:" in frame]
    leaf, innermost = frames[-1], python[-1] if python else ""
    if leaf.startswith("epoll_pwait") or innermost.startswith(_WAITS):
        return None
    if leaf.startswith(("read ", "recv")):
        return "read body"
    if leaf.startswith(("writev ", "write ", "send")):
        return "write answer"
    for frame in reversed(python):
        for category, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return category
    return REST


def _print_row(row: dict) -> None:
    before, after = row["before"], row["after"]
    print(
        f"{row['bundle']:>12} {row['format']:>4} {row['events_per_request']:>6} ev: raw "
        f"{row['raw_cpu_us_per_event']:.3f} us/ev; before {before['server_cpu_us_per_event']:.3f} "
        f"us/ev = {before['efficiency']:.2f}; after {after['server_cpu_us_per_event']:.3f} us/ev "
        f"= {after['efficiency']:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="older service/ + training/")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=3, help="length of each wrk run (s)")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=BATCH_SIZES)
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument(
        "--parts", nargs="+", choices=("rounds", "profile"), default=["rounds", "profile"]
    )
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy binary")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    results: dict[str, object] = {"machine_before": machine(), "settings": vars(args)}
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = Path(scratch) / "models"
        write_ranged_bundle(models_dir, write_benchmark_bundle(models_dir))
        if "rounds" in args.parts:
            results["rows"] = paired_rounds(models_dir, args.before.resolve(), args)
        if args.py_spy and "profile" in args.parts:
            results["profile"] = profile(models_dir, args.py_spy, args.profile_seconds)
            for category, share in results["profile"]["categories"].items():
                print(f"{share:6.1%}  {category}")
            print("largest uncategorised frames:")
            for frame, share in results["profile"]["rest_top_frames"].items():
                print(f"{share:6.1%}  {frame}")
    results["machine_after"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
