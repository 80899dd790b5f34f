"""deploy/prometheus.yml and deploy/rules/ pass promtool, and the alert rules fire when a trigger
rate leaves its calibrated interval (promtool unit tests in rules_test.yml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH: apt-get install prometheus (.ci/run does)"
)


def _promtool(*args: str | Path) -> None:
    result = subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_is_valid_and_finds_the_rules() -> None:
    _promtool("check", "config", ROOT / "deploy" / "prometheus.yml")


@pytest.mark.parametrize(
    "rules", sorted((ROOT / "deploy" / "rules").glob("*.yml")), ids=lambda p: p.name
)
def test_rules_are_valid(rules: Path) -> None:
    _promtool("check", "rules", rules)


def test_alerts_fire_only_outside_the_calibrated_interval() -> None:
    _promtool("test", "rules", Path(__file__).with_name("rules_test.yml"))
