"""``Settings`` reads ``NAE_*`` variables and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.bundle import REFERENCE_RATE_HZ
from service.settings import Settings


def test_defaults_follow_the_design() -> None:
    settings = Settings()
    assert settings.reference_rate_hz == pytest.approx(28_608_806.4)
    assert settings.reference_rate_hz == REFERENCE_RATE_HZ
    assert settings.ort_intra_op_threads == 1
    assert settings.batching_enabled is False
    assert settings.admin_token is None


def test_environment_variables_use_the_nae_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAE_MODELS_DIR", "/srv/bundles")
    monkeypatch.setenv("NAE_MAX_BATCH_SIZE", "123")
    monkeypatch.setenv("NAE_BATCHING_ENABLED", "true")
    monkeypatch.setenv("NAE_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("MAX_BATCH_SIZE", "999")
    settings = Settings()
    assert settings.models_dir == Path("/srv/bundles")
    assert settings.max_batch_size == 123
    assert settings.batching_enabled is True
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings(max_batch_size=0)


def test_the_in_flight_budget_holds_at_least_one_largest_body() -> None:
    with pytest.raises(ValueError, match="max_inflight_bytes"):
        Settings(max_body_bytes=1000, max_inflight_bytes=999)
    assert Settings().strict_readiness is True
