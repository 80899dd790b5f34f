"""The Dockerfile: hadolint clean, serve-only install, non-root, readiness healthcheck, and a build
context that holds everything it copies (there is no Docker engine here to find out by building)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, with continuation lines joined and comments dropped."""
    logical = text.replace("\\\n", " ").splitlines()
    pairs = []
    for line in logical:
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(arguments.split())))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_stage_is_python_311_slim() -> None:
    bases = [args.split()[0] for keyword, args in _instructions(DOCKERFILE.read_text())]
    bases = [
        args.split()[0]
        for keyword, args in _instructions(DOCKERFILE.read_text())
        if keyword == "FROM"
    ]
    assert len(bases) >= 2, "the image must be multi-stage: build the wheel, then install it"
    assert set(bases) == {"python:3.11-slim"}


def test_final_stage_installs_only_the_serve_extra() -> None:
    installs = [args for keyword, args in _final_stage() if keyword == "RUN" and "pip" in args]
    assert len(installs) == 1, installs
    assert "[serve]" in installs[0]
    for heavy in ("torch", "[train", "[dev", "[data", "serve,"):
        assert heavy not in installs[0], f"the final stage must not install {heavy!r}"


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in _final_stage() if keyword == "USER"]
    assert users, "the final stage must switch away from root"
    assert users[-1].isdigit() and users[-1] != "0"


def test_healthcheck_probes_readiness_without_curl() -> None:
    (check,) = [args for keyword, args in _final_stage() if keyword == "HEALTHCHECK"]
    assert "/v2/health/ready" in check
    assert "urllib.request" in check, "python:3.11-slim has no curl"


def test_command_serves_the_baked_in_bundles() -> None:
    (cmd,) = [args for keyword, args in _final_stage() if keyword == "CMD"]
    assert json.loads(cmd) == [
        "nae", "serve", "--models", "/app/models", "--host", "0.0.0.0", "--port", "8000"
    ]  # fmt: skip
    copies = [args.split() for keyword, args in _final_stage() if keyword == "COPY"]
    assert any(parts[-1] == "/app/models/" and "models/" in parts for parts in copies)


@pytest.mark.parametrize(
    "source",
    sorted(
        {
            source
            for keyword, args in _instructions(DOCKERFILE.read_text())
            if keyword == "COPY" and "--from=" not in args
            for source in [part for part in args.split() if not part.startswith("--")][:-1]
        }
    ),
)
def test_copied_paths_exist_and_pass_the_dockerignore(source: str) -> None:
    assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
