"""Fixtures for the HTTP tests: an in-process client on the shared models directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def client(models_dir: Path) -> Iterator[TestClient]:
    """A ``TestClient`` (lifespan run) on ``models_dir``, default bundle = the event one."""
    settings = Settings(
        models_dir=models_dir,
        default_model="events-test-ae",
        admin_token=ADMIN_TOKEN,
        max_batch_size=1000,
        max_body_bytes=2_000_000,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def events() -> np.ndarray:
    """200 standard-normal events ``(200, 19, 4)``: the test graph scores them around 76."""
    return np.random.default_rng(11).normal(size=(200, 19, 4)).astype(np.float32)


def _metric_value(metrics_text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="session")
def metric_value() -> Callable[..., float]:
    """``metric_value(metrics_text, name, **labels)``: one sample's value (0 when absent)."""
    return _metric_value
