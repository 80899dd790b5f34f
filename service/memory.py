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
size (a burst of large JSON requests stays resident, see docs/performance.md), which a service
sized for its peak can pay.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Keep freed memory in the heap for reuse (trim threshold 1 GiB) and serve allocations
    up to 32 MiB from it rather than with ``mmap``. Returns whether glibc took the settings
    (``False`` on other C libraries, where nothing changes)."""
    path = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(path).mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("no mallopt in %s: malloc settings unchanged", path)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
