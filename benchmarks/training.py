"""Training cost: CPU seconds per AE epoch and per NAE iteration, for every model family.

Times are ``time.process_time`` of this process on ``--threads`` torch threads (default 1, the
recipes' setting): the machine is shared, so CPU time is what a run costs. Inputs are seeded
random stand-ins of the right shape (sparse unit-sum 40 x 40 images, normal features, events
with 1-10 filled slots): speed does not depend on what the numbers are. An AE epoch is timed
on ``--rows`` rows and scaled to 100,000; an NAE iteration is the median of ``--iterations``
after one warm-up, replay buffer filled. Comparisons (memory layout, chunk size, the published
settings) are interleaved, A B A B, so that drifts in the machine's load hit both alike.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.training            # ~15 min
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.training --quick    # a smoke run

Run it as a module from the repository root: as a plain script its file name would shadow the
``training`` package.

Prints a table and writes benchmarks/results/training.json with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.machine import describe_machine
from training.config import RunConfig, load_run_config, with_overrides
from training.models.families import build_model, input_shape
from training.models.pca import PCA
from training.sampling import NegativeSampler
from training.train import ae_loss, build_optimizer, nae_step

RESULTS = Path(__file__).parent / "results" / "training.json"
EPOCH_ROWS = 100_000
RECIPES = (
    "jets-qcd-image-nae",
    "jets-qcd-image-ae",
    "jets-qcd-features-nae",
    "jets-qcd-features-ae",
    "jets-qcd-features-vae",
    "jets-qcd-features-pca",
    "events-sm-nae",
    "events-sm-ae",
    "events-sm-vae",
    "events-sm-pca",
)
# Variants of the image NAE recipe, measured against it (``--set`` overrides).
IMAGE_VARIANTS = {
    "published: 2048 negatives, 30 + 30 steps (scaled from 256)": [
        "sampler.latent.steps=30",
        "sampler.input.steps=30",
        "sampler.n_negatives=256",
    ],
    "conv20 (20 x 20 pooled)": ["model.architecture=conv20"],
    "dense 1600-256-64-3": ["model.architecture=dense", "model.hidden=[256, 64]"],
    "256 negatives": ["sampler.n_negatives=256"],
}


def main() -> None:
    args = _parse_args()
    torch.set_num_threads(args.threads)
    machine = describe_machine(torch=torch.__version__, threads=args.threads)
    print(f"machine: {machine}")
    rows = []
    for name in args.recipes:
        config = load_run_config(name)
        rows.append(_measure_recipe(name, config, args))
        _print_row(rows[-1])
    comparisons = [] if args.skip_comparisons else _comparisons(args)
    for row in comparisons:
        print(
            f"  {row['what']}: {row['a_label']} {row['a_s']:.3g} s, "
            f"{row['b_label']} {row['b_s']:.3g} s, ratio {row['ratio']:.2f}"
        )
    result = {"machine": machine, "recipes": rows, "comparisons": comparisons}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def _measure_recipe(name: str, config: RunConfig, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = build_model(config)
    rows = args.image_rows if config.data.input == "images" else args.rows
    u = _inputs(config, rows)
    row: dict = {
        "recipe": name,
        "family": config.model.family,
        "input": config.data.input,
        "architecture": config.model.architecture,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if isinstance(model, PCA):
        start = time.process_time()
        model.fit(_inputs(config, EPOCH_ROWS))
        row["pca_fit_100k_s"] = time.process_time() - start
        return row
    row["ae_batch_size"] = config.train.ae_batch_size
    row["ae_epoch_100k_s"] = _ae_epoch(config, model, u) * EPOCH_ROWS / rows
    if config.model.family == "nae":
        row.update(_nae_iteration(config, model, u, args.iterations))
        row["recipe_total_h"] = (
            config.train.ae_epochs * row["ae_epoch_100k_s"]
            + config.train.nae_iterations * row["nae_iteration_s"]
        ) / 3600
    elif config.model.family in ("ae", "vae"):
        row["recipe_total_h"] = config.train.ae_epochs * row["ae_epoch_100k_s"] / 3600
    return row


def _ae_epoch(config: RunConfig, model: torch.nn.Module, u: torch.Tensor) -> float:
    optimizer = build_optimizer(config, model, config.train.ae_lr)
    generator = torch.Generator().manual_seed(1)
    model.train()
    start = time.process_time()
    for index in torch.randperm(len(u), generator=generator).split(config.train.ae_batch_size):
        loss = ae_loss(config, model, u[index], generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.process_time() - start


def _nae_iteration(config: RunConfig, model: torch.nn.Module, u: torch.Tensor, n: int) -> dict:
    optimizer = build_optimizer(config, model, config.train.nae_lr)
    sampler = NegativeSampler(config.sampler, model)
    generator = torch.Generator().manual_seed(2)
    batch = config.train.nae_batch_size
    times = []
    for i in range(n + 1):
        positives = u[torch.randint(len(u), (batch,), generator=generator)]
        start = time.process_time()
        nae_step(config, model, optimizer, sampler, positives, generator)
        if i:  # the first fills the buffer and warms up allocators
            times.append(time.process_time() - start)
    sampler_config = config.sampler
    on_manifold = sampler_config.mode == "on_manifold"
    return {
        "sampling": sampler_config.mode,
        "n_negatives": sampler_config.n_negatives,
        "latent_steps": sampler_config.latent.steps if on_manifold else 0,
        "input_steps": sampler_config.input.steps,
        "nae_iteration_s": statistics.median(times),
    }


def _comparisons(args: argparse.Namespace) -> list[dict]:
    base = load_run_config("jets-qcd-image-nae")
    results = []
    for label, overrides in IMAGE_VARIANTS.items():
        variant = with_overrides(base, overrides)
        scale = 2048 / 256 if label.startswith("published") else 1.0
        results.append(
            _pair(
                "NAE iteration",
                ("recipe", lambda: _iteration_cost(base, args)),
                (label, lambda v=variant, s=scale: s * _iteration_cost(v, args)),
                args.pairs,
            )
        )
    results.append(
        _pair(
            "NAE iteration, 512 negatives",
            (
                "chunks of 256",
                lambda: _iteration_cost(with_overrides(base, ["sampler.n_negatives=512"]), args),
            ),
            (
                "one chunk of 512",
                lambda: _iteration_cost(
                    with_overrides(base, ["sampler.n_negatives=512", "sampler.chunk_size=512"]),
                    args,
                ),
            ),
            args.pairs,
        )
    )
    results.append(
        _pair(
            "NAE iteration",
            ("channels_last", lambda: _iteration_cost(base, args)),
            ("contiguous (NCHW)", lambda: _iteration_cost(base, args, contiguous=True)),
            args.pairs,
        )
    )
    results.append(
        _pair(
            "AE epoch of 100k images",
            ("channels_last", lambda: _epoch_cost(base, args)),
            ("contiguous (NCHW)", lambda: _epoch_cost(base, args, contiguous=True)),
            args.pairs,
        )
    )
    return results


def _iteration_cost(config: RunConfig, args: argparse.Namespace, contiguous: bool = False) -> float:
    torch.manual_seed(0)
    model = _layout(build_model(config), contiguous)
    u = _inputs(config, args.image_rows)
    return _nae_iteration(config, model, u, max(2, args.iterations // 2))["nae_iteration_s"]


def _epoch_cost(config: RunConfig, args: argparse.Namespace, contiguous: bool = False) -> float:
    torch.manual_seed(0)
    model = _layout(build_model(config), contiguous)
    return _ae_epoch(config, model, _inputs(config, args.image_rows)) * EPOCH_ROWS / args.image_rows


def _layout(model: torch.nn.Module, contiguous: bool) -> torch.nn.Module:
    return model.to(memory_format=torch.contiguous_format) if contiguous else model


def _pair(what: str, a: tuple[str, Callable], b: tuple[str, Callable], pairs: int) -> dict:
    """Interleaved A B A B ...; the medians of each."""
    a_times, b_times = [], []
    for _ in range(pairs):
        a_times.append(a[1]())
        b_times.append(b[1]())
    a_s, b_s = statistics.median(a_times), statistics.median(b_times)
    return {
        "what": what,
        "a_label": a[0],
        "a_s": a_s,
        "b_label": b[0],
        "b_s": b_s,
        "ratio": b_s / a_s,
    }


def _inputs(config: RunConfig, n: int) -> torch.Tensor:
    """Seeded stand-ins of the preprocessed inputs (what the network sees)."""
    rng = np.random.default_rng(3)
    shape = input_shape(config.data)
    if config.data.input == "images":
        images = rng.exponential(size=(n, *shape)) * (rng.random((n, *shape)) < 0.05)
        images[:, 20, 20] += 1.0
        x = torch.from_numpy((images / images.sum(axis=(1, 2), keepdims=True)).astype(np.float32))
        if config.model.architecture == "conv20":
            x = 4 * torch.nn.functional.avg_pool2d(x.unsqueeze(1), 2).squeeze(1)
        return x
    if config.data.input == "features":
        return torch.from_numpy(rng.normal(size=(n, *shape)).astype(np.float32))
    events = np.zeros((n, *shape), np.float32)
    filled = np.arange(shape[0]) < rng.integers(1, 11, size=(n, 1))  # (n, 19)
    events[..., 0] = filled * rng.exponential(1.0, size=(n, shape[0]))
    events[..., 1:] = filled[..., None] * rng.normal(size=(n, shape[0], 2))
    return torch.from_numpy(events)


def _print_row(row: dict) -> None:
    parts = [f"{row['recipe']:<24} {row['parameters']:>8} params"]
    if "pca_fit_100k_s" in row:
        parts.append(f"PCA fit on 100k {row['pca_fit_100k_s']:.2f} s")
    if "ae_epoch_100k_s" in row:
        parts.append(f"AE epoch (100k) {row['ae_epoch_100k_s']:.1f} s")
    if "nae_iteration_s" in row:
        parts.append(f"NAE iteration {row['nae_iteration_s']:.3f} s")
    if "recipe_total_h" in row:
        parts.append(f"recipe {row['recipe_total_h']:.2f} h")
    print(" | ".join(parts))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument(
        "--rows", type=int, default=20_000, help="rows per AE epoch (features, events)"
    )
    parser.add_argument("--image-rows", type=int, default=2_048, help="images per AE epoch")
    parser.add_argument("--iterations", type=int, default=5, help="NAE iterations timed")
    parser.add_argument("--pairs", type=int, default=2, help="A/B pairs per comparison")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-comparisons", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.image_rows, args.iterations, args.pairs = 2000, 256, 2, 1
    return args


if __name__ == "__main__":
    main()
