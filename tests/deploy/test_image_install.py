"""The Docker image's install steps, replayed in a fresh venv because CI has no Docker engine:
build the wheel from exactly the files the build stage copies, install it with only the
``serve`` extra as the final stage does, check torch stayed out, and serve a bundle from that
venv as the image's CMD does; then serve what the image bakes in (the repository's models/)
and probe it as its HEALTHCHECK does."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def build_context(
    tmp_path_factory: pytest.TempPathFactory, dockerfile_stages: list[list[tuple[str, str]]]
) -> Path:
    """The build stage's WORKDIR after its COPY instructions: a file missing from them (a
    README the metadata names, say) fails here as it would fail `docker build`."""
    context = tmp_path_factory.mktemp("build-context")
    for keyword, arguments in dockerfile_stages[0]:
        if keyword != "COPY":
            continue
        *sources, destination = arguments.split()
        for source in sources:
            if (ROOT / source).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(ROOT / source, context / destination, ignore=ignore)
            else:
                shutil.copy2(ROOT / source, context / destination)
    return context


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory, build_context: Path) -> Path:
    """A venv holding only ``nae-trigger[serve]``, installed from the wheel built as the image
    builds it; pip's cache and the machine's configured index make the second run fast."""
    scratch = tmp_path_factory.mktemp("image")
    wheels = scratch / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, build_context)
    (wheel,) = wheels.glob("nae_trigger-*.whl")
    environment = scratch / "venv"
    venv.create(environment, with_pip=True)
    _run(environment / "bin" / "pip", "install", "--quiet", f"{wheel}[serve]")
    return environment


def _run(*command: str | Path) -> str:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False, timeout=600
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_serve_extra_leaves_out_the_training_stack(serve_venv: Path) -> None:
    installed = json.loads(_run(serve_venv / "bin" / "pip", "list", "--format", "json"))
    names = {package["name"].lower() for package in installed}
    assert {"nae-trigger", "onnxruntime", "fastapi", "uvicorn"} <= names
    assert not names & {"torch", "onnx", "pythia8mc", "h5py"}


@pytest.fixture
def served_port(
    serve_venv: Path,
    models_dir: Path,
    tmp_path: Path,
    loopback_port: Callable[[], int],
    running_process: Callable[..., AbstractContextManager[object]],
) -> Iterator[int]:
    """``nae serve`` from the serve-only venv, as the image's CMD starts it; its output goes to
    ``tmp_path/serve.log``."""
    port = loopback_port()
    command = [serve_venv / "bin" / "nae", "serve", "--models", models_dir]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {"PATH": str(serve_venv / "bin"), "OMP_NUM_THREADS": "1"}
    with running_process(command, tmp_path / "serve.log", env):
        yield port


def test_serves_from_the_serve_only_install(served_port: int) -> None:
    """Ready, then one real /score answer: the serve extra holds everything the hot path uses."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    status = None
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.2)
        connection = http.client.HTTPConnection("127.0.0.1", served_port, timeout=2)
        try:
            connection.request("GET", "/v2/health/ready")
            status = connection.getresponse().status
        except OSError:
            status = None
        finally:
            connection.close()
    assert status == 200, f"/v2/health/ready not 200 after {READY_TIMEOUT_S} s"
    body = json.dumps({"model": "events-test-ae", "inputs": [[[0.0] * 4] * 19]})
    connection = http.client.HTTPConnection("127.0.0.1", served_port, timeout=10)
    try:
        connection.request("POST", "/score", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200, answer
    assert answer["scores"] == [0.0]


@pytest.fixture
def baked_port(
    serve_venv: Path,
    tmp_path: Path,
    loopback_port: Callable[[], int],
    running_process: Callable[..., AbstractContextManager[object]],
) -> Iterator[tuple[int, Path]]:
    """``nae serve`` from the serve-only venv on a copy of what ``COPY models/ /app/models/``
    puts in the image (the .dockerignore keeps all of models/ but bytecode)."""
    models = shutil.copytree(
        ROOT / "models", tmp_path / "app" / "models", ignore=shutil.ignore_patterns("__pycache__")
    )
    port = loopback_port()
    command = [serve_venv / "bin" / "nae", "serve", "--models", models]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    env = {"PATH": str(serve_venv / "bin"), "OMP_NUM_THREADS": "1"}
    with running_process(command, tmp_path / "serve.log", env):
        yield port, models


def test_the_image_is_healthy_exactly_when_it_bakes_in_bundles(
    baked_port: tuple[int, Path],
) -> None:
    """With the shipped bundles the health check (strict readiness) passes and each bundle
    scores its kind's example file; with none yet it fails, saying why (models/README.md)."""
    port, models = baked_port
    deadline = time.monotonic() + READY_TIMEOUT_S
    status, answer = None, {}
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.2)
        try:
            status, answer = _request(port, "GET", "/v2/health/ready")
        except OSError:
            continue
        if status == 503 and answer.get("reason") != "bundles are still loading":
            break
    bundles = sorted(path.parent for path in models.glob("*/*/bundle.json"))
    if not bundles:
        assert (status, answer) == (503, {"ready": False, "reason": "no bundle is loaded"})
        return
    assert status == 200, answer
    examples = json.loads((ROOT / "examples" / "examples.json").read_text())
    for directory in bundles:
        bundle = json.loads((directory / "bundle.json").read_text())
        stem = next(
            (
                entry["stem"]
                for entry in examples
                if (entry["kind"], entry["shape"]) == (bundle["kind"], bundle["input"]["shape"])
            ),
            None,
        )
        assert stem, f"examples/ has no {bundle['kind']} input of shape {bundle['input']['shape']}"
        body = (ROOT / "examples" / f"{stem}.npy").read_bytes()
        path = f"/score?model={bundle['name']}"
        status, answer = _request(port, "POST", path, body, {"Content-Type": "application/x-npy"})
        assert status == 200, answer
        assert answer["model"] == bundle["name"] and len(answer["scores"]) == 4


def _request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()
