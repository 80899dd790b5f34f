"""The Dockerfile: hadolint clean, serve-only install, non-root, readiness healthcheck, and a build
context that holds everything it copies (there is no Docker engine here to find out by building)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).with_name("hadolint")

Stages = list[list[tuple[str, str]]]


def _arguments(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for key, arguments in stage if key == keyword]


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_builds_a_wheel_then_installs_it_on_python_311_slim(dockerfile_stages: Stages) -> None:
    assert len(dockerfile_stages) == 2, "one stage builds the wheel, one installs it"
    for stage in dockerfile_stages:
        assert _arguments(stage, "FROM")[0].split()[0] == "python:3.11-slim"
    assert any("pip wheel" in run for run in _arguments(dockerfile_stages[0], "RUN"))


def test_final_stage_installs_only_the_serve_extra(dockerfile_stages: Stages) -> None:
    (install,) = [run for run in _arguments(dockerfile_stages[-1], "RUN") if "pip" in run]
    assert "[serve]" in install
    for heavy in ("torch", "[train", "[dev", "[data", "serve,"):
        assert heavy not in install, f"the final stage must not install {heavy!r}"


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile_stages: Stages) -> None:
    users = _arguments(dockerfile_stages[-1], "USER")
    assert users, "the final stage must switch away from root"
    assert users[-1].isdigit() and users[-1] != "0"


def test_healthcheck_probes_readiness_without_curl(dockerfile_stages: Stages) -> None:
    (check,) = _arguments(dockerfile_stages[-1], "HEALTHCHECK")
    assert "/v2/health/ready" in check
    assert "urllib.request" in check, "python:3.11-slim has no curl"


def test_command_serves_the_baked_in_bundles(dockerfile_stages: Stages) -> None:
    (command,) = _arguments(dockerfile_stages[-1], "CMD")
    assert json.loads(command) == [
        "nae", "serve", "--models", "/app/models", "--host", "0.0.0.0", "--port", "8000"
    ]  # fmt: skip
    assert "models/ /app/models/" in _arguments(dockerfile_stages[-1], "COPY")


def test_copied_paths_exist_and_pass_the_dockerignore(dockerfile_stages: Stages) -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    problems = []
    for stage in dockerfile_stages:
        for copy in _arguments(stage, "COPY"):
            if "--from=" in copy:
                continue
            for source in [part for part in copy.split() if not part.startswith("--")][:-1]:
                if not (ROOT / source).exists():
                    problems.append(f"COPY {source}: no such path in the repository")
                if source.rstrip("/") not in allowed:
                    problems.append(f"COPY {source}: excluded by .dockerignore")
    assert not problems, problems
