"""``nae generate``: events from a trained generator into feature-table shards, and the
generator's speed.

The shards have the layout of the Monte Carlo they imitate (``features/<name>`` per event,
``label`` 0; docs/contracts.md, contract 1b), named ``generated_seed<S>_<index:05d>.h5``, so
every reader (``nae data report``, ``nae evaluate``, training) takes them as it takes
simulated ones. Each shard's attributes say what made it: ``process`` (``generated``), the
run, checkpoint and family, ``seed``, ``settings`` (the run config as JSON), and
``cpu_seconds`` of generation, comparable with the simulated shards' own.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import __version__
from training.checkpoint import BEST, load_model
from training.config import GeneratorRunConfig
from training.data.shards import Shard, write_shard
from training.errors import NaeError
from training.models.generators.vae import TableVAE

__all__ = [
    "GENERATION_BATCH",
    "generate_events",
    "generate_sample",
    "generation_cpu_rate",
    "load_generator",
]

GENERATION_BATCH = 10_000  # events per decoder call: large batches amortise Python overhead


def load_generator(
    run_dir: str | os.PathLike[str], checkpoint: str = BEST
) -> tuple[TableVAE, GeneratorRunConfig, dict[str, Any]]:
    """A generator run's checkpoint; a run of another kind is a ``NaeError`` naming it."""
    model, config, state = load_model(run_dir, checkpoint)
    if not isinstance(model, TableVAE):
        raise NaeError(
            f"{run_dir} is a {config.model.family} run on {config.data.input}, not a generator "
            "(recipes training/configs/zgamma-*.toml)"
        )
    return model, config, state


def generate_events(model: TableVAE, n: int, *, seed: int) -> tuple[np.ndarray, float]:
    """``n`` events (n, k) float32 and the CPU seconds they took (one thread)."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    start = time.process_time()
    parts = [
        model.generate(min(GENERATION_BATCH, n - done), generator)
        for done in range(0, n, GENERATION_BATCH)
    ]
    cpu = time.process_time() - start
    return torch.cat(parts).numpy(), cpu


def generation_cpu_rate(model: TableVAE, n: int = 100_000, *, seed: int = 0) -> float:
    """Generated events per CPU second, from ``n`` events."""
    _, cpu = generate_events(model, n, seed=seed)
    return n / max(cpu, 1e-9)


def generate_sample(
    run_dir: str | os.PathLike[str],
    *,
    n: int,
    out_dir: str | os.PathLike[str],
    seed: int = 1,
    shard_size: int = 100_000,
    checkpoint: str = BEST,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write ``n`` generated events as shards under ``out_dir``; returns their paths. Shard
    ``i`` uses the seed ``(seed, i)``, so the output does not depend on how often it ran."""
    if n < 1 or shard_size < 1:
        raise NaeError(f"--n and --shard-size must be positive, got {n} and {shard_size}")
    model, config, state = load_generator(run_dir, checkpoint)
    torch.set_num_threads(config.train.threads)
    out = Path(out_dir)
    paths = []
    for index in range(math.ceil(n / shard_size)):
        size = min(shard_size, n - index * shard_size)
        shard_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        x, cpu = generate_events(model, size, seed=shard_seed)
        arrays: dict[str, np.ndarray] = {
            f"features/{name}": x[:, i] for i, name in enumerate(config.data.features)
        }
        arrays["label"] = np.zeros(size, dtype=np.int8)
        attrs = {
            "process": "generated",
            "seed": shard_seed,
            "settings": json.dumps({"config": config.model_dump(mode="json")}),
            "generator": json.dumps(
                {
                    "run": str(run_dir),
                    "checkpoint": checkpoint,
                    "family": config.model.family,
                    "step": state.get("step"),
                }
            ),
            "n_events_generated": size,
            "cpu_seconds": cpu,
            "versions": json.dumps({"torch": torch.__version__, "nae-trigger": __version__}),
        }
        path = out / f"generated_seed{seed}_{index:05d}.h5"
        paths.append(write_shard(path, Shard(arrays=arrays, attrs=attrs)))
        if progress is not None:
            progress(size)
    return paths
