"""``serve(settings, host=..., port=...)``: the one place where the server is assembled.

``nae serve``, the tests' live server and the benchmarks all start the service here: uvicorn
with one worker, no access log unless asked, proxy headers only with the access log (the client
address appears nowhere else), glibc's malloc settings of ``service.memory``, and uvicorn's
httptools protocol with one write per response (``service.http_protocol``) when
``NAE_CORKED_WRITES`` allows it and uvicorn is the version that subclass is tested on.
"""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from service.app import create_app
from service.http_protocol import TESTED_UVICORN, CorkedHttpToolsProtocol
from service.memory import keep_freed_memory
from service.settings import Settings

__all__ = ["serve", "uvicorn_config"]

logger = logging.getLogger(__name__)


def uvicorn_config(
    app: Any,
    settings: Settings,
    *,
    host: str,
    port: int,
    access_log: bool = False,
    log_level: str = "info",
) -> uvicorn.Config:
    """uvicorn's configuration for ``app`` as the service runs it."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=access_log,
        http=_http_protocol(settings),
        lifespan="on",
    )


def serve(settings: Settings, *, host: str, port: int, access_log: bool = False) -> None:
    """Serve the bundles of ``settings`` until interrupted; SIGHUP reloads them."""
    keep_freed_memory()
    app = create_app(settings, reload_on_sighup=True)
    uvicorn.Server(uvicorn_config(app, settings, host=host, port=port, access_log=access_log)).run()


def _http_protocol(settings: Settings) -> type | str:
    if not settings.corked_writes:
        return "httptools"
    if not uvicorn.__version__.startswith(f"{TESTED_UVICORN}."):
        logger.warning(
            "uvicorn %s: one-write responses are tested on uvicorn %s only; using uvicorn's "
            "own httptools protocol",
            uvicorn.__version__,
            TESTED_UVICORN,
        )
        return "httptools"
    return CorkedHttpToolsProtocol
