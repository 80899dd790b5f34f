"""``POST /admin/reload``: token checks, and reloads under load that fail no request."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.settings import Settings

TOKEN = "test-admin-token"
RAW_HEADERS = {"Content-Type": "application/octet-stream", "X-Shape": "20,19,4"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 403), ({"Authorization": "Basic x"}, 401)],
)
def test_reload_needs_the_token(client: TestClient, headers: dict, status: int) -> None:
    response = client.post("/admin/reload", headers=headers)
    assert response.status_code == status
    assert "error" in response.json()


def test_reload_is_disabled_without_a_configured_token(tmp_path: Path) -> None:
    from service.app import create_app

    with TestClient(create_app(Settings(models_dir=tmp_path))) as no_admin:
        response = no_admin.post("/admin/reload", headers={"Authorization": "Bearer x"})
    assert response.status_code == 403 and "NAE_ADMIN_TOKEN" in response.json()["error"]


def test_reload_reports_refused_bundles_and_keeps_the_old_set(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    from service.app import create_app

    bundle_factory(tmp_path, "ev", 1, (19, 4))
    with TestClient(create_app(Settings(models_dir=tmp_path, admin_token=TOKEN))) as client:
        bad = bundle_factory(tmp_path, "ev", 2, (19, 4))
        (bad / "model.onnx").write_bytes(b"swapped after export")
        response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        report = response.json()
        assert report["loaded"] == ["ev/1"] and list(report["refused"]) == ["ev/2"]
        assert "sha256" in report["refused"]["ev/2"] and str(tmp_path) not in str(report)
        scored = client.post("/score", json={"inputs": np.zeros((1, 19, 4)).tolist()})
        assert scored.json()["version"] == 1


def test_hot_reload_under_concurrent_load_fails_no_request(
    tmp_path: Path,
    bundle_factory: Callable[..., Path],
    live_server: Callable,
    wait_for: Callable[..., None],
) -> None:
    bundle_factory(tmp_path, "ev", 1, (19, 4))
    settings = Settings(models_dir=tmp_path, admin_token=TOKEN)
    x = np.ones((20, 19, 4), np.float32)
    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()
    with live_server(settings) as address:

        def load() -> None:
            with httpx.Client(base_url=f"http://{address}") as http:
                while not stop.is_set():
                    response = http.post("/score", content=x.tobytes(), headers=RAW_HEADERS)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        versions.add(response.json()["version"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for worker in workers:
            worker.start()
        wait_for(lambda: 1 in versions, "load before the first reload")
        with httpx.Client(base_url=f"http://{address}") as admin:
            for version in (2, 3, 4):
                bundle_factory(tmp_path, "ev", version, (19, 4))
                reload = admin.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
                assert reload.status_code == 200
        wait_for(lambda: 4 in versions, "a request served by version 4")
        stop.set()
        for worker in workers:
            worker.join()
    assert failures == []
    assert 4 in versions
