"""Dependencies shared by the routers (the objects ``create_app`` put on ``app.state``), and
the route class that documents the hot routes.

The dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the threadpool,
a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from service.metrics import Metrics
from service.registry import ModelRegistry
from service.scoring import Scorer
from service.settings import Settings

__all__ = [
    "DocumentedRoute",
    "MetricsDep",
    "RegistryDep",
    "ScorerDep",
    "SettingsDep",
    "scorer_of",
]


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


ScorerDep = Annotated[Scorer, Depends(_scorer)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
SettingsDep = Annotated[Settings, Depends(_settings)]
