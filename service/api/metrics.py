"""``GET /metrics``: the app's Prometheus registry in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import MetricsDep, error_responses

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        },
        **error_responses(),
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Every ``nae_*`` metric plus process metrics (memory, CPU) of this worker."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
