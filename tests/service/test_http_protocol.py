"""``CorkedHttpToolsProtocol``: one write per response, nothing lost or reordered."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np

from service.http_protocol import CorkedTransport
from service.settings import Settings


class RecordingTransport:
    """Records what reaches the socket, one entry per system call."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closed = False

    def writelines(self, chunks: list[bytes]) -> None:
        self.calls.append(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_loop_step_go_out_in_one_call_in_order() -> None:
    async def scenario() -> RecordingTransport:
        raw = RecordingTransport()
        corked = CorkedTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        corked.write(b"first body")
        assert raw.calls == []  # nothing until the loop step ends
        await asyncio.sleep(0)
        corked.write(b"second")
        corked.close()  # close flushes first
        assert corked.get_extra_info("socket") == "info:socket"
        return raw

    raw = asyncio.run(scenario())
    assert raw.calls == [b"HTTP/1.1 200 OK\r\n\r\nfirst body", b"second"]
    assert raw.closed


def test_keep_alive_and_pipelined_requests_are_answered_in_order(
    models_dir: Path, live_server: Callable[[Settings], AbstractContextManager[str]]
) -> None:
    x = np.ones((2, 19, 4), np.float32)
    request = (
        b"POST /score?model=events-test-ae HTTP/1.1\r\nHost: t\r\n"
        b"Content-Type: application/octet-stream\r\nX-Shape: 2,19,4\r\n"
        b"Accept: application/x-npy\r\nContent-Length: %d\r\n\r\n" % x.nbytes
    ) + x.tobytes()
    health = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
    closing = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with live_server(Settings(models_dir=models_dir)) as address:
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            connection.sendall(request + health + request + closing)  # pipelined
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 4
    assert answer.count(b'{"live":true}') == 2
    assert answer.index(b"x-model") < answer.index(b'{"live":true}')
    assert answer.endswith(b'{"live":true}')  # the server closed after the last answer
