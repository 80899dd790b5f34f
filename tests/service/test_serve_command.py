"""``nae serve``: runs the app under uvicorn and reloads on SIGHUP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


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
def test_serve_starts_on_an_empty_directory_and_reloads_on_sighup(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    port = _free_port()
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
            _wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, "readiness")
            assert httpx.get(f"{url}/models").json() == []
            bundle_factory(tmp_path / "models", "ev", 1, (19, 4))
            server.send_signal(signal.SIGHUP)
            _wait_for(lambda: len(httpx.get(f"{url}/models").json()) == 1, "the SIGHUP reload")
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)
    assert "SIGHUP reload" in log.read_text()
