"""The API's documentation: Swagger UI at ``/docs`` and ReDoc at ``/redoc`` with their assets
served from this process (the ``fastapi-offline`` package ships them), so the pages work
without a network; and request examples made from the loaded bundles, so that the example of
each scoring route is a request the service answers with 200.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service.registry import ModelSet
from service.runtime import OnnxModel

__all__ = ["ASSETS_PATH", "add_bundle_examples", "drop_validation_error_docs", "install_docs"]

ASSETS_PATH = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets (create the app with ``docs_url=None`` and
    ``redoc_url=None``)."""
    static = importlib.resources.files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )


def add_bundle_examples(schema: dict[str, Any], models: ModelSet) -> None:
    """Give the scoring routes of an OpenAPI document ``schema`` one example request, for the
    default (highest) version of the first loaded bundle: one event of in-range values."""
    model = _example_model(models)
    if model is None:
        return
    event = _example_event(model)  # (1, *input_shape)
    paths = schema["paths"]
    score = {"model": model.name, "inputs": event.tolist()}
    paths["/score"]["post"]["requestBody"]["content"]["application/json"]["example"] = score
    tensor = {
        "name": model.bundle.input.name,
        "shape": list(event.shape),
        "datatype": "FP32",
        "data": event.ravel().tolist(),
    }
    for path, values in (
        ("/v2/models/{name}/infer", {"name": model.name}),
        (
            "/v2/models/{name}/versions/{version}/infer",
            {"name": model.name, "version": str(model.version)},
        ),
    ):
        operation = paths[path]["post"]
        operation["requestBody"]["content"]["application/json"]["example"] = {"inputs": [tensor]}
        for parameter in operation["parameters"]:
            if parameter["in"] == "path":
                parameter["example"] = values[parameter["name"]]


def drop_validation_error_docs(schema: dict[str, Any]) -> None:
    """Remove the 422 ``HTTPValidationError`` FastAPI documents on routes with parameters:
    this service answers validation errors with 400 ``{"error": ...}`` (``app``), which every
    route documents with ``deps.error_responses``."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(response):
                del operation["responses"]["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def _example_model(models: ModelSet) -> OnnxModel | None:
    for name in sorted(models.versions):
        by_version = models.versions[name]
        return by_version[max(by_version)]
    return None


def _example_event(model: OnnxModel) -> np.ndarray:
    """One event ``(1, *input_shape)`` of zeros moved into the bundle's ranges."""
    event = np.zeros((1, *model.input_shape), np.float32)
    if model.ranges is not None:
        event = np.clip(event, model.ranges.low, model.ranges.high)
    return event
