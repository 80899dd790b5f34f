"""Schemathesis against the live service: every check schemathesis has (server errors, status
codes, content types, response schemas and headers, negative data rejected, positive data
accepted, unsupported methods, auth), a fixed seed and up to 200 generated requests per route
plus its coverage cases, with the settings in ``schemathesis.toml`` beside this file (which say
why each one is there). The run must end with no failure at all.

It runs ``schemathesis run`` (the command line) against a real uvicorn serving a bundle with
input ranges and one without, reading the OpenAPI document the service publishes, so what is
fuzzed is what clients are told.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.settings import Settings

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN = "fuzz-admin-token"
PHI_MAX = float(np.float32(np.pi))


def test_schemathesis_finds_nothing(
    tmp_path: Path, bundle_factory: Callable[..., Path], live_server: Callable
) -> None:
    models = tmp_path / "models"
    features = ["pt [GeV]", "eta", "phi [rad]", "class id"]
    ranges = [[0, 13000], [-5, 5], [-PHI_MAX, PHI_MAX], [0, 4]]
    bundle_factory(models, "events-ranged", 1, (19, 4), features=features, ranges=ranges)
    bundle_factory(models, "images-open", 1, (4, 4), kind="jet-image")
    settings = Settings(
        models_dir=models,
        default_model="events-ranged",
        admin_token=TOKEN,
        max_body_bytes=1_000_000,
        max_batch_size=100,
    )
    schemathesis = Path(sys.executable).with_name("schemathesis")
    with live_server(settings) as address:
        result = subprocess.run(
            [
                str(schemathesis),
                "--config-file",
                str(CONFIG),
                "run",
                f"http://{address}/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
        )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert " passed" in summary and "failure" not in summary, summary
