"""``MicroBatcher``: merges concurrent small requests for one model into one ONNX Runtime call.

Many clients sending single events pay the per-call overhead of ONNX Runtime (and a thread hop)
once per event; merged, they pay it once per batch. A request waits at most
``max_queue_delay_us`` for others to join, and a batch never exceeds ``max_batch_size`` events.
Requests that alone reach that size skip the queue. ``run`` is a coroutine: it decides where
ONNX Runtime runs and counts the merged batch.

The drain task runs only while requests are queued and exits when the queue is empty, so a
batcher needs no shutdown and is dropped together with its model after a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import numpy as np

__all__ = ["MicroBatcher"]


Outputs = tuple[np.ndarray, ...]


class MicroBatcher:
    """Queue of ``(events, future)``; ``run`` scores a merged batch ``(N, ...)`` into a tuple
    of arrays whose last axis is the event (scores ``(N,)``, triggers ``(n, N)``...), and each
    request gets the tuple of its slices."""

    def __init__(
        self,
        run: Callable[[np.ndarray], Awaitable[Outputs]],
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
    ) -> None:
        self._run = run
        self._max_batch_size = max_batch_size
        self._max_delay_seconds = max_queue_delay_us * 1e-6
        self._pending: list[tuple[np.ndarray, asyncio.Future[Outputs]]] = []
        self._pending_events = 0
        self._full = asyncio.Event()
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        """Requests waiting (``nae_batch_queue_depth`` reads it at scrape time)."""
        return len(self._pending)

    async def score(self, x: np.ndarray) -> Outputs:
        """``run``'s outputs for ``x``, computed together with whatever else is queued."""
        if len(x) >= self._max_batch_size:
            return await self._run(x)
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._pending.append((x, future))
        self._pending_events += len(x)
        if self._pending_events >= self._max_batch_size:
            self._full.set()
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            if self._pending_events < self._max_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._max_delay_seconds)
            batch = self._take()
            await self._run_batch(batch)

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future[Outputs]]]:
        """Pop whole requests from the front until the next would overflow the batch."""
        n_taken, size = 0, 0
        for x, _ in self._pending:
            if n_taken and size + len(x) > self._max_batch_size:
                break
            n_taken, size = n_taken + 1, size + len(x)
        batch, self._pending = self._pending[:n_taken], self._pending[n_taken:]
        self._pending_events -= size
        if self._pending_events < self._max_batch_size:
            self._full.clear()
        return batch

    async def _run_batch(self, batch: list[tuple[np.ndarray, asyncio.Future[Outputs]]]) -> None:
        arrays = [x for x, _ in batch]
        merged = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        try:
            outputs = await self._run(merged)
        except Exception as exc:  # every waiting request gets the failure, the drain goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        offsets = np.cumsum([len(x) for x in arrays])[:-1]
        parts = [np.split(output, offsets, axis=-1) for output in outputs]
        for i, (_, future) in enumerate(batch):
            if not future.done():  # a disconnected client's request was cancelled
                future.set_result(tuple(output_parts[i] for output_parts in parts))
