"""The counters equal what clients were told: a concurrent mix of good and bad requests on every
body format (``/score`` JSON, ``.npy``, raw float32; ``/v2`` JSON and binary tensors) and every
way the service runs ONNX Runtime (on the event loop, on the inference thread, micro-batched),
through a real uvicorn. Scored and triggered events, unscorable events (422), the score
histogram, the trigger window and the request counts are reconciled exactly with the answers.
"""

from __future__ import annotations

import io
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from service.settings import Settings

EVENTS = "events-test-ae"  # tests/conftest.py's models_dir: (19, 4), no input ranges
WORKING_POINTS = ("eff_1e-1", "eff_1e-2")
FORMATS = ("json", "npy", "raw", "v2-json", "v2-binary")
KINDS = ("good", "good", "good", "nan", "wrong-shape", "overflow", "unknown-output")
N_REQUESTS = 160


@dataclass
class Tally:
    """What the clients were told."""

    scored: int = 0
    triggered: Counter[str] = field(default_factory=Counter)
    unscorable: int = 0
    score_sum: float = 0.0
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _request(fmt: str, x: np.ndarray, kind: str) -> tuple[str, dict]:
    if fmt == "json":
        return "/score", {"content": orjson.dumps({"model": EVENTS, "inputs": x.tolist()})}
    if fmt in ("npy", "raw"):
        if fmt == "npy":
            stream = io.BytesIO()
            np.save(stream, x)
            body, headers = stream.getvalue(), {"Content-Type": "application/x-npy"}
        else:
            shape = ",".join(map(str, x.shape))
            body = x.tobytes()
            headers = {"Content-Type": "application/octet-stream", "X-Shape": shape}
        return f"/score?model={EVENTS}", {
            "content": body,
            "headers": {**headers, "Accept": "application/json"},
        }
    outputs = [{"name": "score"}, *({"name": f"trigger_{wp}"} for wp in WORKING_POINTS)]
    if kind == "unknown-output":
        outputs.append({"name": "loss"})
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
    if fmt == "v2-json":
        request = {"inputs": [{**tensor, "data": x.ravel().tolist()}], "outputs": outputs}
        return f"/v2/models/{EVENTS}/infer", {"content": orjson.dumps(request)}
    tensor["parameters"] = {"binary_data_size": x.nbytes}
    header = orjson.dumps({"inputs": [tensor], "outputs": outputs})
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return f"/v2/models/{EVENTS}/infer", {"content": header + x.tobytes(), "headers": headers}


def _answer(fmt: str, response: httpx.Response) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if fmt.startswith("v2"):
        outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
        scores = np.array(outputs["score"], np.float32)
        return scores, {wp: np.array(outputs[f"trigger_{wp}"]) for wp in WORKING_POINTS}
    answer = response.json()
    triggers = {wp: np.array(answer["triggers"][wp]) for wp in WORKING_POINTS}
    return np.array(answer["scores"], np.float32), triggers


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"inline_max_events": 0},
        {"batching_enabled": True, "batching_max_batch_size": 64, "inline_max_events": 0},
    ],
    ids=["inline", "inference-thread", "micro-batched"],
)
def test_counters_equal_the_answers_under_a_concurrent_mix(
    models_dir: Path,
    live_server: Callable,
    metric_value: Callable[..., float],
    settings: dict[str, object],
) -> None:
    rng = np.random.default_rng(8)
    plan = [
        (FORMATS[i % len(FORMATS)], KINDS[int(rng.integers(len(KINDS)))], int(rng.integers(1, 40)))
        for i in range(N_REQUESTS)
    ]
    tally = Tally()
    local = threading.local()  # one keep-alive client per sending thread
    clients: list[httpx.Client] = []

    def send(step: tuple[str, str, int], address: str) -> None:
        fmt, kind, n_events = step
        x = np.random.default_rng(n_events).normal(size=(n_events, 19, 4)).astype(np.float32)
        n_huge = 0
        if kind == "nan":
            x[-1, 3, 2] = np.nan
        elif kind == "wrong-shape":
            x = x[:, :18]
        elif kind == "overflow":
            n_huge = 1 + n_events // 3
            x[:n_huge] = 1e19  # finite inputs whose score overflows to infinity
        if kind == "unknown-output" and not fmt.startswith("v2"):
            kind = "good"
        path, request = _request(fmt, x, kind)
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=f"http://{address}", timeout=60)
            with tally.lock:
                clients.append(local.http)
        response = local.http.post(path, **request)
        expected = {"good": 200, "overflow": 422}.get(kind, 400)
        assert response.status_code == expected, (fmt, kind, response.text)
        template = "/score" if path.startswith("/score") else "/v2/models/{name}/infer"
        with tally.lock:
            tally.requests[template, response.status_code] += 1
            if response.status_code == 422:
                tally.unscorable += n_huge
        if response.status_code != 200:
            return
        scores, triggers = _answer(fmt, response)
        np.testing.assert_allclose(scores, (x.astype(np.float64) ** 2).sum(axis=(1, 2)), 1e-5)
        with tally.lock:
            tally.scored += len(scores)
            tally.score_sum += float(scores.sum(dtype=np.float64))
            for wp, fired in triggers.items():
                tally.triggered[wp] += int(np.count_nonzero(fired))

    with live_server(Settings(models_dir=models_dir, **settings)) as address:
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda step: send(step, address), plan))
        finally:
            for client in clients:
                client.close()
        text = httpx.get(f"http://{address}/metrics").text
    labels = {"model": EVENTS, "version": "1"}
    assert tally.scored > 0 and tally.unscorable > 0
    assert metric_value(text, "nae_events_scored_total", **labels) == tally.scored
    assert metric_value(text, "nae_events_unscorable_total", **labels) == tally.unscorable
    assert metric_value(text, "nae_score_count", **labels) == tally.scored
    assert metric_value(text, "nae_score_sum", **labels) == pytest.approx(tally.score_sum, 1e-9)
    for wp in WORKING_POINTS:
        triggered = metric_value(text, "nae_events_triggered_total", **labels, working_point=wp)
        assert triggered == tally.triggered[wp] > 0
        fraction = metric_value(text, "nae_trigger_fraction", **labels, working_point=wp)
        assert fraction == pytest.approx(tally.triggered[wp] / tally.scored)
    for (endpoint, status), count in tally.requests.items():
        counted = metric_value(text, "nae_requests_total", endpoint=endpoint, status=str(status))
        assert counted == count, (endpoint, status)
    assert sum(tally.requests.values()) == N_REQUESTS
