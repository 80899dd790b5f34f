"""``keep_freed_memory()``: glibc malloc settings for a process that handles large bodies.

With glibc's defaults, a body of a few hundred kB is allocated (by uvicorn, then by the
decoders) above the heap top or with ``mmap``, and given back to the kernel when freed. With one
request at a time glibc's dynamic thresholds adapt and nothing changes. With several requests in
flight their buffers interleave, the heap top is trimmed and grown again, and the kernel maps and
zero-fills fresh pages per request: ~3 ``brk`` calls and ~170 page faults per request for the
bare app of ``benchmarks/http_floor.py`` at 8 clients (``strace -c``, ``perf stat``).

Measured here, 8 wrk clients, alternating servers with and without these settings: that bare
app with 1,000-event ``.npy`` bodies 3,000-3,220 -> 6,490-6,990 requests/s (10,000 events:
444 -> 689-696); the service, 1,000-event JSON 376-382 -> 405-414 requests/s and ``.npy``
1,800-1,863 -> 1,831-1,941 (10,000 events: no difference). The price: the heap keeps its peak
size (a burst of large JSON requests stays resident), so two more pieces bound it:

- ``BodyBudget`` caps the bytes of request bodies in flight across all connections
  (``NAE_MAX_INFLIGHT_BYTES``); a body that would pass the cap is refused with 503 before it
  is read, so many clients holding large bodies cannot grow the heap without bound.
- After a burst, once no body has been in flight for ``IDLE_SECONDS``, the freed heap goes
  back to the kernel (``release_freed_memory``, glibc's ``malloc_trim``). Under steady load
  the service is never idle that long, so the retention above keeps working. Every reload
  trims too (``Scorer.load_bundles``): the sessions it replaces are freed under load.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

__all__ = [
    "IDLE_SECONDS",
    "TRIM_AFTER_BYTES",
    "BodyBudget",
    "keep_freed_memory",
    "release_freed_memory",
]

logger = logging.getLogger(__name__)

IDLE_SECONDS = 1.0  # a pause in traffic this long ends a burst
TRIM_AFTER_BYTES = 16 * 1024 * 1024  # a burst with fewer bytes in flight grew the heap little

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Keep freed memory in the heap for reuse (trim threshold 1 GiB) and serve allocations
    up to 32 MiB from it rather than with ``mmap``. Returns whether glibc took the settings
    (``False`` on other C libraries, where nothing changes)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the kernel (``malloc_trim(0)``). Returns whether
    glibc released any (``False`` on other C libraries)."""
    malloc_trim = _libc_function("malloc_trim")
    return bool(malloc_trim is not None and malloc_trim(0))


@functools.cache
def _libc_function(name: str) -> Callable[..., int] | None:
    path = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError, TypeError):
        logger.debug("no %s in %s: malloc settings unchanged", name, path)
        return None


class BodyBudget:
    """Bytes of request bodies in flight across all connections of one worker, at most
    ``limit``. Used on the event loop only (no lock): ``reserve`` before buffering a body or
    chunk, ``release`` when its request is done.

    When the bytes in flight fall to zero after a burst (a peak of ``TRIM_AFTER_BYTES`` or
    more since the last trim) and stay there for ``IDLE_SECONDS``, ``release_freed_memory``
    runs in a worker thread (ctypes drops the GIL)."""

    def __init__(self, limit: int, *, trim: Callable[[], object] = release_freed_memory) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak_since_trim = 0
        self.trims = 0
        self._trim = trim
        self._reservations = 0  # counts reserve() calls: a trim waits for a quiet second
        self._check: asyncio.TimerHandle | None = None

    def reserve(self, n_bytes: int) -> bool:
        """Take ``n_bytes`` of the budget; ``False`` (and nothing taken) when it would pass
        the limit."""
        if self.in_flight + n_bytes > self.limit:
            return False
        self.in_flight += n_bytes
        self.peak_since_trim = max(self.peak_since_trim, self.in_flight)
        self._reservations += 1
        return True

    def release(self, n_bytes: int) -> None:
        """Give back ``n_bytes``; at zero after a burst, schedule the trim."""
        self.in_flight -= n_bytes
        if self.in_flight == 0 and self.peak_since_trim >= TRIM_AFTER_BYTES:
            self._schedule_check()

    def _schedule_check(self) -> None:
        if self._check is None:
            loop = asyncio.get_running_loop()
            self._check = loop.call_later(IDLE_SECONDS, self._trim_if_idle, self._reservations)

    def _trim_if_idle(self, reservations_then: int) -> None:
        self._check = None
        if self.in_flight:
            return  # the release that brings it back to zero schedules again
        if self._reservations != reservations_then:
            self._schedule_check()  # traffic went on: wait for a quiet second
            return
        self.peak_since_trim = 0
        self.trims += 1
        asyncio.get_running_loop().run_in_executor(None, self._trim)
