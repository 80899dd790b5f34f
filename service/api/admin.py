"""``POST /admin/reload``: reload the models directory, guarded by a bearer token.

The new set is built in a worker thread while requests keep being served from the old one; the
answer (200) lists what was loaded, kept from before and refused (with the reason, and without
server paths). A refused bundle never fails the reload; only a missing models directory does
(409), and then the loaded bundles stay served.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from service.api.deps import ScorerDep, SettingsDep, error_responses
from service.errors import Unauthorized

__all__ = ["ReloadReport", "router"]

router = APIRouter(prefix="/admin", tags=["admin"])
_bearer = HTTPBearer(auto_error=False, description="The token set in NAE_ADMIN_TOKEN.")


class ReloadReport(BaseModel):
    """What a reload did: ``name/version`` lists, and refused bundle -> reason."""

    loaded: list[str]
    kept: list[str]
    refused: dict[str, str]


@router.post("/reload", response_model=ReloadReport, responses=error_responses(401, 403, 409))
async def reload(
    scorer: ScorerDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ReloadReport:
    """Reload every bundle; refused bundles that were served before stay served."""
    _authorize(
        settings.admin_token.get_secret_value() if settings.admin_token else None, credentials
    )
    report = await anyio.to_thread.run_sync(scorer.load_bundles)
    return ReloadReport(**dataclasses.asdict(report))


def _authorize(token: str | None, credentials: HTTPAuthorizationCredentials | None) -> None:
    if token is None:
        raise Unauthorized("admin endpoints are disabled: set NAE_ADMIN_TOKEN", status=403)
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing 'Authorization: Bearer <token>' header")
    if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
        raise Unauthorized("wrong admin token", status=403)
