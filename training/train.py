"""``train(config, run_dir)``: one training run, read top to bottom (nanoGPT's train.py).

Stages, in order:

1. **setup**: threads, seeds, the run directory and its ``config.toml``; on ``resume``, the
   state of ``checkpoints/last.pt``.
2. **data**: the seeded train/validation split of ``config.data``; the model's preprocessing
   is fitted on the training part and applied once (inputs ``u`` from then on).
3. **PCA** (family ``pca``): an SVD of the training inputs, and done.
4. **AE pre-training** (``ae``, ``nae``, ``vae``): epochs of minibatch descent on the
   reconstruction energy (plus the KL for VAEs); each epoch logs the validation loss and writes
   a checkpoint; the lowest validation loss is selected (``best.pt``; ``ae-best.pt`` for NAEs).
5. **NAE** (``nae``): from the selected AE (or, with ``train.init_from``, from a finished AE
   run's, copied to ``ae-best.pt``; pre-training is then skipped), iterations of one positive
   batch against a set of negative samples (``sampling.NegativeSampler``), loss of
   ``config.loss``. Every ``checkpoint_every`` iterations: E+, E-, their difference, MH
   acceptance, latent-chain sample energies, the weight norm and the EMD between validation
   data and fresh negatives go to ``metrics.jsonl``, with a checkpoint; ``train.selection``'s
   signal-agnostic rule picks one (``selection.py``: the EMD, where the CMS semi-visible-jet
   study stops, before the late "collapse" of the NAE; or the energy balance). A run whose
   loss turns non-finite or whose E+ or E- run away stops with a ``NaeError`` that names the
   setting to change.

``resume=True`` continues from ``last.pt`` bit-identically: same parameters, metrics and
selection as a run that was never stopped (tested). Losing a run costs at most one epoch or one
checkpoint interval.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from training.checkpoint import (
    AE_BEST,
    BEST,
    LAST,
    checkpoint_config,
    checkpoint_path,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from training.config import RunConfig, TrainConfig, config_to_toml
from training.data.loaders import load_split
from training.errors import NaeError
from training.losses import (
    kl_divergence,
    logcosh_nae_loss,
    nae_loss,
    relative_gamma,
    weight_norm,
)
from training.metrics import MAX_EMD_POINTS, emd_with_error
from training.models.autoencoder import Autoencoder
from training.models.families import Model, build_model, fit_preprocessing
from training.models.pca import PCA
from training.models.vae import VariationalAutoencoder
from training.sampling import NegativeSampler, NegativeSamples, slot_floors
from training.selection import initial_nae_selection, select_by_emd, select_by_energy_balance

__all__ = [
    "METRICS_FILE",
    "NaeStep",
    "RunSummary",
    "ae_loss",
    "build_optimizer",
    "nae_learning_rate",
    "nae_step",
    "prepare_run_dir",
    "seed_everything",
    "train",
    "training_steps",
]

METRICS_FILE = "metrics.jsonl"
_PREPROCESS_BATCH = 8192


class RunSummary(NamedTuple):
    """Where a run ended: its directory, the selected checkpoint, the rule that selected it
    (``validation_loss``, ``emd``, ``energy_balance`` or ``fit``), that rule's value, the
    selected step (epoch or iteration), and the CPU seconds this call spent."""

    run_dir: Path
    family: str
    selected: Path
    selection: str
    selection_value: float
    selected_step: int
    cpu_seconds: float


def training_steps(config: RunConfig) -> int:
    """Units of ``progress``: AE epochs plus NAE iterations (1 for a PCA fit)."""
    if config.model.family == "pca":
        return 1
    nae = config.train.nae_iterations if config.model.family == "nae" else 0
    return config.train.ae_epochs + nae


class NaeStep(NamedTuple):
    """What one NAE iteration measured: the loss, E+ (N,), E- (M,), detached, and the
    negatives it drew."""

    loss: float
    e_pos: Tensor
    e_neg: Tensor
    negatives: NegativeSamples


def nae_learning_rate(config: TrainConfig, iteration: int) -> float:
    """The learning rate of NAE iteration ``iteration`` (0-based): ``nae_lr``, or with
    ``nae_lr_decay = "cosine"`` nae_lr (1 + cos(pi i / n)) / 2. The image NAE's AUC peaks and
    then drifts off (docs/results.md); a decaying rate lets it settle."""
    if config.nae_lr_decay is None:
        return config.nae_lr
    return config.nae_lr * 0.5 * (1.0 + math.cos(math.pi * iteration / config.nae_iterations))


def nae_step(
    config: RunConfig,
    model: Autoencoder,
    optimizer: torch.optim.Optimizer,
    sampler: NegativeSampler,
    u_pos: Tensor,
    generator: torch.Generator,
) -> NaeStep:
    """One NAE iteration: negatives for the positive batch ``u_pos`` (N, *u_shape), the loss
    of ``config.loss`` (negatives detached) plus the L2 penalty, one optimiser step."""
    negatives = sampler.sample(model, u_pos, generator=generator)
    model.train()
    energies = model.energy(torch.cat([u_pos, negatives.samples]))  # one pass for both
    e_pos, e_neg = energies[: len(u_pos)], energies[len(u_pos) :]
    loss = _nae_objective(config, e_pos, e_neg) + config.loss.l2_weight * weight_norm(model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return NaeStep(loss.item(), e_pos.detach(), e_neg.detach(), negatives)


def train(
    config: RunConfig,
    run_dir: str | os.PathLike[str],
    *,
    progress: Callable[[int], None] | None = None,
    resume: bool = False,
) -> RunSummary:
    """Train ``config`` into ``run_dir``; ``progress(k)`` advances by k epochs or iterations."""
    report = progress or (lambda k: None)
    start_cpu = time.process_time()

    # --- setup -------------------------------------------------------------------------------
    torch.set_num_threads(config.train.threads)
    run_dir = Path(run_dir)
    state = _resume_state(config, run_dir) if resume else None
    prepare_run_dir(config, run_dir, fresh=state is None, resume=resume)
    seed = config.train.seed
    seed_everything(seed)
    generators = {
        name: torch.Generator().manual_seed(_derived_seed(seed, i))
        for i, name in enumerate(("data", "sampler", "monitor"))
    }
    log = _MetricsLog(run_dir / METRICS_FILE)

    # --- data --------------------------------------------------------------------------------
    split = load_split(config.data)
    model = build_model(config)
    fit_preprocessing(model, split.train.numpy())
    u_train = _preprocess(model, split.train)
    u_val = _preprocess(model, split.validation)
    family = config.model.family

    # --- PCA ---------------------------------------------------------------------------------
    if isinstance(model, PCA):
        model.fit(u_train)
        with torch.no_grad():
            value = float(model.energy(u_val).mean())
        log.write({"stage": "pca", "step": 0, "validation_loss": value})
        checkpoint = _model_checkpoint(config, model, "pca", 0, {"validation_loss": value})
        save_checkpoint(checkpoint_path(run_dir, BEST), checkpoint)
        save_checkpoint(checkpoint_path(run_dir, LAST), {**checkpoint, "complete": True})
        report(1)
        return _summary(run_dir, family, "fit", value, 0, start_cpu)

    # --- AE pre-training ---------------------------------------------------------------------
    train_config = config.train
    optimizer = build_optimizer(config, model, train_config.ae_lr)
    epoch, iteration = 0, 0
    best = {
        "ae": math.inf,
        "ae_epoch": -1,
        **initial_nae_selection(),
    }
    reference: dict[str, float] = {}
    sampler = None
    if state is not None:
        epoch, iteration, best, reference = (
            state["epoch"],
            state["iteration"],
            state["best"],
            state["reference"],
        )
        model.load_state_dict(state["model"])
        if state["stage"] == "ae":
            optimizer.load_state_dict(state["optimizer"])
        log.truncate(state["metrics_lines"])
        restore_rng_states(state["rng"], generators)
        report(epoch + iteration)
    selected_name = AE_BEST if family == "nae" else BEST
    while epoch < train_config.ae_epochs:
        cpu = time.process_time()
        model.train()
        order = torch.randperm(len(u_train), generator=generators["data"])
        losses = []
        for index in order.split(train_config.ae_batch_size):
            loss = ae_loss(config, model, u_train[index], generators["data"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        validation = _validation_loss(config, model, u_val)
        epoch += 1
        log.write(
            {
                "stage": "ae",
                "step": epoch,
                "train_loss": float(np.mean(losses)),
                "validation_loss": validation,
                "weight_norm": weight_norm(model).item(),
                "cpu_seconds": time.process_time() - cpu,
            }
        )
        if not math.isfinite(validation):
            raise NaeError(
                f"AE pre-training diverged at epoch {epoch} (validation loss {validation}): "
                f"lower train.ae_lr (now {train_config.ae_lr:g})"
            )
        checkpoint = _model_checkpoint(config, model, "ae", epoch, {"validation_loss": validation})
        save_checkpoint(checkpoint_path(run_dir, f"epoch-{epoch:04d}"), checkpoint)
        if validation < best["ae"]:
            best["ae"], best["ae_epoch"] = validation, epoch
            save_checkpoint(checkpoint_path(run_dir, selected_name), checkpoint)
        save_checkpoint(
            checkpoint_path(run_dir, LAST),
            _resume_checkpoint(
                config,
                model,
                optimizer,
                "ae",
                epoch,
                iteration,
                best,
                reference,
                generators,
                None,
                log,
            ),
        )
        report(1)
    if family != "nae":
        _mark_complete(run_dir)
        return _summary(run_dir, family, "validation_loss", best["ae"], best["ae_epoch"], start_cpu)

    # --- NAE ---------------------------------------------------------------------------------
    if state is None or state["stage"] == "ae":  # the NAE starts from the selected AE
        if train_config.init_from is not None:
            source = Path(train_config.init_from)
            pretrained, source_state = _pretrained_ae(config, source)
            save_checkpoint(checkpoint_path(run_dir, AE_BEST), pretrained)
            model.load_state_dict(pretrained["model"])
            for line in (source / METRICS_FILE).read_text().splitlines():
                log.write(json.loads(line))  # the training curves show the AE stage too
            best["ae"], best["ae_epoch"] = (
                source_state["best"]["ae"],
                source_state["best"]["ae_epoch"],
            )
            if pretrained["config"]["train"]["seed"] == seed:  # as if pre-trained in this run
                restore_rng_states(source_state["rng"], generators)
        elif best["ae_epoch"] >= 0:
            model.load_state_dict(load_checkpoint(checkpoint_path(run_dir, AE_BEST))["model"])
        reference = {"e_pos": _validation_loss(config, model, u_val)}  # E+ at NAE start
    optimizer = build_optimizer(config, model, train_config.nae_lr)
    floor = slot_floors(u_train) if config.sampler.snap_empty_slots else None
    sampler = NegativeSampler(config.sampler, model, slot_floor=floor)
    if state is not None and state["stage"] == "nae":
        optimizer.load_state_dict(state["optimizer"])
        sampler.buffer.load_state_dict(state["buffer"])
    n_monitor = min(train_config.emd_points, len(u_val), MAX_EMD_POINTS)
    u_monitor = u_val[:n_monitor]
    interval = _Interval()
    while iteration < train_config.nae_iterations:
        index = torch.randint(
            len(u_train), (train_config.nae_batch_size,), generator=generators["data"]
        )
        for group in optimizer.param_groups:  # a function of the iteration: resume-exact
            group["lr"] = nae_learning_rate(train_config, iteration)
        step = nae_step(config, model, optimizer, sampler, u_train[index], generators["sampler"])
        iteration += 1
        interval.add(step)
        _check_divergence(config, iteration, step, reference)
        if iteration % train_config.checkpoint_every and iteration < train_config.nae_iterations:
            report(1)
            continue
        fresh = sampler.sample(
            model, u_monitor, generator=generators["monitor"], n=n_monitor, push=False
        )
        emd, emd_error = emd_with_error(u_monitor.numpy(), fresh.samples.numpy())
        means = interval.means()
        log.write(
            {
                "stage": "nae",
                "step": iteration,
                **means,
                "emd": emd,
                "emd_error": emd_error,
                "weight_norm": weight_norm(model).item(),
            }
        )
        interval = _Interval()
        checkpoint = _model_checkpoint(
            config,
            model,
            "nae",
            iteration,
            {"emd": emd, "emd_error": emd_error, "e_pos": means["e_pos"], "e_neg": means["e_neg"]},
            samples={"positive": u_monitor, "negative": fresh.samples},
        )
        save_checkpoint(checkpoint_path(run_dir, f"iteration-{iteration:06d}"), checkpoint)
        if train_config.selection == "energy_balance":
            selected = select_by_energy_balance(best, means["e_pos"], means["e_neg"], iteration)
        else:
            selected = select_by_emd(best, emd, emd_error, iteration, train_config.emd_tolerance)
        if selected:
            save_checkpoint(checkpoint_path(run_dir, BEST), checkpoint)
        save_checkpoint(
            checkpoint_path(run_dir, LAST),
            _resume_checkpoint(
                config,
                model,
                optimizer,
                "nae",
                epoch,
                iteration,
                best,
                reference,
                generators,
                sampler,
                log,
            ),
        )
        report(1)
    _mark_complete(run_dir)
    value = best["nae_balance" if train_config.selection == "energy_balance" else "nae_emd"]
    return _summary(
        run_dir, family, train_config.selection, value, best["nae_iteration"], start_cpu
    )


# --- helpers, in the order the stages use them ---------------------------------------------


def _pretrained_ae(config: RunConfig, source: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The selected checkpoint and the final state of the finished AE run ``source``, refused
    unless it is the network this NAE would have pre-trained itself: same model section (but
    the family) and the same training data and split, so that the NAE's validation events stay
    unseen. With the same seed the NAE continues the AE run's random streams: the run then
    equals one that pre-trained with the AE run's ``train`` settings itself (tested)."""
    last = checkpoint_path(source, LAST)
    state = load_checkpoint(last) if last.is_file() else {}
    if not state.get("complete"):
        raise NaeError(f"train.init_from: {source} is not a finished training run")
    checkpoint = load_checkpoint(checkpoint_path(source, BEST))
    saved = checkpoint_config(checkpoint, RunConfig)
    if saved.model.family != "ae":
        raise NaeError(f"train.init_from: {source} is a {saved.model.family} run, not an AE")
    if saved.model.model_copy(update={"family": "nae"}) != config.model:
        raise NaeError(f"train.init_from: {source} has another [model] section than this run")
    split = {"background", "signals"}
    if saved.data.model_dump(exclude=split) != config.data.model_dump(exclude=split):
        raise NaeError(f"train.init_from: {source} trained on other data or another split")
    return checkpoint, state


def _resume_state(config: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The state of ``last.pt``, or None when the run has not written one yet."""
    path = checkpoint_path(run_dir, LAST)
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    saved = checkpoint_config(state, RunConfig)
    extended = _extends(saved, config)
    if saved != config and not extended:
        raise NaeError(
            f"{run_dir} was trained with another config; resume with its config.toml or "
            "choose another --run-dir (an NAE run may be extended: only a larger "
            "train.nae_iterations, at a constant learning rate)"
        )
    if state.get("complete") and not extended:
        raise NaeError(
            f"{run_dir} is complete; nothing to resume (raise train.nae_iterations to extend "
            "an NAE run)"
        )
    return state


def _extends(saved: RunConfig, config: RunConfig) -> bool:
    """True when ``config`` is ``saved`` with more NAE iterations, and the longer run is the
    same run continued: a constant learning rate (a cosine's schedule depends on the end) and
    a last checkpoint on the checkpoint grid (the run's end always writes one, off the grid it
    would be an extra one). Raises when only those two conditions fail, so that the refusal
    says why rather than "another config"."""
    old, new = saved.train, config.train
    if saved.model.family != "nae" or new.nae_iterations <= old.nae_iterations:
        return False
    same = saved == config.model_copy(
        update={"train": new.model_copy(update={"nae_iterations": old.nae_iterations})}
    )
    if not same:
        return False
    if old.nae_lr_decay is not None or old.nae_iterations % old.checkpoint_every:
        raise NaeError(
            f"train.nae_iterations {old.nae_iterations} -> {new.nae_iterations}: only a run at a "
            "constant learning rate (train.nae_lr_decay unset) that ended on its checkpoint "
            f"grid (a multiple of train.checkpoint_every = {old.checkpoint_every}) can be "
            "extended exactly; start a new run instead"
        )
    return True


def prepare_run_dir(config: Any, run_dir: Path, *, fresh: bool, resume: bool) -> None:
    """Create the run directory and write its ``config.toml`` (any run config: NAE family or
    generator); refuse to overwrite a run. A resumed run that never reached its first
    checkpoint starts again from scratch."""
    metrics = run_dir / METRICS_FILE
    if fresh and metrics.exists():
        if not resume:
            raise NaeError(
                f"{run_dir} already holds a run: pass --resume to continue it, or another --run-dir"
            )
        metrics.unlink()
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(config_to_toml(config))


def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators (what the explicit generators of a
    run do not cover, such as weight initialisation)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _derived_seed(seed: int, index: int) -> int:
    """Independent seeds for the run's generators (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _preprocess(model: Model, x: Tensor) -> Tensor:
    with torch.no_grad():
        return torch.cat([model.preprocess(part) for part in x.split(_PREPROCESS_BATCH)])


def build_optimizer(config: RunConfig, model: Model, lr: float) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.train.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=lr)


def ae_loss(config: RunConfig, model: Model, u: Tensor, generator: torch.Generator) -> Tensor:
    """Mean reconstruction energy (+ KL for VAEs) + the L2 weight penalty."""
    if isinstance(model, VariationalAutoencoder):
        energy, kl = model.loss_terms(u, generator)
        loss = energy.mean() + config.loss.kl_weight * kl.mean()
    else:
        loss = model.energy(u).mean()
    return loss + config.loss.l2_weight * weight_norm(model)


def _validation_loss(config: RunConfig, model: Model, u: Tensor) -> float:
    """Deterministic: the VAE's reconstruction from its latent mean, plus its KL."""
    model.eval()
    with torch.no_grad():
        parts = []
        for chunk in u.split(_PREPROCESS_BATCH):
            if isinstance(model, VariationalAutoencoder):
                kl = kl_divergence(*model.encode_distribution(chunk))
                parts.append(model.energy(chunk) + config.loss.kl_weight * kl)
            else:
                parts.append(model.energy(chunk))
    return float(torch.cat(parts).mean())


def _nae_objective(config: RunConfig, e_pos: Tensor, e_neg: Tensor) -> Tensor:
    if config.loss.kind == "logcosh":
        return logcosh_nae_loss(e_pos, e_neg, alpha=config.loss.alpha)
    ratio = config.loss.negative_ratio
    gamma = config.loss.gamma if ratio is None else relative_gamma(e_pos, ratio)
    return nae_loss(e_pos, e_neg, gamma=gamma)


def _check_divergence(
    config: RunConfig, iteration: int, step: NaeStep, reference: dict[str, float]
) -> None:
    """Stop a run that cannot recover, saying which setting to change."""
    sampler, factor = config.sampler.input, config.train.divergence_factor
    where = f"NAE iteration {iteration}"
    if not math.isfinite(step.loss):
        raise NaeError(
            f"{where}: the loss is {step.loss}; lower train.nae_lr (now "
            f"{config.train.nae_lr:g}) or set sampler.input.grad_clip (now "
            f"{sampler.grad_clip:g}, 0 = off)"
        )
    e_plus, e_minus = step.e_pos.mean().item(), step.e_neg.mean().item()
    ratio = config.loss.negative_ratio
    hold = (
        f"raise loss.gamma (now {config.loss.gamma:g})"
        if ratio is None
        else f"lower loss.negative_ratio (now {ratio:g})"
    )
    if e_plus > factor * reference["e_pos"]:
        raise NaeError(
            f"{where}: E+ = {e_plus:.3g} ran away from {reference['e_pos']:.3g} (the model is "
            f"forgetting the data); lower train.nae_lr (now {config.train.nae_lr:g}) or {hold}"
        )
    cap = 0.5 / config.loss.gamma if config.loss.gamma else 0.0  # where gamma holds E-
    ceiling = factor * max(reference["e_pos"], cap if ratio is None else ratio * e_plus)
    if e_minus > ceiling:
        raise NaeError(
            f"{where}: E- = {e_minus:.3g} ran away (limit {ceiling:.3g}); lower "
            f"sampler.input.step_size (now {sampler.step_size:g}) or {hold}"
        )


class _Interval:
    """Running sums of the per-iteration numbers between two checkpoints."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.cpu = time.process_time()

    def add(self, step: NaeStep) -> None:
        latent = step.negatives.latent_energies
        values = {
            "loss": step.loss,
            "e_pos": step.e_pos.mean().item(),
            "e_neg": step.e_neg.mean().item(),
            "e_diff": (step.e_pos.mean() - step.e_neg.mean()).item(),
            "latent_energy": latent.mean().item() if len(latent) else math.nan,
            "latent_acceptance": step.negatives.latent_acceptance,
            "input_acceptance": step.negatives.input_acceptance,
        }
        for key, value in values.items():
            if math.isfinite(value):
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float | None]:
        keys = (
            "loss",
            "e_pos",
            "e_neg",
            "e_diff",
            "latent_energy",
            "latent_acceptance",
            "input_acceptance",
        )
        means = {k: self.sums[k] / self.counts[k] if k in self.counts else None for k in keys}
        return {**means, "cpu_seconds": time.process_time() - self.cpu}


class _MetricsLog:
    """``metrics.jsonl``: one JSON object per line; resume cuts it back to the checkpoint's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.lines += 1

    def truncate(self, lines: int) -> None:
        kept = self.path.read_text().splitlines(keepends=True)[:lines] if self.path.exists() else []
        self.path.write_text("".join(kept))
        self.lines = len(kept)


def _model_checkpoint(
    config: RunConfig,
    model: Model,
    stage: str,
    step: int,
    metric: dict[str, float],
    *,
    samples: dict[str, Tensor] | None = None,
) -> dict[str, Any]:
    checkpoint = {
        "config": config.model_dump(),
        "model": model.state_dict(),
        "stage": stage,
        "step": step,
        "metric": metric,
    }
    return {**checkpoint, "samples": samples} if samples is not None else checkpoint


def _resume_checkpoint(
    config: RunConfig,
    model: Model,
    optimizer: torch.optim.Optimizer,
    stage: str,
    epoch: int,
    iteration: int,
    best: dict[str, float],
    reference: dict[str, float],
    generators: dict[str, torch.Generator],
    sampler: NegativeSampler | None,
    log: _MetricsLog,
) -> dict[str, Any]:
    return {
        **_model_checkpoint(config, model, stage, iteration if stage == "nae" else epoch, {}),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "iteration": iteration,
        "best": dict(best),
        "reference": dict(reference),
        "rng": rng_states(generators),
        "buffer": sampler.buffer.state_dict() if sampler is not None else None,
        "metrics_lines": log.lines,
    }


def _mark_complete(run_dir: Path) -> None:
    path = checkpoint_path(run_dir, LAST)
    save_checkpoint(path, {**load_checkpoint(path), "complete": True})


def _summary(
    run_dir: Path, family: str, selection: str, value: float, step: int, start_cpu: float
) -> RunSummary:
    summary = RunSummary(
        run_dir,
        family,
        checkpoint_path(run_dir, BEST),
        selection,
        value,
        step,
        time.process_time() - start_cpu,
    )
    record = {**summary._asdict(), "run_dir": str(run_dir), "selected": str(summary.selected)}
    (run_dir / "summary.json").write_text(json.dumps(record, indent=2) + "\n")
    return summary
