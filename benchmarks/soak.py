"""Soak test of the scoring service (issue 10): minutes of load at 80% of one worker's measured
capacity, good and bad requests mixed, bundles reloaded under load.

    apt-get install -y hey                   # the load generator (Go; Debian package)
    .venv/bin/python -m benchmarks.soak [--seconds 600] [--load 0.8]

(run as a module from the repository root, as benchmarks/service.py)

The server is ``nae serve`` in its own process, as deployed (one worker; strict readiness off,
because a broken bundle sits in the models directory on purpose and is refused at every
reload). Load comes from ``hey`` processes, one per kind of request, each at its share of the
rate: a Python client on this machine would spend more CPU per request than the server.

1. **Capacity.** Each kind of request alone, closed loop for ``--probe-seconds``: the server's
   CPU seconds per request. The capacity of one worker for the mix is one core divided by the
   mix's mean CPU per request.
2. **Soak.** ``--load`` x capacity for ``--seconds``, each kind at its weight of the rate
   (``hey -q``: a fixed rate per connection, a late request goes out when the last returns).
   Every ``--reload-every`` seconds the admin endpoint reloads the bundles; every other reload
   adds or removes version 2 of the bundle, so requests are answered by both versions.
3. **Reconciliation.** The requests are fixed, so their answers are known from one call each
   (checked: status, number of scores, finite scores). From hey's status counts the expected
   totals follow; at the end the server's counters must equal them exactly: events scored and
   triggered per working point (summed over versions), unscorable events, requests per route
   and status, reloads.

The mix: 80% good requests (JSON 1 and 100 events, ``.npy`` 1,000, raw 100, ``/v2`` binary
1,000, ``/v2`` JSON 10) and 20% bad ones, each with the status it must get: NaN (400), wrong
shape (400), unknown bundle (404), malformed JSON (400), unknown output (400), ``X-Shape``
that does not fit (400), gzip (415), inputs whose score overflows (422).

Reported: 5xx answers, good requests that failed, counter mismatches, the server's resident
memory (VmRSS) every 10 s and its growth from the first sample after warm-up to the end, its
CPU, and the machine's load before and after. Results go to benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from benchmarks.service import (
    BUNDLE_NAME,
    ROOT,
    Request,
    Server,
    events_from_seed,
    machine,
    request_for,
    running_server,
    write_benchmark_bundle,
)
from service.bundle import Bundle, load_bundle, write_bundle

RESULTS = ROOT / "benchmarks" / "results" / "soak.json"
TOKEN = "soak-admin-token"
INFER = f"/v2/models/{BUNDLE_NAME}/infer"
ENDPOINTS = {"/score": "/score", INFER: "/v2/models/{name}/infer"}


@dataclass(frozen=True)
class Case:
    """One kind of request of the mix: what to send and the status it must get."""

    name: str
    request: Request
    n_events: int
    status: int
    n_unscorable: int = 0

    @property
    def good(self) -> bool:
        return self.status == 200

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.request.path.split("?")[0]]


def request_mix() -> list[tuple[Case, float]]:
    """The cases and their weights (good ones sum to 0.8)."""
    json_one = request_for("json", events_from_seed(1, seed=11))
    nan = events_from_seed(10, seed=12)
    nan[3, 2, 1] = np.nan
    huge = events_from_seed(10, seed=13)
    huge[:4] = 1e19  # finite inputs whose score overflows float32: 422
    v2_json = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [10, 19, 4],
                    "datatype": "FP32",
                    "data": events_from_seed(10, seed=14).ravel().tolist(),
                }
            ]
        }
    )
    unknown_output = orjson.loads(v2_json) | {"outputs": [{"name": "loss"}]}
    raw = request_for("raw", events_from_seed(100, seed=15))
    cases = [
        (Case("json-1", json_one, 1, 200), 0.25),
        (Case("json-100", request_for("json", events_from_seed(100, seed=16)), 100, 200), 0.10),
        (Case("npy-1000", request_for("npy", events_from_seed(1000, seed=17)), 1000, 200), 0.15),
        (Case("raw-100", raw, 100, 200), 0.10),
        (
            Case("v2-binary-1000", request_for("v2", events_from_seed(1000, seed=18)), 1000, 200),
            0.10,
        ),
        (Case("v2-json-10", Request(INFER, {}, v2_json), 10, 200), 0.10),
        (Case("nan", request_for("npy", nan), 10, 400), 0.03),
        (
            Case("wrong-shape", request_for("json", events_from_seed(3, seed=19)[:, :18]), 3, 400),
            0.03,
        ),
        (
            Case(
                "unknown-bundle",
                Request("/score", json_one.headers, json_one.body.replace(b"bench-ae", b"nope")),
                1,
                404,
            ),
            0.02,
        ),
        (
            Case("malformed-json", Request("/score", json_one.headers, json_one.body[:-3]), 1, 400),
            0.02,
        ),
        (Case("unknown-output", Request(INFER, {}, orjson.dumps(unknown_output)), 10, 400), 0.02),
        (
            Case(
                "x-shape-mismatch",
                Request(raw.path, {**raw.headers, "X-Shape": "101,19,4"}, raw.body),
                100,
                400,
            ),
            0.02,
        ),
        (
            Case(
                "gzip",
                Request("/score", {**json_one.headers, "Content-Encoding": "gzip"}, json_one.body),
                1,
                415,
            ),
            0.02,
        ),
        (Case("overflow", request_for("json", huge), 10, 422, n_unscorable=4), 0.04),
    ]
    assert abs(sum(weight for case, weight in cases if case.good) - 0.8) < 1e-9
    return cases


def check_answer(case: Case, status: int, headers: dict[str, str], body: bytes) -> np.ndarray:
    """The scores of one answer to ``case``, after checking it; raises on a wrong answer."""
    if status != case.status:
        raise RuntimeError(f"{case.name}: status {status}, expected {case.status}: {body[:200]!r}")
    if status != 200:
        assert orjson.loads(body).keys() == {"error"}, body[:200]
        return np.zeros(0, np.float32)
    scores = scores_and_version(case, headers, body)[0]
    if len(scores) != case.n_events or not np.isfinite(scores).all():
        raise RuntimeError(f"{case.name}: {len(scores)} scores for {case.n_events} events")
    return scores


def post(port: int, request: Request) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", request.path, request.body, request.headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def scores_and_version(case: Case, headers: dict[str, str], body: bytes) -> tuple[np.ndarray, str]:
    """The scores and the bundle version of a 200 answer, whatever its format."""
    if headers["content-type"] == "application/x-npy":
        return np.load(io.BytesIO(body)), headers["x-model-version"]
    if "inference-header-content-length" in headers:
        length = int(headers["inference-header-content-length"])
        header = orjson.loads(body[:length])
        return np.frombuffer(body[length:], np.float32), header["model_version"]
    answer = orjson.loads(body)
    if "outputs" in answer:
        outputs = {output["name"]: output["data"] for output in answer["outputs"]}
        return np.array(outputs["score"], np.float32), answer["model_version"]
    return np.array(answer["scores"], np.float32), str(answer["version"])


@dataclass
class Load:
    """One hey process sending one case."""

    case: Case
    process: subprocess.Popen[str]
    body_file: Path

    def result(self) -> dict[str, object]:
        """Status counts and errors from hey's summary."""
        output = self.process.communicate()[0]
        statuses = {
            int(code): int(count)
            for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)
        }
        errors = {
            message.strip(): int(count)
            for count, message in re.findall(
                r"\[(\d+)\]\s+(.+)", _section(output, "Error distribution")
            )
        }
        rate = re.search(r"Requests/sec:\s+([0-9.]+)", output)
        return {
            "statuses": statuses,
            "errors": errors,
            "requests_per_s": float(rate.group(1)) if rate else 0.0,
            "returncode": self.process.returncode,
        }


def _section(output: str, title: str) -> str:
    if title not in output:
        return ""
    return output.split(title, 1)[1]


def start_hey(
    port: int, case: Case, scratch: Path, *, seconds: float, connections: int, qps: float | None
) -> Load:
    """``hey`` sending ``case`` over ``connections`` keep-alive connections, each at ``qps``
    requests/s (``None``: as fast as answered)."""
    body_file = scratch / f"{case.name}.body"
    body_file.write_bytes(case.request.body)
    headers = dict(case.request.headers)
    content_type = headers.pop("Content-Type", "application/json")
    command = [
        "hey",
        "-z",
        f"{seconds:.0f}s",
        "-c",
        str(connections),
        "-m",
        "POST",
        "-T",
        content_type,
    ]
    command += ["-D", str(body_file), "-t", "60", "-cpus", "1", "-disable-compression"]
    if qps is not None:
        command += ["-q", f"{qps:.3f}"]
    for key, value in headers.items():
        command += ["-H", f"{key}: {value}"]
    command.append(f"http://127.0.0.1:{port}{case.request.path}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return Load(case, process, body_file)


def probe_costs(
    server: Server, cases: list[tuple[Case, float]], scratch: Path, seconds: float
) -> dict[str, float]:
    """Server CPU seconds per request of each case, each alone, closed loop, 2 connections."""
    costs = {}
    for case, _ in cases:
        cpu0 = server.cpu_seconds()
        result = start_hey(
            server.port, case, scratch, seconds=seconds, connections=2, qps=None
        ).result()
        requests = sum(result["statuses"].values())
        costs[case.name] = (server.cpu_seconds() - cpu0) / max(requests, 1)
        print(
            f"  {case.name:>18}: {requests / seconds:7.0f} requests/s alone, "
            f"{costs[case.name] * 1e6:6.0f} us of server CPU per request",
            flush=True,
        )
    return costs


class Reloader(threading.Thread):
    """Reloads the bundles every ``every`` seconds; every other reload adds or removes version 2
    of the bundle (a copy of version 1 under another version number)."""

    def __init__(self, port: int, models_dir: Path, every: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.models_dir, self.every, self.stop = port, models_dir, every, stop
        self.results: list[dict] = []

    def run(self) -> None:
        count = 0
        while not self.stop.wait(self.every):
            count += 1
            if count % 2:
                self._toggle_version_2()
            start = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                connection.request(
                    "POST", "/admin/reload", b"", {"Authorization": f"Bearer {TOKEN}"}
                )
                response = connection.getresponse()
                report = json.loads(response.read())
                status = response.status
            except (OSError, http.client.HTTPException, ValueError) as exc:
                status, report = 0, {"error": repr(exc)}
            finally:
                connection.close()
            self.results.append(
                {
                    "status": status,
                    "seconds": time.perf_counter() - start,
                    "loaded": report.get("loaded"),
                    "refused": sorted(report.get("refused", {})),
                }
            )

    def _toggle_version_2(self) -> None:
        version_2 = self.models_dir / BUNDLE_NAME / "2"
        if version_2.exists():
            shutil.rmtree(version_2)
            return
        version_1 = self.models_dir / BUNDLE_NAME / "1"
        staging = self.models_dir / f".staging-{BUNDLE_NAME}-2"
        shutil.copytree(version_1, staging)
        (staging / "bundle.json").unlink()
        bundle = load_bundle(version_1)
        write_bundle(staging, Bundle.model_validate({**bundle.model_dump(), "version": 2}))
        staging.rename(version_2)  # appears whole, as `nae export` would place it


def write_broken_bundle(models_dir: Path) -> None:
    """A bundle whose model file does not match its hash: refused at every reload."""
    source = models_dir / BUNDLE_NAME / "1"
    broken = models_dir / "broken" / "1"
    shutil.copytree(source, broken)
    bundle = load_bundle(source)
    (broken / "bundle.json").write_text(
        json.dumps(bundle.model_dump(mode="json") | {"name": "broken"})
    )
    (broken / "model.onnx").write_bytes((broken / "model.onnx").read_bytes() + b"\0")


def counters(server: Server) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def reconcile(text: str, expected: dict[str, object], reloads: int) -> list[str]:
    """Every mismatch between the server's counters and what clients were told (empty: exact).
    ``expected``: ``scored``, ``triggered`` (working point -> events), ``unscorable``, and
    ``requests`` ((endpoint, status) -> count)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: Counter[tuple] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name in ("nae_events_scored_total", "nae_events_unscorable_total"):
                totals[sample.name] += sample.value  # summed over versions
            elif sample.name == "nae_events_triggered_total":
                totals[sample.name, labels["working_point"]] += sample.value
            elif sample.name == "nae_requests_total":
                totals[sample.name, labels["endpoint"], int(labels["status"])] += sample.value
    mismatches = []

    def compare(what: str, served: float, told: float) -> None:
        if served != told:
            mismatches.append(f"{what}: server {served:.0f}, clients {told:.0f}")

    compare("events scored", totals["nae_events_scored_total"], expected["scored"])
    compare("events unscorable", totals["nae_events_unscorable_total"], expected["unscorable"])
    for wp, count in expected["triggered"].items():
        compare(f"events triggered {wp}", totals["nae_events_triggered_total", wp], count)
    for (endpoint, status), count in sorted(expected["requests"].items()):
        compare(
            f"requests {endpoint} {status}", totals["nae_requests_total", endpoint, status], count
        )
    compare("reloads", totals["nae_requests_total", "/admin/reload", 200], reloads)
    return mismatches


def sample_memory(server: Server, stop: threading.Event, every: float, out: list) -> None:
    start = time.monotonic()
    while not stop.wait(every):
        out.append({"t": time.monotonic() - start, **server.memory_mib()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="length of the soak")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of capacity")
    parser.add_argument("--probe-seconds", type=float, default=4, help="per case, for capacity")
    parser.add_argument("--reload-every", type=float, default=30, help="seconds between reloads")
    parser.add_argument("--warmup-seconds", type=float, default=60, help="before the RSS baseline")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey not found: apt-get install -y hey")
    results: dict[str, object] = {"machine_before": machine(), "settings": vars(args)}
    cases = request_mix()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        models_dir = scratch / "models"
        bundle_dir = write_benchmark_bundle(models_dir)
        write_broken_bundle(models_dir)
        working_points = load_bundle(bundle_dir).working_points
        with running_server(models_dir, admin_token=TOKEN, strict_readiness="false") as server:
            fired = {}  # case -> working point -> events that trigger, from one checked answer
            for case, _ in cases:
                scores = check_answer(case, *post(server.port, case.request))
                fired[case.name] = {
                    wp.name: int(np.count_nonzero(scores > np.float32(wp.threshold)))
                    for wp in working_points
                }
            print("server CPU per request, each case alone:", flush=True)
            costs = probe_costs(server, cases, scratch, args.probe_seconds)
            mean_cost = sum(weight * costs[case.name] for case, weight in cases)
            capacity = 1.0 / mean_cost
            rate = args.load * capacity
            print(
                f"capacity of one worker for the mix: {capacity:.0f} requests/s; soak at "
                f"{rate:.0f} requests/s for {args.seconds:.0f} s",
                flush=True,
            )
            before = counters(server)  # the probes' counts, subtracted below
            stop = threading.Event()
            memory: list[dict] = []
            sampler = threading.Thread(target=sample_memory, args=(server, stop, 10.0, memory))
            reloader = Reloader(server.port, models_dir, args.reload_every, stop)
            cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            loads = []
            for case, weight in cases:
                case_rate = weight * rate
                connections = max(1, math.ceil(case_rate / 100))
                loads.append(
                    start_hey(
                        server.port,
                        case,
                        scratch,
                        seconds=args.seconds,
                        connections=connections,
                        qps=case_rate / connections,
                    )
                )
            sampler.start()
            reloader.start()
            sent = {load.case.name: load.result() for load in loads}
            wall = time.monotonic() - wall0
            stop.set()
            reloader.join()
            sampler.join()
            cpu = server.cpu_seconds() - cpu0
            time.sleep(1.0)
            after = counters(server)
            final_memory = server.memory_mib()
    expected = _expected(cases, sent, fired, before)
    mismatches = reconcile(after, expected, len(reloader.results))
    by_case = {name: result["statuses"] for name, result in sent.items()}
    server_errors = sum(
        n for statuses in by_case.values() for code, n in statuses.items() if code >= 500
    )
    failed_good = sum(
        sum(n for code, n in sent[case.name]["statuses"].items() if code != 200)
        + sum(sent[case.name]["errors"].values())
        for case, _ in cases
        if case.good
    )
    wrong_status = sum(
        sum(n for code, n in sent[case.name]["statuses"].items() if code != case.status)
        for case, _ in cases
    )
    requests = sum(sum(statuses.values()) for statuses in by_case.values())
    baseline = next((m for m in memory if m["t"] >= args.warmup_seconds), final_memory)
    results |= {
        "costs_us_per_request": {name: cost * 1e6 for name, cost in costs.items()},
        "capacity_requests_per_s": capacity,
        "target_rate_hz": rate,
        "soak": {
            "seconds": wall,
            "requests": requests,
            "requests_per_s": requests / wall,
            "server_cpu_seconds": cpu,
            "server_cpu_fraction": cpu / wall,
        },
        "sent": sent,
        "server_errors_5xx": server_errors,
        "failed_good_requests": failed_good,
        "wrong_status": wrong_status,
        "transport_errors": sum(sum(result["errors"].values()) for result in sent.values()),
        "counter_mismatches": mismatches,
        "reloads": reloader.results,
        "memory_mib": memory,
        "rss_baseline_mib": baseline["VmRSS"],
        "rss_final_mib": final_memory["VmRSS"],
        "rss_peak_mib": final_memory["VmHWM"],
        "rss_growth": (final_memory["VmRSS"] - baseline["VmRSS"]) / baseline["VmRSS"],
        "machine_after": machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(_summary(results))


def _expected(
    cases: list[tuple[Case, float]], sent: dict, fired: dict, before: str
) -> dict[str, object]:
    """What the server must have counted: the probes' counts (read from the server before the
    soak, when they were checked to match) plus what hey was answered during the soak."""
    probe = _Totals(before)
    scored, unscorable = probe.scored, probe.unscorable
    triggered = Counter(probe.triggered)
    requests = Counter(probe.requests)
    for case, _ in cases:
        statuses = sent[case.name]["statuses"]
        answered = statuses.get(200, 0)
        scored += answered * case.n_events
        unscorable += statuses.get(422, 0) * case.n_unscorable
        for wp, count in fired[case.name].items():
            triggered[wp] += answered * count
        for status, count in statuses.items():
            requests[case.endpoint, status] += count
    return {
        "scored": scored,
        "unscorable": unscorable,
        "triggered": triggered,
        "requests": requests,
    }


class _Totals:
    """Counter totals of one /metrics text, summed over bundle versions."""

    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.scored = self.unscorable = 0.0
        self.triggered: Counter[str] = Counter()
        self.requests: Counter[tuple[str, int]] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "nae_events_scored_total":
                    self.scored += sample.value
                elif sample.name == "nae_events_unscorable_total":
                    self.unscorable += sample.value
                elif sample.name == "nae_events_triggered_total":
                    self.triggered[labels["working_point"]] += sample.value
                elif (
                    sample.name == "nae_requests_total" and labels["endpoint"] in ENDPOINTS.values()
                ):
                    self.requests[labels["endpoint"], int(labels["status"])] += sample.value


def _summary(results: dict) -> str:
    soak = results["soak"]
    reloads = results["reloads"]
    lines = [
        f"capacity {results['capacity_requests_per_s']:.0f} requests/s; soak at "
        f"{results['target_rate_hz']:.0f} requests/s for {soak['seconds']:.0f} s: "
        f"{soak['requests']} requests ({soak['requests_per_s']:.0f}/s)",
        f"5xx: {results['server_errors_5xx']}, failed good requests: "
        f"{results['failed_good_requests']}, wrong statuses: {results['wrong_status']}, "
        f"transport errors: {results['transport_errors']}",
        f"counter mismatches: {len(results['counter_mismatches'])} "
        f"{results['counter_mismatches'][:5]}",
        f"reloads: {len(reloads)}, statuses {sorted({r['status'] for r in reloads})}",
        f"RSS: {results['rss_baseline_mib']:.0f} MiB after warm-up -> "
        f"{results['rss_final_mib']:.0f} MiB at the end ({results['rss_growth']:+.1%}), "
        f"peak {results['rss_peak_mib']:.0f} MiB",
        f"server CPU {soak['server_cpu_fraction']:.0%} of a core; load average before "
        f"{results['machine_before']['load_average']}, after "
        f"{results['machine_after']['load_average']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
