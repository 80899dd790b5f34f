"""Fixtures for the HTTP tests: an in-process client on the shared models directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

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
