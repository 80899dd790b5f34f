"""The provisioned Grafana dashboard queries only metrics the service exports (contract 4 of
docs/contracts.md) or the recording rules define, through the provisioned datasource."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"

CONTRACT_METRICS = {
    "nae_events_scored_total",
    "nae_events_triggered_total",
    "nae_trigger_fraction",
    "nae_trigger_rate_hz",
    "nae_score",
    "nae_requests_total",
    "nae_request_duration_seconds",
    "nae_inference_duration_seconds",
    "nae_batch_size",
    "nae_model_info",
    "nae_batch_queue_depth",
    # The calibrated interval per working point, which the alert rules compare against.
    "nae_calibrated_trigger_fraction",
}
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
SERIES_NAME = re.compile(r"\b(?:[a-z_]+:)?nae_[a-z0-9_]+(?::[a-z0-9_]+)?\b")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "nae-trigger.json").read_text())


def _recorded_names() -> set[str]:
    names = set()
    for path in (ROOT / "deploy" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_panels_use_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]


def test_queries_name_only_known_series(dashboard: dict[str, Any]) -> None:
    known = CONTRACT_METRICS | _recorded_names()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in SERIES_NAME.findall(target["expr"]):
                assert HISTOGRAM_SUFFIX.sub("", name) in known, f"{panel['title']}: {name}"


def test_covers_trigger_rates_scores_and_latency(dashboard: dict[str, Any]) -> None:
    queries = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for needed in ("nae_trigger_rate_hz", "nae_score_bucket", "nae_request_duration_seconds"):
        assert needed in queries


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        area = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        assert box["x"] + box["w"] <= 24
        cells |= area
