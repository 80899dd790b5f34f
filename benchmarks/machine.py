"""What a benchmark's numbers were measured on and how busy the machine was, in the same
words in every results file (this machine is shared, so the load belongs with every number)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

__all__ = ["describe_machine"]


def describe_machine(**extra: object) -> dict[str, object]:
    """CPU model, logical CPUs, Python, OMP threads, load average and UTC date, plus ``extra``."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
