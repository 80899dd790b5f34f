"""``create_app``: readiness, one error shape for every failure, micro-batching end to end."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from service.app import create_app, hot_route
from service.settings import Settings


def test_health_routes(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "nae-trigger"


def test_not_ready_before_the_lifespan_loaded_the_bundles(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir))
    unstarted = TestClient(app)  # no ``with``: the lifespan has not run
    assert unstarted.get("/v2/health/ready").status_code == 503


def test_routing_and_validation_errors_use_the_error_shape(client: TestClient) -> None:
    for response, status in [
        (client.get("/nowhere"), 404),
        (client.get("/score"), 405),
        (client.post("/score?model=" + "x" * 10, content=b"[]", headers={"X-Shape": "1"}), 400),
    ]:
        assert response.status_code == status
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("path", "template", "params"),
    [
        ("/score", "/score", {}),
        ("/v2/models/m/infer", "/v2/models/{name}/infer", {"name": "m"}),
        (
            "/v2/models/m/versions/3/infer",
            "/v2/models/{name}/versions/{version}/infer",
            {"name": "m", "version": "3"},
        ),
        ("/v2/models//infer", None, None),
        ("/v2/models/m/versions//infer", None, None),
        ("/v2/models/m/x/3/infer", None, None),
        ("/v2/models/m/ready", None, None),
        ("/score/", None, None),
    ],
)
def test_hot_routes_match_only_the_scoring_paths(
    path: str, template: str | None, params: dict[str, str] | None
) -> None:
    match = hot_route(path)
    assert (match and match[1:]) == ((template, params) if template else None)


def test_the_hot_routes_are_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    score = paths["/score"]["post"]
    assert {"application/json", "application/x-npy", "application/octet-stream"} <= set(
        score["requestBody"]["content"]
    )
    assert [p["name"] for p in score["parameters"]] == ["X-Shape", "model"]
    infer = paths["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert [p["name"] for p in infer["parameters"]] == [
        "name",
        "version",
        "Inference-Header-Content-Length",
    ]
    assert {"application/json", "application/octet-stream"} <= set(infer["requestBody"]["content"])
    # Other methods on a hot path fall through to FastAPI.
    assert client.get("/v2/models/m/infer").status_code == 405


def _call(
    app: object,
    path: str,
    headers: dict[str, str],
    messages: list[Message],
    root_path: str = "",
) -> list[Message]:
    """Run one request through the ASGI app with a scripted ``receive``; returns what it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": root_path,
        "headers": [(key.lower().encode(), value.encode()) for key, value in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    incoming, sent = list(messages), []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_client_leaving_mid_body_is_counted_as_499_and_not_logged(
    models_dir: Path, metric_value: Callable[..., float], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(models_dir=models_dir, default_model="events-test-ae"))
    half_a_body = {"type": "http.request", "body": b"\0" * 100, "more_body": True}
    headers = {"Content-Type": "application/octet-stream", "Content-Length": "1216"}
    with caplog.at_level(logging.INFO):
        _call(app, "/score", {**headers, "X-Shape": "4,19,4"}, [half_a_body])
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    with TestClient(app) as client:
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "nae_requests_total", endpoint="/score", status="499") == 1
    assert metric_value(metrics, "nae_requests_total", endpoint="/score", status="500") == 0
    assert metric_value(metrics, "nae_events_scored_total", model="events-test-ae") == 0


def test_the_hot_routes_are_found_under_a_root_path(models_dir: Path) -> None:
    app = create_app(Settings(models_dir=models_dir, default_model="events-test-ae"))
    x = np.ones((2, 19, 4), np.float32)
    headers = {"Content-Type": "application/octet-stream", "X-Shape": "2,19,4"}
    body = [{"type": "http.request", "body": x.tobytes(), "more_body": False}]
    with TestClient(app):  # the lifespan loads the bundles
        sent = _call(app, "/trigger/score", headers, body, root_path="/trigger")
    assert sent[0]["status"] == 200
    assert orjson.loads(sent[1]["body"])["scores"] == [76.0, 76.0]


def _in_chunks(body: bytes, size: int = 100) -> list[Message]:
    messages = [
        {"type": "http.request", "body": body[i : i + size], "more_body": True}
        for i in range(0, len(body), size)
    ]
    return [*messages, {"type": "http.request", "body": b"", "more_body": False}]


@pytest.mark.parametrize("media_type", ["application/octet-stream", "application/json"])
def test_a_body_in_many_chunks_is_scored_and_one_longer_than_declared_is_refused(
    models_dir: Path, media_type: str
) -> None:
    app = create_app(Settings(models_dir=models_dir, default_model="events-test-ae"))
    x = np.arange(4 * 19 * 4, dtype=np.float32).reshape(4, 19, 4) / 100
    json_body = media_type == "application/json"
    body = orjson.dumps({"inputs": x.tolist()}) if json_body else x.tobytes()
    headers = {"Content-Type": media_type, "Accept": "application/x-npy"}
    if not json_body:
        headers["X-Shape"] = "4,19,4"
    with TestClient(app):  # the lifespan loads the bundles
        sent = _call(app, "/score", {**headers, "Content-Length": str(len(body))}, _in_chunks(body))
        assert sent[0]["status"] == 200
        scores = np.frombuffer(sent[1]["body"][-16:], np.float32)
        np.testing.assert_allclose(scores, (x.astype(np.float64) ** 2).sum(axis=(1, 2)), 1e-5)
        sent = _call(app, "/score", {**headers, "Content-Length": "150"}, _in_chunks(body))
    assert sent[0]["status"] == 400
    assert b"longer than its Content-Length" in sent[1]["body"]


def test_micro_batching_gives_the_same_scores_as_unbatched(models_dir: Path) -> None:
    x = np.random.default_rng(4).normal(size=(30, 19, 4)).astype(np.float32)
    answers = []
    for batching in (False, True):
        settings = Settings(
            models_dir=models_dir,
            default_model="events-test-ae",
            batching_enabled=batching,
            batching_max_queue_delay_us=100,
        )
        with TestClient(create_app(settings)) as client:
            answers.append(client.post("/score", json={"inputs": x.tolist()}).json())
            metrics = client.get("/metrics").text
    assert answers[0] == answers[1]
    assert 'nae_batch_queue_depth{model="events-test-ae"} 0.0' in metrics


def test_importing_the_service_does_not_import_torch() -> None:
    code = "import sys, service.app, training.cli; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
