"""Dependencies shared by the routers: the objects ``create_app`` put on ``app.state``, and the
request body read under the size limit.

The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the threadpool,
a thread hop per dependency per request. The scoring routes (``/score``, ``/v2/.../infer``) are
``DirectRoute``s that skip dependency injection altogether and call ``scorer_of`` and
``read_body`` themselves: FastAPI's request handling (solving dependencies, even for a bare
``Request`` parameter, and parsing the query string) cost about as much CPU as the rest of a
single-event request's Python work.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from service.errors import BadInput, PayloadTooLarge
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.scoring import Scorer
from service.settings import Settings

__all__ = [
    "DirectRoute",
    "MetricsDep",
    "RegistryDep",
    "ScorerDep",
    "SettingsDep",
    "read_body",
    "scorer_of",
]


class DirectRoute(APIRoute):
    """A route whose endpoint takes the ``Request`` and returns a ``Response`` itself.

    It appears in the OpenAPI document like any route (declare its parameters and body with
    ``openapi_extra``), but FastAPI's request handler (dependency solving, parameter parsing,
    response serialization) is replaced by a direct call: FastAPI's documented ``route_class``
    extension point."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def scorer_of(request: Request) -> Scorer:
    """The app's ``Scorer`` (``create_app`` puts it on ``app.state``)."""
    return request.app.state.scorer


async def read_body(request: Request) -> bytes | memoryview:
    """The raw body, refused with 413 before it is buffered when it exceeds ``max_body_bytes``
    (by ``Content-Length``, or while streaming a chunked body).

    With a ``Content-Length`` the chunks are copied into one buffer as they arrive, so a body of
    megabytes is held once rather than twice (Starlette's ``request.body()`` keeps every chunk
    until the end and then joins them). The buffer is an uninitialised numpy array: a
    ``bytearray`` would first zero it, which costs more than half the copy. The result is
    bytes-like (``bytes``, or a ``memoryview`` of that buffer), which every decoder in
    ``service.codecs`` reads without a copy; a body that arrives in one chunk is not copied."""
    limit = scorer_of(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is None:
        return await _read_chunked(request, limit)
    size = int(declared)
    if size > limit:
        raise PayloadTooLarge(f"body of {size} bytes exceeds the limit of {limit} bytes")
    stream = request.stream()
    first = b""
    async for first in stream:
        if first:
            break
    if len(first) == size:
        return first
    view = np.empty(size, np.uint8).data
    view[: len(first)] = first
    filled = len(first)
    async for chunk in stream:
        if filled + len(chunk) > size:
            raise BadInput(f"body is longer than its Content-Length of {size} bytes")
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if filled != size:
        raise BadInput(f"body of {filled} bytes is shorter than its Content-Length of {size}")
    return view


async def _read_chunked(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _registry(request: Request) -> ModelRegistry:
    return scorer_of(request).registry


async def _metrics(request: Request) -> Metrics:
    return scorer_of(request).metrics


async def _settings(request: Request) -> Settings:
    return scorer_of(request).settings


async def _scorer(request: Request) -> Scorer:
    return scorer_of(request)


ScorerDep = Annotated[Scorer, Depends(_scorer)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
SettingsDep = Annotated[Settings, Depends(_settings)]
