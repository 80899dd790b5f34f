"""docker-compose.yml wires the service, Prometheus and Grafana together: the mounted files exist,
Prometheus scrapes the service where compose publishes it, and Grafana gets its provisioning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path for the short-syntax bind mounts of one service."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        mounts[container] = host
    return mounts


def test_has_the_service_prometheus_and_grafana(services: dict[str, Any]) -> None:
    assert set(services) == {"nae", "prometheus", "grafana"}
    assert services["nae"]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


@pytest.mark.parametrize(("name", "port"), [("nae", 8000), ("prometheus", 9090), ("grafana", 3000)])
def test_publishes_its_port_on_loopback_unless_told_otherwise(
    services: dict[str, Any], name: str, port: int
) -> None:
    (published,) = services[name]["ports"]
    address, host_port, container_port = published.rsplit(":", 2)
    assert (host_port, container_port) == (str(port), str(port))
    assert address == "${NAE_BIND_ADDRESS:-127.0.0.1}", "bind to 127.0.0.1 by default"


def test_grafanas_admin_password_comes_from_the_environment_without_a_default(
    services: dict[str, Any],
) -> None:
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "compose must refuse to start"
    assert "GF_SECURITY_ADMIN_USER" not in services["grafana"]["environment"]


def test_the_service_runs_read_only_as_non_root_without_capabilities(
    services: dict[str, Any],
) -> None:
    nae = services["nae"]
    assert nae["read_only"] is True
    user = nae["user"].split(":")[0]
    assert user.isdigit() and user != "0"
    assert nae["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in nae["security_opt"]
    assert nae["tmpfs"] == ["/tmp"]


def test_prometheus_does_not_wait_for_the_service_to_be_ready(services: dict[str, Any]) -> None:
    """Strict readiness makes a service without bundles unhealthy; it must still be scraped."""
    assert services["prometheus"]["depends_on"]["nae"]["condition"] == "service_started"


@pytest.mark.parametrize("name", ["prometheus", "grafana"])
def test_bind_mounts_exist(services: dict[str, Any], name: str) -> None:
    for container, host in _bind_mounts(services[name]).items():
        assert (ROOT / host).exists(), f"{name}: {host} (mounted at {container}) does not exist"


def test_prometheus_loads_the_project_config_and_rules(services: dict[str, Any]) -> None:
    mounts = _bind_mounts(services["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./deploy/rules"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/*.yml"], "rule paths resolve next to prometheus.yml"


def test_prometheus_scrapes_the_service_where_compose_runs_it(services: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "nae"]
    (targets,) = [static["targets"] for static in job["static_configs"]]
    container_port = services["nae"]["ports"][0].split(":")[-1]
    assert targets == [f"nae:{container_port}"]
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_gets_provisioning_and_dashboards(services: dict[str, Any]) -> None:
    mounts = _bind_mounts(services["grafana"])
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    dashboards = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/nae.yml").read_text()
    )
    (provider,) = dashboards["providers"]
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / mounts[str(Path(home).parent)] / Path(home).name).is_file()
