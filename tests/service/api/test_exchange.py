"""``Exchange`` and ``serve_hot`` on a real uvicorn: the in-flight body budget across
connections (503 with Retry-After, before the body is read), given back when requests end."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from service.settings import Settings

BODY_BYTES = 1_000_000


def _hold_a_body(address: str) -> socket.socket:
    """Start a 1 MB /score request and send only part of its body."""
    host, port = address.split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    head = (
        b"POST /score?model=events-test-ae HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/octet-stream\r\nX-Shape: 1,19,4\r\n"
        b"Content-Length: %d\r\n\r\n" % BODY_BYTES
    )
    connection.sendall(head + bytes(1000))
    return connection


def test_bodies_in_flight_past_the_budget_get_503_and_the_budget_comes_back(
    models_dir: Path, live_server: Callable, metric_value: Callable[..., float], wait_for: Callable
) -> None:
    settings = Settings(
        models_dir=models_dir, max_body_bytes=BODY_BYTES, max_inflight_bytes=3 * BODY_BYTES
    )
    x = np.ones((1, 19, 4), np.float32)
    good = {
        "content": x.tobytes(),
        "headers": {"Content-Type": "application/octet-stream", "X-Shape": "1,19,4"},
    }
    with live_server(settings) as address, httpx.Client(base_url=f"http://{address}") as http:
        held = [_hold_a_body(address) for _ in range(3)]
        try:
            wait_for(
                lambda: http.post("/score?model=events-test-ae", **good).status_code == 503,
                "the budget to fill",
            )
            refused = http.post("/score?model=events-test-ae", **good)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert "NAE_MAX_INFLIGHT_BYTES" in refused.json()["error"]
            infer = http.post(
                "/v2/models/events-test-ae/infer",
                json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0]}]},
            )
            assert infer.status_code == 503
        finally:
            for connection in held:
                connection.close()
        wait_for(
            lambda: http.post("/score?model=events-test-ae", **good).status_code == 200,
            "the budget to come back",
        )
        metrics = http.get("/metrics").text
    assert metric_value(metrics, "nae_requests_total", endpoint="/score", status="503") >= 2
    assert metric_value(metrics, "nae_requests_total", endpoint="/score", status="499") == 3
