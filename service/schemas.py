"""The product API's own models: ``/score`` request and response, ``/models`` summaries.

``/score`` parses and answers its bodies with orjson and numpy on the hot path; these models are
its documented schema (OpenAPI) and are used as such for the small ``/models`` answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.bundle import WorkingPoint

__all__ = [
    "ErrorResponse",
    "ModelSummary",
    "Readiness",
    "ScoreRequest",
    "ScoreResponse",
    "VersionSummary",
]


class ScoreRequest(BaseModel):
    """``POST /score`` JSON body: a batch of events ``(N, *input_shape)`` of finite numbers
    (inside the bundle's ``input.ranges`` where it declares them). ``model`` may be left out
    when one bundle is the default."""

    model_config = ConfigDict(protected_namespaces=())

    model: str | None = Field(None, min_length=1, max_length=128)
    inputs: list[Any] = Field(min_length=1)


class ErrorResponse(BaseModel):
    """Every error, whatever the route: one message naming the problem and, where it helps,
    the fix."""

    error: str


class Readiness(BaseModel):
    """``GET /v2/health/ready``: ``reason`` says why when not ready."""

    ready: bool
    reason: str | None = None


class ScoreResponse(BaseModel):
    """``POST /score`` JSON answer: one score per event and, per working point, whether it
    triggered (``score > threshold``)."""

    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: int
    scores: list[float]
    triggers: dict[str, list[bool]]


class VersionSummary(BaseModel):
    """One loaded version of a bundle."""

    version: int
    kind: str
    input_shape: list[int]
    features: list[str]
    sha256: str
    reference_rate_hz: float
    working_points: list[WorkingPoint]
    metrics: dict[str, dict[str, float]]


class ModelSummary(BaseModel):
    """A bundle name with its loaded versions; ``default_version`` is the highest."""

    name: str
    default_version: int
    versions: list[VersionSummary]
