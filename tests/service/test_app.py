"""``create_app``: readiness, one error shape for every failure, micro-batching end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from service.app import create_app
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
