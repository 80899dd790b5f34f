"""``keep_freed_memory``: glibc takes the settings (this project's images are Debian, glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_malloc_settings() -> None:
    # In a fresh interpreter: the settings stay for the life of the process that makes them.
    code = "from service.memory import keep_freed_memory; assert keep_freed_memory()"
    subprocess.run([sys.executable, "-c", code], check=True)
