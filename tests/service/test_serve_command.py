"""``nae serve``: runs the app under uvicorn and reloads on SIGHUP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

NAE = "import sys; from training.cli import main; sys.argv[0] = 'nae'; main()"


def test_help_names_the_options() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NAE, "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "--models" in result.stdout and "--port" in result.stdout
    assert "--access-log" in result.stdout and "--no-access-log" in result.stdout


@pytest.mark.slow
def test_serve_starts_without_a_directory_is_not_ready_and_reloads_on_sighup(
    tmp_path: Path,
    bundle_factory: Callable[..., Path],
    wait_for: Callable[..., None],
    loopback_port: Callable[[], int],
) -> None:
    port = loopback_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-c",
        NAE,
        "serve",
        "--models",
        str(tmp_path / "models"),
        "--port",
        str(port),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "serve.log"
    with (
        log.open("wb") as output,
        subprocess.Popen(command, env=env, stdout=output, stderr=output) as server,
    ):
        try:
            wait_for(lambda: httpx.get(f"{url}/v2/health/live").status_code == 200, "liveness")
            # Loaded (uvicorn serves once the lifespan is done), but not ready under strict
            # readiness: the models directory is missing.
            not_ready = httpx.get(f"{url}/v2/health/ready")
            assert not_ready.status_code == 503
            assert not_ready.json()["reason"] == "the models directory is missing"
            assert httpx.get(f"{url}/models").json() == []
            bundle_factory(tmp_path / "models", "ev", 1, (19, 4))
            server.send_signal(signal.SIGHUP)
            wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, "readiness")
            assert len(httpx.get(f"{url}/models").json()) == 1
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    assert "SIGHUP reload" in log.read_text()


@pytest.mark.slow
def test_serve_starts_with_a_bad_bundle_beside_a_good_one(
    tmp_path: Path,
    bundle_factory: Callable[..., Path],
    wait_for: Callable[..., None],
    loopback_port: Callable[[], int],
    running_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
) -> None:
    """A bundle whose graph takes float64 (hash correct) used to make ONNX Runtime's error
    escape the registry and ``nae serve`` exit at start-up."""
    import onnx
    from onnx import TensorProto

    from service.bundle import MODEL_FILE, Bundle, digest_files, write_bundle

    models = tmp_path / "models"
    bundle_factory(models, "ev", 1, (19, 4))
    bad = bundle_factory(models, "ev", 2, (19, 4))
    graph = onnx.load(bad / MODEL_FILE)
    graph.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    onnx.save(graph, bad / MODEL_FILE)
    raw = json.loads((bad / "bundle.json").read_text())
    raw["files"] = digest_files(bad, [MODEL_FILE])
    write_bundle(bad, Bundle.model_validate(raw))
    port = loopback_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", NAE, "serve", "--models", models, "--port", str(port)]
    with running_process(command, tmp_path / "serve.log", {**os.environ, "OMP_NUM_THREADS": "1"}):
        wait_for(lambda: httpx.get(f"{url}/v2/health/live").status_code == 200, "liveness")
        scored = httpx.post(f"{url}/score", json={"inputs": [[[1.0] * 4] * 19]})
        ready = httpx.get(f"{url}/v2/health/ready")
    assert scored.status_code == 200 and scored.json()["version"] == 1
    assert ready.status_code == 503 and "ev/2" in ready.json()["reason"]
    assert "refusing bundle" in (tmp_path / "serve.log").read_text()
