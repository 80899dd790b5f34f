"""The only reader and writer of the HDF5 shard layout (docs/contracts.md, contract 1b).

A shard is one HDF5 file holding N jets or N events:

- jets: ``constituents`` (N, 200, 4), ``images`` (N, 40, 40), ``jet`` (N, 4), ``features/<name>``
  (N,), all float32;
- events: ``particles`` (N, 19, 4) float32;
- feature tables (one row of named features per event, e.g. the Z-gamma sample):
  ``features/<name>`` (N,) float32 and nothing else;
- all: ``label`` (N,) int8;

and the file attributes ``process``, ``seed``, ``settings`` (JSON), ``n_tried``,
``cross_section_pb`` and tool versions. Datasets are gzip-compressed (with the shuffle filter,
which roughly halves the size of zero-padded float arrays) in chunks of whole rows, so reading a
slice of rows decompresses only those rows.

A file is written under a temporary name and renamed into place, so a file with the final name
is always complete: a run interrupted while writing leaves at most a hidden
``.<name>.<pid>.tmp`` file, which readers and the resume logic ignore.

``hash_sample`` gives a sample's content hash for provenance: it depends on the arrays alone
(names, dtypes, shapes and values, rows in shard-name order), not on how they are chunked,
compressed or split into files, nor on the attributes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from training.config import SHARD_CONSTITUENTS, SHARD_IMAGE_PIXELS
from training.errors import BadDataFile, require

__all__ = [
    "EVENT_SHAPES",
    "JET_SHAPES",
    "Shard",
    "ShardInfo",
    "describe_sample",
    "hash_sample",
    "iter_chunks",
    "read_shard",
    "shard_files",
    "shard_info",
    "validate_arrays",
    "write_shard",
]

# Row shapes (the shape without the leading N) of contract 1b.
JET_SHAPES: dict[str, tuple[int, ...]] = {
    "constituents": (SHARD_CONSTITUENTS, 4),
    "images": (SHARD_IMAGE_PIXELS, SHARD_IMAGE_PIXELS),
    "jet": (4,),
}
EVENT_SHAPES: dict[str, tuple[int, ...]] = {"particles": (19, 4)}
_FEATURES = "features/"
_CHUNK_BYTES = 1 << 19  # ~0.5 MB per compressed chunk: a good gzip ratio, cheap partial reads
_GZIP_LEVEL = 4  # level 9 is ~3x slower to write for ~3% smaller files
_HASH_BLOCK_BYTES = 1 << 24  # rows read at a time while hashing: ~16 MB in memory


@dataclass
class Shard:
    """One shard in memory: datasets by HDF5 path and the file attributes.

    ``arrays`` keys are the dataset paths of contract 1b: ``constituents``, ``images``, ``jet``,
    ``features/<name>``, ``particles``, ``label``. ``attrs`` holds ``process``, ``seed``,
    ``settings`` (a JSON string), ``n_tried``, ``cross_section_pb`` and tool versions.
    """

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrays["label"])


def write_shard(path: str | os.PathLike[str], shard: Shard) -> Path:
    """Validate ``shard`` and write it to ``path`` atomically; returns the path.

    The file appears under its final name only once it is complete (write, flush, rename).
    """
    h5py = require("h5py", "data")
    path = Path(path)
    validate_arrays(shard.arrays, source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: two writers of one shard (overlapping batch slices, a
    # Dask task re-run while the first worker still writes) never share a temporary file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for name, values in sorted(shard.arrays.items()):
                _create_dataset(f, name, values)
            for key, value in shard.attrs.items():
                f.attrs[key] = _attr_value(value)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_shard(path: str | os.PathLike[str], datasets: Sequence[str] | None = None) -> Shard:
    """Read a whole shard, or only ``datasets`` (paths such as ``images`` or a group such as
    ``features``); ``label`` is always read because it defines the shard's length."""
    path = Path(path)
    with _open(path) as f:
        names = _select(f, datasets, path)
        arrays = {name: f[name][()] for name in names}
        attrs = _attrs(f)
    validate_arrays(arrays, source=str(path), complete=datasets is None)
    return Shard(arrays, attrs)


def iter_chunks(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    chunk_size: int,
    datasets: Sequence[str] | None = None,
) -> Iterator[Shard]:
    """Stream shards ``chunk_size`` rows at a time, holding one chunk in memory.

    ``source`` is a directory (its ``*.h5`` files in name order) or a list of shard files.
    Chunks never span files, so each carries its own file's attributes; the last chunk of a
    file may be shorter.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for path in _source_files(source):
        with _open(path) as f:
            names = _select(f, datasets, path)
            attrs = _attrs(f)
            n = f["label"].shape[0]
            _check_layout(
                {name: f[name] for name in names}, source=str(path), complete=datasets is None
            )
            for start in range(0, n, chunk_size):
                arrays = {name: f[name][start : start + chunk_size] for name in names}
                _check_finite(arrays, source=str(path), first_row=start)
                yield Shard(arrays, attrs)


def shard_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The shard files of a directory in name order; raises ``BadDataFile`` when there are none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadDataFile(f"{directory}: no such directory")
    files = sorted(directory.glob("*.h5"))
    if not files:
        raise BadDataFile(f"{directory}: no shard files (*.h5) in this directory")
    return files


def hash_sample(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> str:
    """The sha256 (hex) of a sample's arrays: a directory (its ``*.h5`` files in name order) or
    a list of shard files.

    Exactly what is hashed, dataset by dataset in sorted path order (``constituents``,
    ``features/<name>``..., ``images``, ``jet``, ``label``; or ``label``, ``particles``): the
    line ``f"{path} {dtype.str} {'x'.join(shape)}\n"`` in ASCII, with the dtype in numpy's
    little-endian notation (``<f4``, ``|i1``) and the shape of the dataset concatenated over
    all files (``1000x200x4``), then the C-order little-endian bytes of that concatenation.
    Attributes are not hashed: they hold versions and paths, which do not change the data. Every
    file must hold the same datasets. Reads ~16 MB at a time, so any sample size fits in memory.
    """
    files = _source_files(source)
    datasets, lengths = _common_layout(files)
    digest = hashlib.sha256()
    for name in datasets:
        with _open(files[0]) as f:
            row_shape, dtype = f[name].shape[1:], f[name].dtype.newbyteorder("<")
        shape = "x".join(str(d) for d in (sum(lengths), *row_shape))
        digest.update(f"{name} {dtype.str} {shape}\n".encode("ascii"))
        block = max(1, _HASH_BLOCK_BYTES // (dtype.itemsize * int(np.prod(row_shape))))
        for path, n in zip(files, lengths, strict=True):
            with _open(path) as f:
                for start in range(0, n, block):
                    values = f[name][start : start + block]
                    digest.update(np.ascontiguousarray(values, dtype=dtype).tobytes())
    return digest.hexdigest()


def describe_sample(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> dict[str, Any]:
    """How a sample was made, from its shards' attributes, for a bundle's provenance: enough to
    generate another sample of the same population that shares no shard with it.

    ``process`` (one name, or the sorted names when the files mix processes), ``n_events``,
    ``shard_seeds`` (each file's Pythia seed, in name order; -1 for converted public files) and
    ``sample_config`` (the generation config of the ``settings`` attribute, the same for every
    file, else ``None``; ``None`` for converted files).
    """
    files = _source_files(source)
    infos = [shard_info(path) for path in files]
    processes = sorted({str(info.attrs.get("process", "")) for info in infos})
    configs = {
        json.dumps(json.loads(info.attrs["settings"]).get("config"), sort_keys=True)
        if "settings" in info.attrs
        else "null"
        for info in infos
    }
    return {
        "process": processes[0] if len(processes) == 1 else processes,
        "n_events": sum(info.n for info in infos),
        "shard_seeds": [int(info.attrs.get("seed", -1)) for info in infos],
        "sample_config": json.loads(configs.pop()) if len(configs) == 1 else None,
    }


def _common_layout(files: list[Path]) -> tuple[list[str], list[int]]:
    """The sorted dataset paths that every file holds and each file's row count, after checking
    each file's layout (names, shapes, dtypes, one length)."""
    layouts: dict[tuple[str, ...], Path] = {}
    lengths = []
    for path in files:
        lengths.append(shard_info(path).n)
        with _open(path) as f:
            layouts.setdefault(tuple(sorted(_select(f, None, path))), path)
    if len(layouts) > 1:
        (first, a), (second, b) = list(layouts.items())[:2]
        only_one = sorted(set(first) ^ set(second))
        raise BadDataFile(
            f"{a} and {b} hold different datasets ({only_one} in only one); the files of a"
            " sample must share one layout"
        )
    return list(next(iter(layouts))), lengths


class ShardInfo(NamedTuple):
    """What a shard holds, known without reading its data."""

    kind: Literal["jets", "events", "table"]
    n: int
    attrs: dict[str, Any]


def shard_info(path: str | os.PathLike[str]) -> ShardInfo:
    """Kind, number of rows and attributes of a shard, after checking its layout."""
    path = Path(path)
    with _open(path) as f:
        datasets = {name: f[name] for name in _select(f, None, path)}
        _check_layout(datasets, source=str(path), complete=True)
        kind = {"event": "events", "jet": "jets", "table": "table"}[_kind(datasets)[0]]
        return ShardInfo(kind, int(f["label"].shape[0]), _attrs(f))


def validate_arrays(arrays: dict[str, Any], *, source: str, complete: bool = True) -> None:
    """Raise ``BadDataFile`` naming ``source`` unless ``arrays`` follow contract 1b: one kind
    (jets or events) with all its datasets (unless ``complete`` is false), the row shapes and
    dtypes above, one length N, finite values."""
    _check_layout(arrays, source=source, complete=complete)
    _check_finite(arrays, source=source)


def _check_layout(arrays: dict[str, Any], *, source: str, complete: bool) -> None:
    """Names, shapes, dtypes and lengths; works on numpy arrays and h5py datasets alike.
    ``complete`` also requires every dataset of the kind, which a partial read need not have."""
    if "label" not in arrays:
        raise BadDataFile(f"{source}: no 'label' dataset")
    kind, shapes = _kind(arrays)
    has_features = any(name.startswith(_FEATURES) for name in arrays)
    unknown = [
        name
        for name in arrays
        if name != "label"
        and name not in shapes
        and not (kind != "event" and name.startswith(_FEATURES))
    ]
    if unknown:
        raise BadDataFile(f"{source}: datasets {unknown} do not belong in {kind} shards")
    missing = [name for name in shapes if name not in arrays]
    if complete and kind != "event" and not has_features:
        missing.append(f"{_FEATURES}<name>")
    if complete and missing:
        raise BadDataFile(f"{source}: {kind} shard without {missing}")
    n = arrays["label"].shape[0]
    for name, values in arrays.items():
        row_shape = shapes.get(name, ())
        if values.shape != (n, *row_shape):
            raise BadDataFile(
                f"{source}: dataset '{name}' has shape {values.shape}, expected {(n, *row_shape)}"
            )
        expected = np.dtype(np.int8 if name == "label" else np.float32)
        if values.dtype != expected:
            raise BadDataFile(
                f"{source}: dataset '{name}' has dtype {values.dtype}, expected {expected}"
            )


def _kind(arrays: dict[str, Any]) -> tuple[str, dict[str, tuple[int, ...]]]:
    """``event`` (``particles``), ``table`` (features only, none of the jet arrays) or ``jet``,
    with the row shapes the kind requires."""
    if "particles" in arrays:
        return "event", EVENT_SHAPES
    has_features = any(name.startswith(_FEATURES) for name in arrays)
    if has_features and not any(name in arrays for name in JET_SHAPES):
        return "table", {}
    return "jet", JET_SHAPES


def _check_finite(arrays: dict[str, np.ndarray], *, source: str, first_row: int = 0) -> None:
    """``first_row``: the file row of ``arrays``' row 0, so a chunk names the file's row."""
    for name, values in arrays.items():
        bad = ~np.isfinite(values)
        if bad.any():
            row = first_row + int(np.argwhere(bad)[0][0])
            raise BadDataFile(
                f"{source}: dataset '{name}' has NaN or infinity (first at row {row})"
            )


def _create_dataset(f: Any, name: str, values: np.ndarray) -> None:
    row_bytes = values.itemsize * int(np.prod(values.shape[1:]))
    rows = max(1, min(len(values), _CHUNK_BYTES // row_bytes))
    f.create_dataset(
        name,
        data=values,
        chunks=(rows, *values.shape[1:]),
        maxshape=(None, *values.shape[1:]),  # lets an empty shard be chunked too
        compression="gzip",
        compression_opts=_GZIP_LEVEL,
        shuffle=True,
    )


def _attr_value(value: Any) -> Any:
    """HDF5 stores strings and numbers; anything else (dicts, lists) goes in as JSON."""
    if isinstance(value, str | int | float | bool | np.integer | np.floating):
        return value
    return json.dumps(value, sort_keys=True)


def _attrs(f: Any) -> dict[str, Any]:
    return {
        key: value.item() if isinstance(value, np.generic) else value
        for key, value in f.attrs.items()
    }


def _open(path: Path) -> Any:
    """Open a shard read-only, turning "missing" and "not HDF5" into one clear ``BadDataFile``."""
    h5py = require("h5py", "data")
    if not path.is_file():
        raise BadDataFile(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise BadDataFile(f"{path}: not a readable HDF5 file") from exc


def _select(f: Any, datasets: Sequence[str] | None, path: Path) -> list[str]:
    """Dataset paths to read: all of them, or the requested ones (groups expanded) plus label."""
    h5py = require("h5py", "data")
    available: list[str] = []
    f.visititems(
        lambda name, obj: available.append(name) if isinstance(obj, h5py.Dataset) else None
    )
    if "label" not in available:
        raise BadDataFile(f"{path}: no 'label' dataset (found {sorted(available)})")
    if datasets is None:
        return available
    selected = ["label"]
    for want in datasets:
        matches = [a for a in available if a == want or a.startswith(f"{want}/")]
        if not matches:
            raise BadDataFile(f"{path}: no dataset '{want}' (found {sorted(available)})")
        selected += [m for m in matches if m not in selected]
    return selected


def _source_files(
    source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> list[Path]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return shard_files(path) if path.is_dir() else [path]
    return [Path(p) for p in source]
