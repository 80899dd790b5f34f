"""Dependencies shared by the routers (the objects ``create_app`` put on ``app.state``), and
the route class that documents the hot routes.

The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the threadpool,
a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Response
from fastapi.routing import APIRoute

from service.codecs import MAX_NAME_LENGTH
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.schemas import ErrorResponse
from service.scoring import Scorer
from service.settings import Settings

__all__ = [
    "NAME_SCHEMA",
    "VERSION_SCHEMA",
    "DocumentedRoute",
    "MetricsDep",
    "NameParam",
    "RegistryDep",
    "ScorerDep",
    "SettingsDep",
    "VersionParam",
    "error_responses",
    "scorer_of",
]

_ERRORS: dict[int, str] = {
    400: "Bad input: the message names the problem (shape, dtype, NaN, input range, model name, "
    "header...) and, where it helps, the first offending event.",
    401: "No `Authorization: Bearer <token>` header.",
    403: "Wrong token, or the admin endpoints are disabled (no NAE_ADMIN_TOKEN).",
    404: "No such bundle or version is loaded.",
    409: "The models directory is missing on reload; the loaded bundles stay served.",
    413: "The body exceeds NAE_MAX_BODY_BYTES or the batch NAE_MAX_BATCH_SIZE.",
    415: "Unsupported Content-Type, or a Content-Encoding other than identity.",
    422: "The model scores an event as infinity or NaN (inputs far outside its training "
    "data); nothing in the request was scored.",
    500: "Internal error: a bug in the service, logged with its traceback.",
    503: "Busy: request bodies in flight fill NAE_MAX_INFLIGHT_BYTES; retry after "
    "`Retry-After` seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` entries of a route's error statuses: ``{"error": message}``
    (``schemas.ErrorResponse``), with what each status means here. Every route lists 500."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 500}):
        responses[status] = {"model": ErrorResponse, "description": _ERRORS[status]}
        if status == 503:
            responses[status]["headers"] = _RETRY_AFTER
    return responses


class DocumentedRoute(APIRoute):
    """A route that documents a hot endpoint in the OpenAPI document (declare its parameters
    and body with ``openapi_extra``). ``ScoringApp`` serves these paths before FastAPI's
    routing, so the handler is reached only if this router is mounted in another app."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        async def not_here(request: Request) -> Response:
            raise RuntimeError(f"{self.path} is served by service.app.ScoringApp, not a router")

        return not_here


def scorer_of(request: Request) -> Scorer:
    """The app's ``Scorer`` (``create_app`` puts it on ``app.state``)."""
    return request.app.state.scorer


async def _registry(request: Request) -> ModelRegistry:
    return scorer_of(request).registry


async def _metrics(request: Request) -> Metrics:
    return scorer_of(request).metrics


async def _settings(request: Request) -> Settings:
    return scorer_of(request).settings


async def _scorer(request: Request) -> Scorer:
    return scorer_of(request)


# Path parameters as the OpenAPI document describes them; ``codecs.checked_name`` and
# ``codecs.checked_version`` enforce them (400 naming the problem).
NAME_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
VERSION_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}
NameParam = Annotated[str, Path(json_schema_extra={"maxLength": MAX_NAME_LENGTH})]
VersionParam = Annotated[str, Path(json_schema_extra={"pattern": VERSION_SCHEMA["pattern"]})]

ScorerDep = Annotated[Scorer, Depends(_scorer)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
SettingsDep = Annotated[Settings, Depends(_settings)]
