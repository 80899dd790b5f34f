"""``nae evaluate`` of a generator run: fidelity against held-out Monte Carlo, speed, and the
model as an anomaly score.

1. **Fidelity** (``training.fidelity``): as many generated events as held-out ones, per-feature
   KS and 1-Wasserstein, the Spearman matrices, each with its bootstrap error; and a
   classifier two-sample test (``classifier_two_sample_test``): a small network trained to
   tell generated from simulated events on one half of each, its AUC measured on the other
   half (0.5: indistinguishable), with a bootstrap error over the test events.
2. **Speed**: generated events per CPU second (one thread), against Pythia plus the detector
   for the same events, from the held-out shards' ``cpu_seconds`` and row counts (Pythia's
   initialisation included, as a production shard pays it).
3. **Classification**: every score of the model (``TableVAE.scores``) on the held-out
   background against each signal: AUC, rejections and efficiencies with their
   uncertainties (``evaluate.separation_metrics``).

Writes ``metrics.json``, ``fidelity.npz`` (generated and reference samples, at most
``_SAVED_EVENTS`` each, and latent means, for the plots) and ``scores.npz``, then the plots of
``fidelity_plots``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.checkpoint import BEST
from training.data.loaders import load_inputs
from training.data.shards import shard_files, shard_info
from training.errors import NaeError
from training.evaluate import EvaluationSummary, score_inputs, separation_metrics
from training.fidelity import bootstrap, fidelity_metrics
from training.metrics import roc_auc
from training.models.preprocessing import QuantileToNormal
from training.synthesis import generate_events, load_generator

__all__ = ["classifier_two_sample_test", "evaluate_generator", "simulation_cpu_rate"]

_SAVED_EVENTS = 200_000
_C2ST_EPOCHS = 20
_C2ST_BATCH = 512
_CHUNK = 2048  # rows per quantile transform: its (N, k, n_quantiles) intermediate stays small


def classifier_two_sample_test(
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    seed: int = 0,
    epochs: int = _C2ST_EPOCHS,
    n_bootstrap: int = 100,
) -> dict[str, Any]:
    """AUC of a classifier (18 -> 64 -> 64 -> 1, SiLU) trained to separate ``generated`` from
    ``reference`` (N, k), on equal numbers of each: first half trains, second half tests.
    Inputs are quantile-transformed to normals (fitted on the reference training half), so
    no feature's units dominate. Returns the test AUC, its bootstrap error over the test
    events and DeLong's, and the sizes."""
    n = min(len(generated), len(reference))
    if n < 20:
        raise NaeError(f"the classifier test needs at least 20 events of each sample, got {n}")
    rng = np.random.default_rng(seed)
    g = generated[rng.permutation(len(generated))[:n]]
    r = reference[rng.permutation(len(reference))[:n]]
    half = n // 2
    transform = QuantileToNormal(r.shape[1], 256).fit(r[:half])
    torch.manual_seed(seed)
    network = nn.Sequential(
        nn.Linear(r.shape[1], 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1)
    )
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-3)

    def inputs(values: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            x = torch.as_tensor(values, dtype=torch.float32)
            return torch.cat([transform(chunk) for chunk in x.split(_CHUNK)])

    x_train = torch.cat([inputs(g[:half]), inputs(r[:half])])
    y_train = torch.cat([torch.ones(half), torch.zeros(half)])
    batches = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(x_train), generator=batches).split(_C2ST_BATCH):
            loss = nn.functional.binary_cross_entropy_with_logits(
                network(x_train[index]).squeeze(1), y_train[index]
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        scores_g = network(inputs(g[half:])).squeeze(1).numpy()
        scores_r = network(inputs(r[half:])).squeeze(1).numpy()
    auc = roc_auc(scores_r, scores_g)
    (boot,) = bootstrap(
        lambda a, b: [roc_auc(b, a).value], scores_g, scores_r, n_bootstrap=n_bootstrap, rng=rng
    )
    return {
        "auc": {"value": auc.value, "error": boot.error, "delong_error": auc.error},
        "n_train_each": half,
        "n_test_each": n - half,
        "epochs": epochs,
    }


def simulation_cpu_rate(source: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Pythia + detector events per CPU second of a simulated sample: its rows over the
    ``cpu_seconds`` its shards record; None when they record none (older or converted)."""
    files = shard_files(source) if Path(source).is_dir() else [Path(source)]
    infos = [shard_info(path) for path in files]
    if any("cpu_seconds" not in info.attrs for info in infos):
        return None
    n = sum(info.n for info in infos)
    cpu = sum(float(info.attrs["cpu_seconds"]) for info in infos)
    return {"events": n, "cpu_seconds": cpu, "events_per_cpu_second": n / cpu}


def evaluate_generator(
    run_dir: str | os.PathLike[str],
    *,
    background: str | os.PathLike[str] | None = None,
    signals: Mapping[str, str | os.PathLike[str]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    checkpoint: str = BEST,
    max_events: int = 0,
    n_bootstrap: int = 100,
    seed: int = 12345,
    plots: bool = True,
) -> EvaluationSummary:
    """Fidelity, speed and classification of a generator run's checkpoint (module
    docstring); background and signals default to the run config's."""
    run_dir = Path(run_dir)
    model, config, stored = load_generator(run_dir, checkpoint)
    torch.set_num_threads(config.train.threads)
    background = background or config.data.background
    signals = signals or config.data.signals
    if not background:
        raise NaeError("give --background DATA (held-out Monte Carlo; the config names none)")
    out = Path(out_dir) if out_dir is not None else run_dir / "evaluation" / Path(checkpoint).stem
    out.mkdir(parents=True, exist_ok=True)
    features, discrete = config.data.features, config.data.discrete

    def load(path: str | os.PathLike[str]) -> torch.Tensor:
        return load_inputs([path], input="features", features=features, max_events=max_events)

    x_reference = load(background)
    reference = x_reference.numpy()
    generated, generation_cpu = generate_events(model, len(reference), seed=seed)
    fidelity = fidelity_metrics(
        generated, reference, features=features, discrete=discrete, n_bootstrap=n_bootstrap,
        seed=seed,
    )  # fmt: skip
    fidelity["classifier_two_sample"] = classifier_two_sample_test(
        generated, reference, seed=seed, n_bootstrap=n_bootstrap
    )
    simulation = simulation_cpu_rate(background)
    rate = len(generated) / max(generation_cpu, 1e-9)
    speed = {
        "generated_events": len(generated),
        "generation_cpu_seconds": generation_cpu,
        "generated_per_cpu_second": rate,
        "simulation": simulation,
        "speedup": rate / simulation["events_per_cpu_second"] if simulation else None,
    }
    background_scores = score_inputs(model, x_reference)
    arrays = {f"background/{name}": values for name, values in background_scores.items()}
    classification: dict[str, Any] = {}
    auc: dict[str, dict[str, float]] = {}
    for name, path in (signals or {}).items():
        signal_scores = score_inputs(model, load(path))
        metrics = {
            score: separation_metrics(background_scores[score], values)
            for score, values in signal_scores.items()
        }
        n_signal = len(next(iter(signal_scores.values())))
        classification[name] = {"path": str(path), "n": n_signal, "scores": metrics}
        auc[name] = {score: m["auc"]["value"] for score, m in metrics.items()}
        arrays.update({f"signal/{name}/{score}": v for score, v in signal_scores.items()})
    report = {
        "run": str(run_dir),
        "checkpoint": str(checkpoint),
        "family": config.model.family,
        "stage": stored["stage"],
        "step": stored["step"],
        "selection_metric": stored["metric"],
        "default_score": model.default_score,
        "seed": seed,
        "background": {"path": str(background), "n": len(reference)},
        "features": list(features),
        "discrete": list(discrete),
        "fidelity": fidelity,
        "speed": speed,
        "signals": classification,
        "uncertainties": "fidelity: standard deviation of bootstrap replicas (both samples "
        "resampled); classifier test: bootstrap over its test events (DeLong's also given); "
        "classification: as nae evaluate (DeLong, Clopper-Pearson 68.27%)",
    }
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    np.savez_compressed(out / "scores.npz", **arrays)
    keep = slice(0, _SAVED_EVENTS)
    np.savez_compressed(
        out / "fidelity.npz",
        generated=generated[keep],
        reference=reference[keep],
        latent=torch.cat([model.latent_means(c) for c in x_reference[keep].split(_CHUNK)]).numpy(),
        prior=model.prior.sample(min(len(reference), _SAVED_EVENTS),
                                 torch.Generator().manual_seed(seed)).detach().numpy(),
    )  # fmt: skip
    if plots:
        from training.fidelity_plots import make_fidelity_plots

        make_fidelity_plots(out)
    return EvaluationSummary(out, str(checkpoint), len(reference), auc)
