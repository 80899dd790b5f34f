"""``GET /metrics``: Prometheus text with the request counters by route template."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, metric_value: Callable[..., float]
) -> None:
    client.get("/v2/models/events-test-ae")
    client.get("/v2/models/nope")
    client.get("/no/such/route")
    client.post("/score", json={"inputs": np.zeros((3, 19, 4)).tolist()})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/v2/models/{name}"
    assert metric_value(text, "nae_requests_total", endpoint=route, status="200") == 1
    assert metric_value(text, "nae_requests_total", endpoint=route, status="404") == 1
    assert metric_value(text, "nae_requests_total", endpoint="unmatched", status="404") == 1
    assert metric_value(text, "nae_batch_size_count", model="events-test-ae") == 1
    assert metric_value(text, "nae_events_scored_total", model="events-test-ae", version="1") == 3
    assert "process_resident_memory_bytes" in text
