"""One request on the hot routes (``/score``, ``/v2/.../infer``), read straight from ASGI.

``ScoringApp`` (``service.app``) serves these routes before FastAPI's middleware and routing:
on a single-event request those layers cost about three times the service's own work. An
endpoint gets an ``Exchange`` (headers, query parameters, the body under the size limits) and
returns a ``Reply``; ``serve_hot`` turns errors into ``{"error": ...}`` answers, sends the reply
and counts the request, as the FastAPI error handlers and middleware do for every other route.

Bodies are taken from the worker's ``BodyBudget`` (``NAE_MAX_INFLIGHT_BYTES``) before they are
buffered and given back when the answer is sent. ``Content-Encoding`` other than ``identity``
is refused with 415 on both routes (the only ones that read a body): a compressed body would
escape the size limits until it was inflated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import numpy as np
from starlette.types import Receive, Scope, Send

from service.codecs import integer_from_text, json_bytes
from service.errors import BadInput, Overloaded, PayloadTooLarge, ServiceError
from service.memory import BodyBudget
from service.scoring import Scorer

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "ClientGone",
    "Exchange",
    "HotEndpoint",
    "Reply",
    "error_reply",
    "serve_hot",
]

logger = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away mid-request


class ClientGone(Exception):
    """The client disconnected before its whole body arrived."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 us to build
class Reply:
    """An answer: body, media type, status and extra headers."""

    body: bytes
    media_type: str = "application/json"
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


def error_reply(message: str, status: int, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """The service's one error shape, ``{"error": message}``."""
    return Reply(json_bytes({"error": message}), status=status, headers=headers)


_OVERLOADED = (
    "the server is busy: request bodies in flight fill its memory budget "
    "(NAE_MAX_INFLIGHT_BYTES); retry in a second"
)


class Exchange:
    """Headers, query parameters, path parameters and body of one request."""

    __slots__ = (
        "_budget",
        "_headers",
        "_query",
        "_query_string",
        "_receive",
        "path_params",
        "reserved",
    )

    def __init__(
        self, scope: Scope, receive: Receive, path_params: dict[str, str], budget: BodyBudget
    ) -> None:
        self._headers: dict[bytes, bytes] = dict(scope["headers"])
        self._query_string: bytes = scope["query_string"]
        self._query: dict[str, str] | None = None
        self._receive = receive
        self._budget = budget
        self.path_params = path_params
        self.reserved = 0
        """Bytes of ``budget`` this request holds (``serve_hot`` gives them back)."""

    def header(self, name: str) -> str | None:
        """A header by its lower-case name."""
        value = self._headers.get(name.encode())
        return None if value is None else value.decode("latin-1")

    def query(self, name: str) -> str | None:
        """A query parameter (the first, when repeated)."""
        if self._query is None:
            pairs = parse_qsl(self._query_string.decode("latin-1"), keep_blank_values=True)
            self._query = dict(reversed(pairs))
        return self._query.get(name)

    async def body(self, limit: int) -> bytes | memoryview:
        """The raw body, refused with 413 before it is buffered when it exceeds ``limit`` bytes
        (by ``Content-Length``, or while a chunked body streams in), with 503 when the
        worker's budget of bytes in flight cannot hold it, and with 415 when it is compressed.

        With a ``Content-Length`` the chunks are copied as they arrive into one uninitialised
        numpy buffer (a ``bytearray`` would first zero it, which costs more than half the
        copy), so a body of megabytes is held once; a body that arrives in one chunk is not
        copied at all. The result is bytes-like, which every decoder in ``service.codecs``
        reads without a copy."""
        encoding = self.header("content-encoding")
        if encoding is not None and encoding.strip().lower() not in ("", "identity"):
            raise BadInput(
                f"Content-Encoding {encoding[:40]!r} is not supported: send the body "
                "uncompressed (no Content-Encoding, or identity)",
                status=415,
            )
        declared = self.header("content-length")
        if declared is None:
            return await self._read_chunked(limit)
        size = integer_from_text(declared, what="Content-Length")
        if size > limit:
            raise PayloadTooLarge(f"body of {size} bytes exceeds the limit of {limit} bytes")
        self._reserve(size)
        chunk, more = await self._next_chunk()
        if not more and len(chunk) == size:
            return chunk
        view = np.empty(size, np.uint8).data
        filled = 0
        while True:
            if filled + len(chunk) > size:
                raise BadInput(f"body is longer than its Content-Length of {size} bytes")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            if not more:
                break
            chunk, more = await self._next_chunk()
        if filled != size:
            raise BadInput(f"body of {filled} bytes is shorter than its Content-Length of {size}")
        return view

    async def _read_chunked(self, limit: int) -> bytes:
        chunks, size, more = [], 0, True
        while more:
            chunk, more = await self._next_chunk()
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
            self._reserve(2 * len(chunk))  # the chunk, then its copy in the joined body
            chunks.append(chunk)
        return b"".join(chunks)

    def _reserve(self, n_bytes: int) -> None:
        if not self._budget.reserve(n_bytes):
            raise Overloaded(_OVERLOADED)
        self.reserved += n_bytes

    async def _next_chunk(self) -> tuple[bytes, bool]:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        return message.get("body", b""), message.get("more_body", False)


HotEndpoint = Callable[[Scorer, Exchange], Awaitable[Reply]]


async def serve_hot(
    endpoint: HotEndpoint,
    template: str,
    path_params: dict[str, str],
    scorer: Scorer,
    budget: BodyBudget,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Run ``endpoint`` on one request and send its reply; count the request under the route
    ``template`` with its status. A client that left mid-body is counted as 499 and not logged:
    nothing failed here and nobody reads the answer."""
    start = time.perf_counter()
    status = 500
    scorer.in_flight += 1
    exchange = Exchange(scope, receive, path_params, budget)
    try:
        try:
            reply = await endpoint(scorer, exchange)
        except ServiceError as exc:
            reply = error_reply(exc.message, exc.status, exc.headers)
        except ClientGone:
            status = CLIENT_CLOSED_REQUEST
            return
        except Exception as exc:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            reply = error_reply(f"internal error: {type(exc).__name__}", 500)
        status = reply.status
        headers = [
            (b"content-type", reply.media_type.encode()),
            (b"content-length", str(len(reply.body)).encode()),
        ]
        headers += [(name.encode(), value.encode()) for name, value in reply.headers]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
    finally:
        scorer.in_flight -= 1
        budget.release(exchange.reserved)
        scorer.metrics.record_request(template, status, time.perf_counter() - start)
