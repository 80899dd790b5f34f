"""``service.memory``: glibc takes the settings (this project's images are Debian, glibc), and
the in-flight body budget refuses what would pass its limit and trims the heap after a burst."""

from __future__ import annotations

import asyncio
import platform
import subprocess
import sys

import pytest

from service import memory
from service.memory import TRIM_AFTER_BYTES, BodyBudget, release_freed_memory

GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_glibc_accepts_the_malloc_settings() -> None:
    # In a fresh interpreter: the settings stay for the life of the process that makes them.
    code = "from service.memory import keep_freed_memory; assert keep_freed_memory()"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_freed_memory_can_be_released() -> None:
    assert isinstance(release_freed_memory(), bool)


def test_the_budget_refuses_what_would_pass_its_limit() -> None:
    budget = BodyBudget(100)
    assert budget.reserve(60) and budget.reserve(40)
    assert not budget.reserve(1)
    assert budget.in_flight == 100  # a refusal takes nothing
    budget.release(40)
    assert budget.reserve(40) and not budget.reserve(1)


def test_the_heap_is_trimmed_once_a_burst_is_over_and_not_while_bodies_are_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "IDLE_SECONDS", 0.01)
    trimmed: list[bool] = []

    async def scenario() -> None:
        budget = BodyBudget(2 * TRIM_AFTER_BYTES, trim=lambda: trimmed.append(True))
        small = BodyBudget(2 * TRIM_AFTER_BYTES, trim=lambda: trimmed.append(False))
        assert small.reserve(1000)
        small.release(1000)  # a small body grew the heap little: no trim scheduled
        assert budget.reserve(TRIM_AFTER_BYTES)
        budget.release(TRIM_AFTER_BYTES)  # the burst is over: a check is scheduled ...
        assert budget.reserve(5)  # ... but a body arrives before it runs
        await asyncio.sleep(0.1)
        assert budget.trims == 0
        budget.release(5)
        await asyncio.sleep(0.1)
        assert budget.trims == 1 and small.trims == 0
        await asyncio.sleep(0.05)  # the trim itself runs in the default executor

    asyncio.run(scenario())
    assert trimmed == [True]
