"""``train_generator(config, run_dir)``: one training run of a VAE-family generator, read top to
bottom like ``train.train``.

Stages:

1. **setup**: threads, seeds, the run directory and its ``config.toml``; on ``resume``, the
   state of ``checkpoints/last.pt``.
2. **data**: the feature table of ``config.data.train`` (with ``inject_fraction`` of signal
   rows from ``data.inject`` mixed in, then shuffled: contaminated like real data), split at
   random into training and validation (seed ``data.split_seed``); the codec is fitted on
   the training part and applied once.
3. **epochs** of minibatches, ``generator_step`` each. Every family has an encoder optimiser
   (encoder and the prior's parameters: the KL is what trains a learned prior) and a decoder
   optimiser; the ``*_d`` families add the discriminator's, the three optimisers of
   Larsen et al. (arXiv:1512.09300): the discriminator learns real (1) against
   reconstructed and generated (0) events; the encoder minimises nll + beta KL; the decoder
   nll + ``adversarial_weight`` x (fooling the discriminator on reconstructed and generated
   events). Beta ramps linearly from 0 over ``kl_warmup_epochs`` (a plain VAE with the full
   KL from the first step tends to switch latent dimensions off).
4. **selection**: after each epoch the validation loss nll + beta KL (full beta, a fixed
   noise draw, so epochs compare) is logged with the training losses and CPU seconds to
   ``metrics.jsonl``; the lowest is ``best.pt``, signal-agnostic. Every epoch is kept as
   ``epoch-NNNN.pt``; ``last.pt`` resumes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.nn.functional import binary_cross_entropy_with_logits as bce

from training.checkpoint import (
    BEST,
    LAST,
    checkpoint_config,
    checkpoint_path,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from training.config import GeneratorRunConfig
from training.data.loaders import load_inputs
from training.errors import BadDataFile, NaeError
from training.models.generators.families import build_generator
from training.models.generators.vae import TableVAE
from training.train import METRICS_FILE, RunSummary, prepare_run_dir, seed_everything

__all__ = ["Optimisers", "TableBatch", "generator_step", "load_table", "train_generator"]

_EVAL_BATCH = 2048  # rows at a time: the quantile codec's (N, k, n_quantiles) intermediate


@dataclass(frozen=True)
class TableBatch:
    """Events in network units: continuous u (N, c), one-hot (N, d * K), categories (N, d)."""

    u: Tensor
    onehot: Tensor
    categories: Tensor

    def rows(self, index: Tensor | slice) -> TableBatch:
        return TableBatch(self.u[index], self.onehot[index], self.categories[index])

    def __iter__(self) -> Iterator[Tensor]:  # u, onehot, categories = batch
        return iter((self.u, self.onehot, self.categories))

    def __len__(self) -> int:
        return len(self.u)


class Optimisers(NamedTuple):
    """The encoder's (with the prior), the decoder's and, for ``*_d``, the discriminator's."""

    encoder: torch.optim.Optimizer
    decoder: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer | None

    def state_dict(self) -> dict[str, Any]:
        return {name: opt.state_dict() for name, opt in self._asdict().items() if opt is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, opt in self._asdict().items():
            if opt is not None:
                opt.load_state_dict(state[name])


def build_optimisers(config: GeneratorRunConfig, model: TableVAE) -> Optimisers:
    kind = torch.optim.AdamW if config.train.optimizer == "adamw" else torch.optim.Adam
    lr = config.train.lr
    encoder = kind([*model.encoder.parameters(), *model.prior.parameters()], lr=lr)
    discriminator = None
    if model.discriminator is not None:
        discriminator = kind(
            model.discriminator.parameters(), lr=config.train.discriminator_lr, betas=(0.5, 0.999)
        )  # beta1 = 0.5: the GAN convention (Radford et al. arXiv:1511.06434)
    return Optimisers(encoder, kind(model.decoder.parameters(), lr=lr), discriminator)


def generator_step(
    model: TableVAE,
    batch: TableBatch,
    optimisers: Optimisers,
    *,
    beta: float,
    adversarial_weight: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """One minibatch update of every part; returns the batch's losses."""
    model.train()
    u, onehot, categories = batch
    mu, log_var = model.encode(u, onehot)
    z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=generator)
    decoded = model.decode(z, onehot)
    nll = model.nll(u, categories, decoded).mean()
    kl = model.kl(mu, log_var, z).mean()
    encoder_loss = nll + beta * kl
    losses = {"nll": nll.item(), "kl": kl.item()}
    encoder_parameters = [*model.encoder.parameters(), *model.prior.parameters()]
    decoder_parameters = list(model.decoder.parameters())
    if model.discriminator is None:
        optimisers.encoder.zero_grad(set_to_none=True)
        optimisers.decoder.zero_grad(set_to_none=True)
        encoder_loss.backward()
        optimisers.encoder.step()
        optimisers.decoder.step()
        return losses

    real = torch.cat([u, onehot], dim=1)
    reconstructed = torch.cat(model.draw(decoded, onehot, generator), dim=1)
    condition = None
    if model.conditional:
        condition = model.codec.onehot(model.sample_conditions(len(u), generator))
    prior_z = model.prior.sample(len(u), generator).detach()
    generated = torch.cat(model.draw(model.decode(prior_z, condition), condition, generator), 1)
    discriminator = model.discriminator
    ones, zeros = torch.ones(len(u)), torch.zeros(len(u))
    d_loss = bce(discriminator(real), ones) + 0.5 * (
        bce(discriminator(reconstructed.detach()), zeros)
        + bce(discriminator(generated.detach()), zeros)
    )
    optimisers.discriminator.zero_grad(set_to_none=True)
    d_loss.backward()
    optimisers.discriminator.step()

    fooling = 0.5 * (bce(discriminator(reconstructed), ones) + bce(discriminator(generated), ones))
    decoder_loss = nll + adversarial_weight * fooling
    optimisers.encoder.zero_grad(set_to_none=True)
    optimisers.decoder.zero_grad(set_to_none=True)
    encoder_loss.backward(inputs=encoder_parameters, retain_graph=True)
    decoder_loss.backward(inputs=decoder_parameters)
    optimisers.encoder.step()
    optimisers.decoder.step()
    return losses | {"discriminator": d_loss.item(), "fooling": fooling.item()}


def load_table(config: GeneratorRunConfig) -> Tensor:
    """The training rows (N, k) float32 in ``data.features`` order, signal injected and
    shuffled (seed ``data.split_seed``) when ``data.inject_fraction`` > 0."""
    data = config.data
    x = load_inputs(
        data.train, input="features", features=data.features, max_events=data.max_events
    )
    if data.inject_fraction > 0:
        n_signal = round(data.inject_fraction * len(x) / (1.0 - data.inject_fraction))
        if n_signal < 1:
            raise BadDataFile(
                f"data.inject_fraction {data.inject_fraction:g} of {len(x)} rows injects no "
                "signal event: use more rows or a larger fraction"
            )
        signal = load_inputs([data.inject], input="features", features=data.features)
        if len(signal) < n_signal:
            raise BadDataFile(
                f"{data.inject}: {len(signal)} rows, fewer than the {n_signal} that "
                f"data.inject_fraction {data.inject_fraction:g} needs"
            )
        x = torch.cat([x, signal[:n_signal]])
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(data.split_seed))
    return x[order]


def train_generator(
    config: GeneratorRunConfig,
    run_dir: str | os.PathLike[str],
    *,
    progress: Callable[[int], None] | None = None,
    resume: bool = False,
) -> RunSummary:
    """Train ``config`` into ``run_dir``; ``progress(1)`` after each epoch."""
    report = progress or (lambda k: None)
    start_cpu = time.process_time()

    # --- setup -------------------------------------------------------------------------------
    torch.set_num_threads(config.train.threads)
    run_dir = Path(run_dir)
    state = _resume_state(config, run_dir) if resume else None
    prepare_run_dir(config, run_dir, fresh=state is None, resume=resume)
    metrics_path = run_dir / METRICS_FILE
    seed = config.train.seed
    seed_everything(seed)
    generators = {"data": torch.Generator().manual_seed(seed), "noise": torch.Generator()}
    generators["noise"].manual_seed(seed + 1)

    # --- data --------------------------------------------------------------------------------
    x = load_table(config)
    n_validation = max(1, round(config.data.validation_fraction * len(x)))
    if n_validation >= len(x) - 1:
        raise BadDataFile(f"{len(x)} rows leave nothing to train on: use more rows")
    x_train, x_validation = x[n_validation:], x[:n_validation]
    model = build_generator(config)
    model.codec.fit(x_train.numpy())
    train_batch, validation_batch = _encoded(model, x_train), _encoded(model, x_validation)
    optimisers = build_optimisers(config, model)

    # --- epochs ------------------------------------------------------------------------------
    epoch, best, best_epoch, lines = 0, math.inf, -1, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimisers.load_state_dict(state["optimizer"])
        restore_rng_states(state["rng"], generators)
        epoch, best, best_epoch, lines = (
            state[key] for key in ("epoch", "best", "best_epoch", "lines")
        )
        kept = metrics_path.read_text().splitlines(keepends=True)[:lines]
        metrics_path.write_text("".join(kept))
        report(epoch)
    train = config.train
    while epoch < train.epochs:
        cpu = time.process_time()
        beta = (
            config.model.beta * min(1.0, (epoch + 1) / train.kl_warmup_epochs)
            if train.kl_warmup_epochs
            else config.model.beta
        )
        sums: dict[str, float] = {}
        order = torch.randperm(len(train_batch), generator=generators["data"])
        batches = order.split(train.batch_size)
        for index in batches:
            step = generator_step(
                model,
                train_batch.rows(index),
                optimisers,
                beta=beta,
                adversarial_weight=config.model.adversarial_weight,
                generator=generators["noise"],
            )
            for key, value in step.items():
                sums[key] = sums.get(key, 0.0) + value / len(batches)
        validation = validation_loss(model, validation_batch, beta=config.model.beta, seed=seed)
        epoch += 1
        if not math.isfinite(validation):
            raise NaeError(
                f"generator training diverged at epoch {epoch} (validation loss {validation}): "
                f"lower train.lr (now {train.lr:g})"
            )
        record = {
            "stage": "generator",
            "step": epoch,
            "beta": beta,
            **sums,
            "validation_loss": validation,
            "cpu_seconds": time.process_time() - cpu,
        }
        with metrics_path.open("a") as f:
            f.write(_json_line(record))
        lines += 1
        checkpoint = {
            "config": config.model_dump(),
            "model": model.state_dict(),
            "stage": "generator",
            "step": epoch,
            "metric": {"validation_loss": validation},
        }
        save_checkpoint(checkpoint_path(run_dir, f"epoch-{epoch:04d}"), checkpoint)
        if validation < best:
            best, best_epoch = validation, epoch
            save_checkpoint(checkpoint_path(run_dir, BEST), checkpoint)
        resume_state = {
            **checkpoint,
            "optimizer": optimisers.state_dict(),
            "rng": rng_states(generators),
            "epoch": epoch,
            "best": best,
            "best_epoch": best_epoch,
            "lines": lines,
            "complete": epoch == train.epochs,
        }
        save_checkpoint(checkpoint_path(run_dir, LAST), resume_state)
        report(1)
    summary = RunSummary(
        run_dir,
        config.model.family,
        checkpoint_path(run_dir, BEST),
        "validation_loss",
        best,
        best_epoch,
        time.process_time() - start_cpu,
    )
    record = {**summary._asdict(), "run_dir": str(run_dir), "selected": str(summary.selected)}
    (run_dir / "summary.json").write_text(_json_line(record, indent=2))
    return summary


def validation_loss(model: TableVAE, batch: TableBatch, *, beta: float, seed: int) -> float:
    """Mean nll + beta KL over ``batch`` with z drawn from q(z|x) by a fixed-seed generator, so
    the same weights always give the same number."""
    model.eval()
    generator = torch.Generator().manual_seed(seed + 2)
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(batch), _EVAL_BATCH):
            u, onehot, categories = batch.rows(slice(start, start + _EVAL_BATCH))
            mu, log_var = model.encode(u, onehot)
            z = mu + torch.exp(0.5 * log_var) * torch.randn(mu.shape, generator=generator)
            loss = model.nll(u, categories, model.decode(z, onehot)) + beta * model.kl(
                mu, log_var, z
            )
            total += float(loss.sum())
    return total / len(batch)


def _json_line(record: dict[str, Any], indent: int | None = None) -> str:
    return json.dumps(record, indent=indent) + "\n"


def _encoded(model: TableVAE, x: Tensor) -> TableBatch:
    with torch.no_grad():
        parts = [model.codec(chunk) for chunk in x.split(_EVAL_BATCH)]
        categories = model.codec.categories(x)
    return TableBatch(
        torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), categories
    )


def _resume_state(config: GeneratorRunConfig, run_dir: Path) -> dict[str, Any] | None:
    path = checkpoint_path(run_dir, LAST)
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    if checkpoint_config(state, GeneratorRunConfig) != config:
        raise NaeError(
            f"{run_dir} was trained with another config; resume with its config.toml or "
            "choose another --run-dir"
        )
    if state.get("complete"):
        raise NaeError(f"{run_dir} is complete; nothing to resume")
    return state
