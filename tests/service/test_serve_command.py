"""``nae serve``: runs the app under uvicorn and reloads on SIGHUP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
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
