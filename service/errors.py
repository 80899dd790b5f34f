"""Domain errors of the service. Lower layers raise them; ``app`` translates them once into an
HTTP status and ``{"error": message}``. No FastAPI here, so the runtime and codecs stay HTTP-free.
"""

from __future__ import annotations

__all__ = [
    "BadInput",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "ReloadFailed",
    "ServiceError",
    "Unauthorized",
    "Unscorable",
]


class ServiceError(Exception):
    """An error the client can act on: ``message`` names the problem, ``status`` the HTTP code."""

    status: int = 400
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (``WWW-Authenticate``, ``Retry-After``)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadInput(ServiceError):
    """The request body or its arrays break the API contract (shape, dtype, NaN, empty...)."""

    status = 400


class ModelNotFound(ServiceError):
    """The request names a bundle or version that is not loaded."""

    status = 404


class PayloadTooLarge(ServiceError):
    """The body exceeds ``max_body_bytes`` or the batch exceeds ``max_batch_size``."""

    status = 413


class Unscorable(ServiceError):
    """The model gave an event a score that is not finite (the inputs overflow it)."""

    status = 422


class Overloaded(ServiceError):
    """Request bodies in flight already fill ``max_inflight_bytes``; retry shortly."""

    status = 503
    headers = (("Retry-After", "1"),)


class Unauthorized(ServiceError):
    """An admin request without a bearer token (401) or with a wrong one (403)."""

    status = 401
    headers = (("WWW-Authenticate", "Bearer"),)


class ReloadFailed(ServiceError):
    """A reload could not read the models directory at all; the old bundles stay served."""

    status = 409
