"""A real Prometheus scraping the real service: the counters it stores equal what the test sent,
and the project's recording rules (deploy/rules/) turn them into the triggered rate and fraction.

Expected trigger outcomes come from ONNX Runtime run directly on the bundle's model.onnx and the
thresholds in its bundle.json, not from the service. Prometheus (Debian package) is installed
with apt-get when missing; every wait is bounded and every process is stopped.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import yaml

from service.bundle import MODEL_FILE, Bundle, load_bundle
from service.settings import Settings

pytestmark = pytest.mark.prometheus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "rules"
BUNDLE = "events-test-ae"  # from tests/conftest.py's models_dir, input (19, 4)
WAIT_S = 30.0
TRIGGERED_RATE = "model_version_working_point:nae_events_triggered:rate1m"
TRIGGER_FRACTION = "model_version_working_point:nae_trigger_fraction:ratio_rate1m"


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    """The Debian package's binary, installed on first use (.ci/run installs it up front)."""
    if found := shutil.which("prometheus"):
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("prometheus is not on PATH and apt-get is unavailable to install it")
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for command in (install, ["apt-get", "update", "-qq"], install):
        subprocess.run(command, env=env, capture_output=True, check=False, timeout=600)
        if found := shutil.which("prometheus"):
            return found
    pytest.fail("apt-get install prometheus did not provide a prometheus binary")


@contextmanager
def _running_prometheus(
    binary: str,
    target: str,
    scratch: Path,
    *,
    port: int,
    wait_for: Callable[..., None],
    running_process: Callable[..., AbstractContextManager[object]],
) -> Iterator[str]:
    """Prometheus on ``port`` scraping ``target`` every second with the project's rules;
    yields its address and always stops it."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "*.yml")],
        "scrape_configs": [{"job_name": "nae", "static_configs": [{"targets": [target]}]}],
    }
    config_path = scratch / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    command = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={scratch / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running_process(command, scratch / "prometheus.log"):
        address = f"127.0.0.1:{port}"
        wait_for(
            lambda: _ready(address),
            f"Prometheus ready (log: {scratch / 'prometheus.log'})",
            timeout_s=WAIT_S,
        )
        yield address


def _ready(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _query(address: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant query -> {sorted label pairs without __name__: value}."""
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return {
        tuple(sorted((k, v) for k, v in item["metric"].items() if k != "__name__")): float(
            item["value"][1]
        )
        for item in body["data"]["result"]
    }


def _batches(session: ort.InferenceSession, bundle: Bundle) -> list[np.ndarray]:
    """Three seeded batches (N, 19, 4) whose scores straddle every threshold, with events too
    close to a threshold for float rounding to decide removed."""
    thresholds = np.array([wp.threshold for wp in bundle.working_points])
    rng = np.random.default_rng(7)
    batches = []
    for size in (40, 250, 17):
        x = rng.normal(0.0, 1.1, (size, *bundle.input.shape)).astype(np.float32)
        scores = session.run(["score"], {"x": x})[0]
        margin = np.abs(scores[:, None] - thresholds[None, :]).min(axis=1)
        batches.append(x[margin > 1e-3 * np.abs(thresholds).max()])
    return batches


def _expected_triggers(
    session: ort.InferenceSession, bundle: Bundle, batches: list[np.ndarray]
) -> dict[str, int]:
    """Working point -> events with score > threshold, the bundle's trigger rule."""
    scores = np.concatenate([session.run(["score"], {"x": x})[0] for x in batches])
    return {wp.name: int((scores > wp.threshold).sum()) for wp in bundle.working_points}


def _send(client: httpx.Client, batches: list[np.ndarray]) -> None:
    """One batch each as /score JSON, /score .npy and /v2 JSON, plus a bad request (NaN) that
    must be refused without being counted."""
    json_batch, npy_batch, v2_batch = batches
    answer = client.post("/score", json={"model": BUNDLE, "inputs": json_batch.tolist()})
    assert answer.status_code == 200, answer.text
    stream = io.BytesIO()
    np.save(stream, npy_batch)
    answer = client.post(
        f"/score?model={BUNDLE}",
        content=stream.getvalue(),
        headers={"Content-Type": "application/x-npy"},
    )
    assert answer.status_code == 200, answer.text
    tensor = {"name": "x", "shape": list(v2_batch.shape), "datatype": "FP32"}
    tensor["data"] = v2_batch.ravel().tolist()
    answer = client.post(f"/v2/models/{BUNDLE}/infer", json={"inputs": [tensor]})
    assert answer.status_code == 200, answer.text
    poisoned = json_batch[:2].tolist()
    poisoned[1][3][0] = float("nan")
    answer = client.post(
        "/score",
        content=json.dumps({"model": BUNDLE, "inputs": poisoned}),
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= answer.status_code < 500, answer.text


def test_prometheus_counts_what_was_sent(
    prometheus_binary: str,
    live_server: Callable[[Settings], AbstractContextManager[str]],
    models_dir: Path,
    tmp_path: Path,
    wait_for: Callable[..., None],
    loopback_port: Callable[[], int],
    running_process: Callable[..., AbstractContextManager[object]],
) -> None:
    bundle_dir = models_dir / BUNDLE / "1"
    bundle = load_bundle(bundle_dir)
    session = ort.InferenceSession(bundle_dir / MODEL_FILE, providers=["CPUExecutionProvider"])
    batches = _batches(session, bundle)
    n_scored = sum(len(x) for x in batches)
    triggered = _expected_triggers(session, bundle, batches)
    assert all(0 < count < n_scored for count in triggered.values()), triggered
    selector = f'model="{BUNDLE}",version="1"'

    with (
        live_server(Settings(models_dir=models_dir)) as service,
        _running_prometheus(
            prometheus_binary,
            service,
            tmp_path,
            port=loopback_port(),
            wait_for=wait_for,
            running_process=running_process,
        ) as prometheus,
    ):
        # The service creates its counters at 0, so a scrape before the batches lets rate() see
        # every event sent afterwards.
        wait_for(
            lambda: _query(prometheus, f"nae_events_scored_total{{{selector}}}") != {},
            "a first scrape of the service",
            timeout_s=WAIT_S,
        )
        with httpx.Client(base_url=f"http://{service}", timeout=10) as client:
            _send(client, batches)

        def scored() -> float:
            return sum(_query(prometheus, f"nae_events_scored_total{{{selector}}}").values())

        wait_for(
            lambda: scored() == n_scored,
            f"nae_events_scored_total == {n_scored}",
            timeout_s=WAIT_S,
        )
        stored = _query(
            prometheus, f"sum by (working_point) (nae_events_triggered_total{{{selector}}})"
        )
        assert {dict(labels)["working_point"]: v for labels, v in stored.items()} == triggered

        def fractions() -> dict[str, float]:
            series = _query(prometheus, f"{TRIGGER_FRACTION}{{{selector}}}")
            return {dict(labels)["working_point"]: value for labels, value in series.items()}

        # Both counters start at 0 and share scrape times, so rate() extrapolates them alike and
        # the recorded fraction is exactly triggered / scored.
        expected_fractions = {name: count / n_scored for name, count in triggered.items()}
        wait_for(
            lambda: fractions() == pytest.approx(expected_fractions, rel=1e-6),
            f"{TRIGGER_FRACTION} == {expected_fractions}",
            timeout_s=WAIT_S,
        )
        rates = _query(prometheus, f"{TRIGGERED_RATE}{{{selector}}}")

    # rate() over [1m] divides the counted increase by 60 s; the scrape at 0 pins the start, and
    # past the last sample Prometheus extrapolates by less than 1.1 average scrape intervals
    # (its extrapolation threshold): at most x2.1, reached by a window of two samples.
    for labels, rate in rates.items():
        count = triggered[dict(labels)["working_point"]]
        assert count / 60 <= rate <= 2.1 * count / 60, (dict(labels), rate, count)
    assert len(rates) == len(triggered)


def test_service_exports_every_metric_the_rules_and_dashboard_use(
    live_server: Callable[[Settings], AbstractContextManager[str]], models_dir: Path
) -> None:
    """A rule or panel over a metric the service does not export shows nothing, silently."""
    expressions = [
        rule["expr"]
        for path in RULES.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/nae-trigger.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for expr in expressions
        for name in re.findall(r"(?<![\w:])nae_\w+", expr)
    }
    with live_server(Settings(models_dir=models_dir)) as service:
        exposition = httpx.get(f"http://{service}/metrics", timeout=10).text
    exported = {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}
    exported |= {f"{name}_total" for name in exported}  # counters may be typed without _total
    assert used <= exported, f"metrics used but not exported by the service: {used - exported}"
