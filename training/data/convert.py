"""Public data files to the project's shards (docs/contracts.md, contract 1b).

- Top-tagging landscape (arXiv:1902.09914; Zenodo 2603256): a pandas HDFStore with key
  ``table`` (fixed format in the published files; table format also works), columns
  ``E_i, PX_i, PY_i, PZ_i`` for i < 200 (pT-ordered, zero-padded constituents in GeV) and
  ``is_signal_new`` (1 = top). Truth columns (``truthE``, ..., ``ttv``) are ignored. Images,
  the jet 4-vector and the substructure features are computed here from the constituents with
  the same functions the generator uses, so a converted file equals a generated one.
- ADC2021 (arXiv:2107.02157): an HDF5 dataset ``Particles`` of shape
  (N, 19, 4). It already is our event layout; the label is given by the user (0 by default).

Inputs are read ``chunk_size`` rows at a time and each chunk becomes one output shard
``<input stem>_<index:05d>.h5``, so files larger than memory convert.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from training.config import ImageConfig
from training.data.shards import EVENT_SHAPES, JET_SHAPES, Shard, write_shard
from training.errors import BadDataFile, NaeError, require

__all__ = ["DEFAULT_CHUNK_SIZE", "LANDSCAPE_COLUMNS", "convert_adc2021", "convert_landscape"]

_N_CONSTITUENTS = JET_SHAPES["constituents"][0]
LANDSCAPE_COLUMNS: list[str] = [
    f"{component}_{i}" for i in range(_N_CONSTITUENTS) for component in ("E", "PX", "PY", "PZ")
]
_LANDSCAPE_KEY = "table"
_LANDSCAPE_LABEL = "is_signal_new"
_ADC2021_DATASET = "Particles"
DEFAULT_CHUNK_SIZE = 10_000


def convert_landscape(
    in_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    process: str = "landscape",
    image: ImageConfig | None = None,
    jet_radius: float = 0.8,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Convert a top-tagging landscape file into jet shards; returns the shard paths.

    ``progress(k)`` is called with the number of jets converted after each chunk."""
    from training.data.images import images_from_constituents
    from training.data.jets import features_from_constituents, jets_from_constituents

    in_path, image = Path(in_path), image or ImageConfig()
    settings = {"source": "top-tagging landscape", "image": image.model_dump()}
    settings["jet_radius"] = jet_radius
    paths = []
    for index, (constituents, labels) in enumerate(_landscape_chunks(in_path, chunk_size)):
        features = features_from_constituents(constituents, jet_radius=jet_radius)
        arrays = {
            "constituents": constituents,
            "images": images_from_constituents(constituents, image).astype(np.float32),
            "jet": jets_from_constituents(constituents).astype(np.float32),
            "label": labels,
            **{f"features/{k}": v.astype(np.float32) for k, v in features.items()},
        }
        attrs = _attrs(in_path, process, settings, n=len(labels), tools=("fastjet",))
        paths.append(write_shard(_out_path(out_dir, in_path, index), Shard(arrays, attrs)))
        if progress is not None:
            progress(len(labels))
    return paths


def convert_adc2021(
    in_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    process: str = "adc2021",
    label: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """Convert an ADC2021 file into event shards, every event labelled ``label``.

    ``progress(k)`` is called with the number of events converted after each chunk."""
    if label not in (0, 1):
        raise BadDataFile(f"label must be 0 or 1, got {label}")
    in_path = Path(in_path)
    settings = {"source": "ADC2021", "label": label}
    paths = []
    for index, particles in enumerate(_adc2021_chunks(in_path, chunk_size)):
        arrays = {"particles": particles, "label": np.full(len(particles), label, np.int8)}
        shard = Shard(arrays, _attrs(in_path, process, settings, n=len(particles)))
        paths.append(write_shard(_out_path(out_dir, in_path, index), shard))
        if progress is not None:
            progress(len(particles))
    return paths


def _landscape_chunks(path: Path, chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(constituents (n, 200, 4) float32, labels (n,) int8) per chunk of the file."""
    _check_chunk_size(chunk_size)
    pd = require("pandas", "data")
    require("tables", "data")
    with _pandas_store(pd, path) as store:
        if _LANDSCAPE_KEY not in store:
            raise BadDataFile(f"{path}: no key '{_LANDSCAPE_KEY}' (found {store.keys()})")
        storer = store.get_storer(_LANDSCAPE_KEY)
        n = int(storer.nrows if storer.is_table else storer.shape[0])  # fixed: nrows is None
        for start in range(0, n, chunk_size):
            frame = store.select(_LANDSCAPE_KEY, start=start, stop=start + chunk_size)
            yield _landscape_arrays(frame, path, start)


def _landscape_arrays(frame: Any, path: Path, start: int) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in (*LANDSCAPE_COLUMNS, _LANDSCAPE_LABEL) if c not in frame.columns]
    if missing:
        raise BadDataFile(
            f"{path}: not a top-tagging landscape file, {len(missing)} columns missing"
            f" (first: {missing[:4]})"
        )
    values = frame[LANDSCAPE_COLUMNS].to_numpy(dtype=np.float32)
    constituents = values.reshape(len(frame), _N_CONSTITUENTS, 4)  # (n, 200, 4) E, px, py, pz
    labels = frame[_LANDSCAPE_LABEL].to_numpy()
    _check_finite(constituents, path, "constituents", start)
    _check_finite(labels.astype(np.float64), path, _LANDSCAPE_LABEL, start)
    if not np.isin(labels, (0, 1)).all():
        raise BadDataFile(f"{path}: {_LANDSCAPE_LABEL} must be 0 or 1")
    return constituents, labels.astype(np.int8)


def _adc2021_chunks(path: Path, chunk_size: int) -> Iterator[np.ndarray]:
    """(n, 19, 4) float32 per chunk of the file."""
    _check_chunk_size(chunk_size)
    h5py = require("h5py", "data")
    if not path.is_file():
        raise BadDataFile(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise BadDataFile(f"{path}: not a readable HDF5 file") from exc
    with f:
        if not isinstance(f.get(_ADC2021_DATASET), h5py.Dataset):
            raise BadDataFile(f"{path}: no dataset '{_ADC2021_DATASET}' (found {sorted(f)})")
        dataset = f[_ADC2021_DATASET]
        row_shape = EVENT_SHAPES["particles"]
        if dataset.shape[1:] != row_shape:
            raise BadDataFile(
                f"{path}: '{_ADC2021_DATASET}' has shape {dataset.shape},"
                f" expected (N, {', '.join(map(str, row_shape))})"
            )
        for start in range(0, dataset.shape[0], chunk_size):
            particles = dataset[start : start + chunk_size].astype(np.float32)
            _check_finite(particles, path, _ADC2021_DATASET, start)
            yield particles


def _pandas_store(pd: Any, path: Path) -> Any:
    if not path.is_file():
        raise BadDataFile(f"{path}: no such file")
    try:
        return pd.HDFStore(path, mode="r")
    except Exception as exc:  # PyTables raises several types, with multi-line HDF5 traces
        raise BadDataFile(f"{path}: not a readable pandas HDF5 file") from exc


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise NaeError(f"chunk size must be positive, got {chunk_size}")


def _check_finite(values: np.ndarray, path: Path, name: str, start: int) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        row = start + int(np.argwhere(bad)[0][0])
        raise BadDataFile(f"{path}: '{name}' has NaN or infinity (first at row {row})")


def _attrs(
    in_path: Path, process: str, settings: dict[str, Any], *, n: int, tools: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Contract-1b attributes for a converted file: no Pythia seed, run or cross section.
    ``versions`` is the same JSON object the generators write, for the tools used here."""
    versions = {"nae-trigger": version("nae-trigger"), **{t: version(t) for t in tools}}
    return {
        "process": process,
        "seed": -1,
        "settings": json.dumps({**settings, "input": str(in_path)}, sort_keys=True),
        "n_tried": n,
        "cross_section_pb": float("nan"),
        "versions": json.dumps(versions, sort_keys=True),
    }


def _out_path(out_dir: str | os.PathLike[str], in_path: Path, index: int) -> Path:
    return Path(out_dir) / f"{in_path.stem}_{index:05d}.h5"
