"""``POST /score``: the product's endpoint (docs/contracts.md, contract 3).

Bodies: JSON ``{"model": NAME, "inputs": [...]}``, ``application/x-npy``, or raw little-endian
float32 (``application/octet-stream``) with ``X-Shape: N,d1,...``; binary bodies name the bundle
with ``?model=NAME``. The answer is JSON ``{"model", "version", "scores", "triggers"}``, or the
scores as ``.npy`` when ``Accept`` asks for ``application/x-npy`` (bundle and version then travel
in the ``X-Model`` and ``X-Model-Version`` headers).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import DocumentedRoute, error_responses
from service.api.exchange import Exchange, Reply
from service.codecs import (
    NPY_MEDIA_TYPE,
    RAW_MEDIA_TYPE,
    SHAPE_HEADER,
    array_from_json,
    array_from_npy,
    array_from_raw,
    checked_name,
    json_bytes,
    json_from_body,
    media_type_of,
    npy_bytes,
    score_json_fast,
)
from service.errors import BadInput
from service.schemas import ScoreRequest, ScoreResponse
from service.scoring import Scorer

__all__ = ["router", "score"]

router = APIRouter(tags=["score"], route_class=DocumentedRoute)

_REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ScoreRequest.model_json_schema()},
            NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
            RAW_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    # Served by ``ScoringApp``: the query parameter is declared here for the OpenAPI document.
    "parameters": [
        {
            "name": "X-Shape",
            "in": "header",
            "required": False,
            "description": "Shape of a raw float32 body with the batch axis, e.g. `100,19,4` "
            "(an empty header is no header: uvicorn drops it).",
            "schema": {
                "type": "string",
                "pattern": "^( *[0-9]{1,18} *(, *[0-9]{1,18} *){0,7})?$",
            },
        },
        {
            "name": "model",
            "in": "query",
            "required": False,
            "description": "Bundle name (binary bodies; a JSON body's `model` wins).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        },
    ],
}


@router.post(
    "/score",
    name="score",
    openapi_extra=_REQUEST_BODY_DOC,
    responses={
        200: {
            "model": ScoreResponse,
            "description": "Scores and triggers (JSON), or the scores as `.npy` float32 "
            "when `Accept: application/x-npy` (bundle and version in `X-Model` and "
            "`X-Model-Version`).",
            "content": {NPY_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **error_responses(400, 404, 413, 415, 422, 503),
    },
)
async def score_documented() -> None:
    """Score a batch of events: JSON ``{"model": NAME, "inputs": [...]}``, an ``.npy`` body, or
    raw little-endian float32 with ``X-Shape``; answers JSON, or ``.npy`` scores when
    ``Accept: application/x-npy``."""


async def score(scorer: Scorer, exchange: Exchange) -> Reply:
    """``POST /score``; see the module docstring for the body formats. The media type is
    checked before the body is read."""
    query_model = checked_name(exchange.query("model"), what="query parameter model")
    media_type = media_type_of(exchange.header("content-type"), "application/json")
    if media_type not in (NPY_MEDIA_TYPE, RAW_MEDIA_TYPE, "application/json"):
        raise BadInput(
            f"unsupported Content-Type {media_type[:60]!r}: send application/json, "
            f"{NPY_MEDIA_TYPE} or {RAW_MEDIA_TYPE} with X-Shape",
            status=415,
        )
    if media_type != RAW_MEDIA_TYPE and exchange.header(SHAPE_HEADER) is not None:
        raise BadInput(
            f"X-Shape describes raw float32 bodies ({RAW_MEDIA_TYPE}); a {media_type} body "
            "carries its own shape: drop the header"
        )
    body = await exchange.body(scorer.settings.max_body_bytes)
    if media_type == NPY_MEDIA_TYPE:
        bundle_model = scorer.resolve(query_model)
        x = array_from_npy(body)
    elif media_type == RAW_MEDIA_TYPE:
        bundle_model = scorer.resolve(query_model)
        x = array_from_raw(body, exchange.header(SHAPE_HEADER))
    elif (fast := score_json_fast(body)) is not None:
        bundle_model = scorer.resolve(checked_name(fast[0]) or query_model)
        x = fast[1]
    else:
        payload = json_from_body(body)
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise BadInput('JSON body must be an object {"model": NAME, "inputs": [[...], ...]}')
        bundle_model = scorer.resolve(checked_name(payload.get("model")) or query_model)
        x = array_from_json(payload["inputs"])
    result = await scorer.score(bundle_model, x)
    if NPY_MEDIA_TYPE in (exchange.header("accept") or "").lower():
        headers = (("x-model", result.model.name), ("x-model-version", str(result.model.version)))
        return Reply(npy_bytes(result.scores), NPY_MEDIA_TYPE, headers=headers)
    content = {
        "model": result.model.name,
        "version": result.model.version,
        "scores": result.scores,
        "triggers": result.triggers,
    }
    return Reply(json_bytes(content))
