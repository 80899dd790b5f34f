"""Checkpoints: one self-describing dict per file (nanoGPT's ``ckpt.pt``), saved atomically.

Every checkpoint holds ``config`` (the resolved ``RunConfig`` as a dict), ``model`` (a state
dict), ``stage`` and ``step`` (``"ae"`` epoch, ``"nae"`` iteration, ``"pca"``), and ``metric``
(what model selection compared: validation loss, EMD). The resumable ``last.pt`` adds the
optimiser, the RNG states (torch's, numpy's and Python's global ones and every named
``torch.Generator``), the replay buffer, the best values so far and the number of lines of
``metrics.jsonl`` written, which is everything ``train`` needs to continue bit-identically.

Files under ``run_dir/checkpoints/``: ``last.pt`` (resume), ``best.pt`` (the signal-agnostic
selection: lowest validation loss for AE/VAE, lowest EMD for NAE, the fit for PCA),
``ae-best.pt`` (an NAE's pre-trained AE), ``epoch-0001.pt`` ... and ``iteration-000100.pt`` ...
(every epoch and NAE checkpoint interval, for evaluating any of them). Loading uses
``weights_only=True``: only tensors and plain containers, never pickled code.
"""

from __future__ import annotations

import copy
import os
import random
import warnings
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

from training.config import GeneratorRunConfig, RunConfig
from training.errors import NaeError
from training.models.families import Model, build_model
from training.models.generators.families import build_generator
from training.models.generators.vae import TableVAE

__all__ = [
    "BEST",
    "LAST",
    "checkpoint_config",
    "checkpoint_path",
    "list_checkpoints",
    "load_checkpoint",
    "load_model",
    "restore_rng_states",
    "rng_states",
    "save_checkpoint",
]

FORMAT = 1
LAST, BEST, AE_BEST = "last", "best", "ae-best"

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def checkpoint_path(run_dir: str | os.PathLike[str], name: str) -> Path:
    """``run_dir/checkpoints/<name>.pt``; ``name`` may also be a path to a ``.pt`` file."""
    if str(name).endswith(".pt"):
        return Path(name)
    return Path(run_dir) / "checkpoints" / f"{name}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[str]:
    """Names of a run's per-epoch and per-interval checkpoints, in training order."""
    directory = Path(run_dir) / "checkpoints"
    epochs = sorted(p.stem for p in directory.glob("epoch-*.pt"))
    return epochs + sorted(p.stem for p in directory.glob("iteration-*.pt"))


def save_checkpoint(path: str | os.PathLike[str], checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, **checkpoint}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise NaeError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise NaeError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if checkpoint.get("format") != FORMAT:
        raise NaeError(f"{path}: checkpoint format {checkpoint.get('format')}, expected {FORMAT}")
    return checkpoint


def load_model(
    run_dir: str | os.PathLike[str], name: str = BEST
) -> tuple[Model | TableVAE, RunConfig | GeneratorRunConfig, dict[str, Any]]:
    """The network of checkpoint ``name`` of a run in eval mode, its config and the checkpoint
    (a generator's, ``TableVAE`` and ``GeneratorRunConfig``, when its data input is a table)."""
    checkpoint = load_checkpoint(checkpoint_path(run_dir, name))
    if checkpoint["config"]["data"].get("input") == "table":
        config = checkpoint_config(checkpoint, GeneratorRunConfig)
        model = build_generator(config)
    else:
        config = checkpoint_config(checkpoint, RunConfig)
        model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    return model.eval(), config, checkpoint


def checkpoint_config(checkpoint: dict[str, Any], schema: type[ConfigT]) -> ConfigT:
    """The checkpoint's config, validated by ``schema``.

    A checkpoint stores its whole config, so a field that a later version of the code removed
    would make every older run unloadable. A removed field that the run left unset (None) did
    nothing, so it is dropped with a warning; a removed field with a value changed what the run
    did, and the load fails with a message that names it."""
    data = checkpoint["config"]
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        removed = [error for error in exc.errors() if error["type"] == "extra_forbidden"]
        if not removed or len(removed) != exc.error_count():
            raise
        names = ", ".join(_dotted(error["loc"]) for error in removed)
        if any(error["input"] is not None for error in removed):
            raise NaeError(
                f"this checkpoint sets config fields this version no longer has: {names}; "
                "load it with the version that wrote it"
            ) from None
        warnings.warn(
            f"checkpoint config: dropped unset fields this version no longer has: {names}",
            stacklevel=2,
        )
        return schema.model_validate(_without(data, [error["loc"] for error in removed]))


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _without(data: dict[str, Any], locations: list[tuple[int | str, ...]]) -> dict[str, Any]:
    """A copy of ``data`` with the keys at ``locations`` removed (the checkpoint stays as it is)."""
    data = copy.deepcopy(data)
    for loc in locations:
        parent = data
        for part in loc[:-1]:
            parent = parent[part]
        del parent[loc[-1]]
    return data


def rng_states(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The global torch, numpy and Python RNG states and each generator's, as tensors/ints."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(python_state), "gauss": gauss_next},
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def restore_rng_states(states: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Undo ``rng_states``: set the global RNGs and each named generator back."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached"],
        )
    )
    python = states["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    for name, generator in generators.items():
        generator.set_state(states["generators"][name])
