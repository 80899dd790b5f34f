"""``POST /admin/reload``: reload the models directory, guarded by a bearer token.

The new set is built in a worker thread while requests keep being served from the old one; the
answer lists what was loaded, kept from before and refused (with the reason).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header

from service.api.deps import ScorerDep, SettingsDep
from service.errors import Unauthorized

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload")
async def reload(
    scorer: ScorerDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Reload every bundle; refused bundles that were served before stay served."""
    _authorize(
        settings.admin_token.get_secret_value() if settings.admin_token else None, authorization
    )
    report = await anyio.to_thread.run_sync(scorer.load_bundles)
    return dataclasses.asdict(report)


def _authorize(token: str | None, authorization: str | None) -> None:
    if token is None:
        raise Unauthorized("admin endpoints are disabled: set NAE_ADMIN_TOKEN", status=403)
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise Unauthorized("missing 'Authorization: Bearer <token>' header")
    if not secrets.compare_digest(credentials.encode(), token.encode()):
        raise Unauthorized("wrong admin token", status=403)
