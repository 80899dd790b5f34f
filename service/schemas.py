"""The product API's own models: ``/score`` request and response, ``/models`` summaries.

``/score`` parses and answers its bodies with orjson and numpy on the hot path; these models are
its documented schema (OpenAPI) and are used as such for the small ``/models`` answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from service.bundle import WorkingPoint

__all__ = ["ModelSummary", "ScoreRequest", "ScoreResponse", "VersionSummary"]


class ScoreRequest(BaseModel):
    """``POST /score`` JSON body: a batch of events ``(N, *input_shape)``."""

    model_config = ConfigDict(protected_namespaces=())

    model: str | None = None
    inputs: list[Any]


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
