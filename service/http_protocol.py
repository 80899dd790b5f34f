"""uvicorn's httptools protocol, writing each response in one system call.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and the body on ``http.response.body``: two ``send`` calls and two TCP
segments per response, which the client must also read separately. On a single-event request
that is ~20% of the server's CPU (the bare app of ``benchmarks/http_floor.py``, 8 clients,
alternating runs: 54-56 -> 43-44 us per request, 17.6k-18.3k -> 22.5k-22.9k requests/s, p99
0.86-0.87 -> 0.45-0.46 ms). ``CorkedHttpToolsProtocol`` gives the
protocol a transport that gathers the writes of one event-loop step and flushes them with one
``writelines`` (``writev``) at the end of it. ``service.server`` passes it as uvicorn's
``http`` protocol class, uvicorn's documented extension point.

It touches uvicorn internals (``HttpToolsProtocol.connection_made`` and its ``loop``), so it is
tested on one uvicorn minor version (``TESTED_UVICORN``; the serve extra pins it), and
``NAE_CORKED_WRITES=false`` turns it off.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["TESTED_UVICORN", "CorkedHttpToolsProtocol", "CorkedTransport"]

TESTED_UVICORN = "0.54"


class CorkedTransport:
    """A transport whose writes within one event-loop step go out together; everything else is
    the wrapped transport's."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write what is pending (the wrapped transport buffers what the socket refuses)."""
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CorkedTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))  # type: ignore[arg-type]
