"""Dependencies shared by the routers: the objects ``create_app`` put on ``app.state``, and the
request body read under the size limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import PayloadTooLarge
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.scoring import Scorer
from service.settings import Settings

__all__ = ["Body", "MetricsDep", "RegistryDep", "ScorerDep", "SettingsDep"]


def _scorer(request: Request) -> Scorer:
    return request.app.state.scorer


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.scorer.registry


def _metrics(request: Request) -> Metrics:
    return request.app.state.scorer.metrics


def _settings(request: Request) -> Settings:
    return request.app.state.scorer.settings


async def _body(request: Request) -> bytes:
    """The raw body, refused with 413 before it is buffered when it exceeds ``max_body_bytes``
    (by ``Content-Length``, or while streaming a chunked body)."""
    limit = request.app.state.scorer.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if int(declared) > limit:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
        return await request.body()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


ScorerDep = Annotated[Scorer, Depends(_scorer)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
SettingsDep = Annotated[Settings, Depends(_settings)]
Body = Annotated[bytes, Depends(_body)]
