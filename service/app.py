"""``create_app(settings)``: the application.

The lifespan loads the bundles (in a worker thread; ``/v2/health/ready`` answers 503 until
then). The scoring routes (``POST /score``, ``POST /v2/models/.../infer``) are served by
``ScoringApp`` before FastAPI's middleware and routing (``service.api.exchange``); every other
route is plain FastAPI. Errors are translated once per side, to the same shape:
``ServiceError`` keeps its status and headers, FastAPI's validation errors are 400 (422 is
kept for scores that are not finite) and its routing errors keep their status, anything else is
a 500; the body is always ``{"error": message}``. Every request is
counted by route template and status (a pure ASGI middleware for the FastAPI routes).

The OpenAPI document (``/openapi.json``, ``/docs``, ``/redoc``) lists every route's request
body and error responses; it is rebuilt when a reload changes the loaded bundles, whose first
gives the scoring routes their example request.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.api import admin, metrics, models, oip, score
from service.api.docs import add_bundle_examples, drop_validation_error_docs, install_docs
from service.api.exchange import HotEndpoint, error_reply, serve_hot
from service.errors import ServiceError
from service.memory import BodyBudget
from service.metrics import Metrics
from service.registry import ModelRegistry, ModelSet
from service.scoring import Scorer
from service.settings import Settings

__all__ = ["ScoringApp", "create_app"]

logger = logging.getLogger(__name__)


class ScoringApp(FastAPI):
    """FastAPI, with the scoring routes served first, straight on ASGI.

    Through FastAPI's ten ASGI layers (error, body-limit, exception and exit-stack
    middlewares, two routers, the route) a single-event request cost 324-348 us of server CPU
    here; served here, 228-251 us (docs/performance.md, "Hot path on ASGI"). The routes stay
    declared in FastAPI for the OpenAPI document (``DocumentedRoute``); any other method on
    these paths falls through to FastAPI (405)."""

    scorer: Scorer
    bodies: BodyBudget
    _documented: ModelSet | None = None  # the bundle set the OpenAPI document was built for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            hot = hot_route(_route_path(scope))
            if hot is not None:
                endpoint, template, params = hot
                await serve_hot(
                    endpoint, template, params, self.scorer, self.bodies, scope, receive, send
                )
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with an example request for the scoring routes made from the
        loaded bundles; rebuilt when a reload changed them."""
        models = self.scorer.registry.models
        if self._documented is not models:
            self.openapi_schema = None
            self._documented = models
        if self.openapi_schema is None:
            schema = super().openapi()
            drop_validation_error_docs(schema)
            add_bundle_examples(schema, models)
        return self.openapi_schema


def _route_path(scope: Scope) -> str:
    """The path without the ``root_path`` a proxy mounted the app under (as Starlette routes)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def hot_route(path: str) -> tuple[HotEndpoint, str, dict[str, str]] | None:
    """``(endpoint, route template, path parameters)`` of a scoring path, else ``None``."""
    if path == "/score":
        return score.score, "/score", {}
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path.split("/")  # "", "v2", "models", name, ["versions", version,] "infer"
    if len(parts) == 5 and parts[3]:
        return oip.infer, "/v2/models/{name}/infer", {"name": parts[3]}
    if len(parts) == 7 and parts[3] and parts[4] == "versions" and parts[5]:
        template = "/v2/models/{name}/versions/{version}/infer"
        return oip.infer, template, {"name": parts[3], "version": parts[5]}
    return None


def create_app(settings: Settings, *, reload_on_sighup: bool = False) -> ScoringApp:
    """The service on ``settings``. ``reload_on_sighup`` (set by ``nae serve``, which owns the
    main thread's event loop) reloads the bundles on SIGHUP."""
    scorer = _scorer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(scorer.load_bundles)
        if reload_on_sighup:
            _install_sighup(scorer)
        try:
            yield
        finally:
            if reload_on_sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await anyio.to_thread.run_sync(scorer.close)

    app = ScoringApp(
        title="nae-trigger",
        version=__version__,
        summary="Anomaly-trigger scores for LHC events and jets (ONNX Runtime).",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    app.state.scorer = app.scorer = scorer
    app.bodies = BodyBudget(settings.max_inflight_bytes)
    for router in (score.router, oip.router, models.router, metrics.router, admin.router):
        app.include_router(router)
    install_docs(app)
    _install_error_handlers(app)
    app.add_middleware(_RequestMetrics, metrics=scorer.metrics, routes=app.routes)
    return app


def _scorer(settings: Settings) -> Scorer:
    registry = ModelRegistry(
        settings.models_dir,
        default_model=settings.default_model,
        intra_op_threads=settings.ort_intra_op_threads,
        model_file=settings.model_file,
        strict_readiness=settings.strict_readiness,
    )
    collectors = CollectorRegistry()
    ProcessCollector(registry=collectors)
    GCCollector(registry=collectors)
    metrics_ = Metrics(
        collectors,
        window_seconds=settings.trigger_window_seconds,
        reference_rate_hz=settings.reference_rate_hz,
    )
    return Scorer(registry, metrics_, settings)


def _install_sighup(scorer: Scorer) -> None:
    loop = asyncio.get_running_loop()

    async def reload() -> None:
        try:
            report = await anyio.to_thread.run_sync(scorer.load_bundles)
        except ServiceError as exc:
            logger.error("SIGHUP reload failed: %s", exc.message)
            return
        logger.info(
            "SIGHUP reload: loaded %s, kept %s, refused %s",
            report.loaded,
            report.kept,
            sorted(report.refused),
        )

    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(
        error_reply(message, status).body, status, headers, media_type="application/json"
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return _error(exc.message, exc.status, dict(exc.headers))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in exc.errors()
        )
        return _error(f"invalid request: {problems}", 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(str(exc.detail), exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(f"internal error: {type(exc).__name__}", 500)


class _RequestMetrics:
    """Counts requests and their duration by route template (bounded label values) and status.
    FastAPI names the matched route in the scope for its own routes only; the others (the
    OpenAPI document, the docs pages and their assets) are matched here."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        as_received = dict(scope)  # routing rewrites root_path and path for mounts
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route") or self._match(as_received)
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.record_request(endpoint, status, time.perf_counter() - start)

    def _match(self, scope: Scope) -> BaseRoute | None:
        scope = {**scope, "path": _route_path(scope)}
        return next((route for route in self.routes if route.matches(scope)[0] == Match.FULL), None)
