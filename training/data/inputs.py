"""The input array a bundle of each kind scores, read from a data file, chunk by chunk.

Each bundle kind (docs/contracts.md, contract 2) takes one array of the shard layout (contract 1b):

- ``jet-image``: ``images`` (N, 40, 40), unit-sum pixel intensities;
- ``jet-features``: ``features/<name>`` (N,) each, stacked in the bundle's order into (N, k);
- ``event``: ``particles`` (N, 19, 4): pT [GeV], eta, phi [rad], class id per row, or its first
  columns (a model of (N, 19, 3) takes pT, eta and phi);
- ``event-features``: ``features/<name>`` (N,) each of a feature-table shard (the Z-gamma
  sample's 18), stacked in the bundle's order into (N, k).

A source is a shard directory or file, an ``.npy`` array (taken as the input itself), or a public
file (top-tagging landscape, ADC2021), which is converted to shards in a temporary directory
first, so that every source goes through the one shard reader and the same preprocessing.

Feature names carry their unit as ``"<dataset> [<unit>]"`` (``"mass [GeV]"``), the form the
bundle's ``input.features`` lists; ``dataset_name`` strips the unit to find the dataset.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from service.bundle import sha256_file
from training.data.shards import describe_sample, hash_sample, iter_chunks, shard_files
from training.errors import BadDataFile, require

__all__ = [
    "EVENT_FEATURES",
    "KINDS",
    "Inputs",
    "Kind",
    "dataset_name",
    "default_features",
    "default_ranges",
    "source_format",
]

Kind = Literal["jet-image", "jet-features", "event", "event-features"]
KINDS: tuple[Kind, ...] = ("jet-image", "jet-features", "event", "event-features")
_NAMED_FEATURES = ("jet-features", "event-features")  # kinds whose columns are features/<name>
SourceFormat = Literal["shards", "npy", "landscape", "adc2021"]
EVENT_FEATURES = ("pt [GeV]", "eta", "phi [rad]", "class id")  # the columns of a (19, 4) row
_FEATURE_UNITS = {"mass": "GeV", "msd": "GeV", "log_msd": "log GeV"}  # others: dimensionless
_DATASETS = {"jet-image": "images", "event": "particles"}
_SIGNED_FEATURES = {"msd"}  # features that may be negative (``default_ranges``)
_DEFAULT_CHUNK = 10_000


def dataset_name(feature: str) -> str:
    """``"mass [GeV]"`` -> ``"mass"``: the shard dataset under ``features/`` of a feature."""
    return feature.split(" [", 1)[0]


def default_features(
    kind: Kind, input_shape: Sequence[int], feature_datasets: Sequence[str] = ()
) -> list[str]:
    """The bundle's ``input.features``: the last axis' entries with units. Images name none
    (their last axis is a pixel column); events name their columns; jet features name
    ``feature_datasets`` in order."""
    if kind == "event":
        return list(EVENT_FEATURES[: input_shape[-1]])
    if kind == "event-features":
        from training.data.zgamma import FEATURE_UNITS

        return [
            f"{name} [{FEATURE_UNITS[name]}]" if name in FEATURE_UNITS else name
            for name in feature_datasets
        ]
    if kind == "jet-features":
        return [
            f"{name} [{_FEATURE_UNITS[name]}]" if name in _FEATURE_UNITS else name
            for name in feature_datasets
        ]
    return []


def default_ranges(kind: Kind, features: Sequence[str]) -> list[tuple[float | None, float | None]]:
    """The bundle's ``input.ranges``, one per feature (images: one for every pixel), where the
    physics bounds them (``None``: an open side).

    Images hold unit-sum intensities, in [0, 1]; event rows hold pT >= 0, phi in [-pi, pi]
    (widened by float32's rounding of pi) and class ids 0-4; every substructure feature of
    ``training.data.jets`` is non-negative (log_msd too: msd is floored at 1 GeV) except
    ``msd``, which is open below: FastJet gives a groomed jet whose four-momentum rounds to
    spacelike the mass -sqrt(-m^2), so some real QCD jets have msd slightly below 0.
    The Z-gamma features have the bounds of ``training.data.zgamma.FEATURE_RANGES`` (open
    where unknown).
    """
    if kind == "jet-image":
        return [(0.0, 1.0)]
    if kind == "event":
        phi_max = float(np.nextafter(np.float32(np.pi), np.float32(4)))
        bounds = [(0.0, None), (None, None), (-phi_max, phi_max), (0.0, 4.0)]
        return bounds[: len(features)]
    if kind == "event-features":
        from training.data.zgamma import FEATURE_RANGES

        return [FEATURE_RANGES.get(dataset_name(f), (None, None)) for f in features]
    return [(None, None) if dataset_name(f) in _SIGNED_FEATURES else (0.0, None) for f in features]


def source_format(path: str | os.PathLike[str]) -> SourceFormat:
    """What a path holds: a shard directory or shard file, an ``.npy``, or a public HDF5 file
    (a pandas ``table`` key: landscape; a ``Particles`` dataset: ADC2021)."""
    path = Path(path)
    if path.is_dir():
        return "shards"
    if not path.is_file():
        raise BadDataFile(f"{path}: no such file or directory")
    if path.suffix == ".npy":
        return "npy"
    h5py = require("h5py", "data")
    try:
        with h5py.File(path, "r") as f:
            names = set(f)
    except OSError as exc:
        raise BadDataFile(f"{path}: neither .npy nor a readable HDF5 file") from exc
    if "label" in names:
        return "shards"
    if "Particles" in names:
        return "adc2021"
    if "table" in names:
        return "landscape"
    raise BadDataFile(
        f"{path}: HDF5 file with {sorted(names)}: not a shard ('label'), ADC2021 ('Particles') "
        "or top-tagging landscape ('table') file"
    )


@dataclass(frozen=True)
class Inputs:
    """A re-readable sample of one bundle kind's inputs: ``chunks()`` streams it, ``head(n)``
    reads its first rows, ``provenance()`` says what it is. ``features`` names the model's
    input columns in order: the feature names of jet-features (required), the leading
    columns of events (default all four), nothing for images."""

    path: Path
    kind: Kind
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadDataFile(f"unknown bundle kind {self.kind!r}; use one of {list(KINDS)}")
        features = tuple(self.features)
        if self.kind in _NAMED_FEATURES and not features:
            raise BadDataFile(f"{self.kind} inputs need the names of their features")
        if self.kind == "jet-image" and features:
            raise BadDataFile(f"jet-image inputs take no features, got {list(features)}")
        if self.kind == "event" and features != EVENT_FEATURES[: len(features)]:
            raise BadDataFile(
                f"event features {list(features)} must be leading columns of {EVENT_FEATURES}"
            )
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "features", features)

    @property
    def format(self) -> SourceFormat:
        return source_format(self.path)

    def chunks(self, chunk_size: int = _DEFAULT_CHUNK) -> Iterator[np.ndarray]:
        """The inputs, float32 ``(n, *input_shape)`` C-contiguous, ``chunk_size`` rows at a time
        (shards: at most one file's rows per chunk)."""
        source_kind = self.format
        if source_kind == "npy":
            values = np.load(self.path, mmap_mode="r")
            for start in range(0, len(values), chunk_size):
                yield np.ascontiguousarray(values[start : start + chunk_size], dtype=np.float32)
            return
        if source_kind == "shards":
            yield from self._shard_chunks(self.path, chunk_size)
            return
        with tempfile.TemporaryDirectory(prefix="nae-inputs-") as directory:
            self._convert(source_kind, Path(directory), chunk_size)
            yield from self._shard_chunks(Path(directory), chunk_size)

    def head(self, n: int) -> np.ndarray:
        """The first ``n`` inputs (fewer if the sample is smaller)."""
        parts, count = [], 0
        for chunk in self.chunks(min(n, _DEFAULT_CHUNK)):
            parts.append(chunk[: n - count])
            count += len(parts[-1])
            if count >= n:
                break
        if not parts:
            raise BadDataFile(f"{self.path}: the sample is empty")
        return np.concatenate(parts)

    def provenance(self) -> dict[str, object]:
        """Path, format and content hash: ``training.data.shards.hash_sample`` for shards (the
        hash ``nae data hash`` prints), the file's sha256 for other formats; shards add how
        they were made (``training.data.shards.describe_sample``: process, events, seeds,
        generation config), so a fresh sample of the same population can be made to check
        the bundle's calibration."""
        source_kind = self.format
        if source_kind != "shards":
            return {"path": str(self.path), "format": source_kind, "sha256": sha256_file(self.path)}
        files = shard_files(self.path) if self.path.is_dir() else [self.path]
        return {
            "path": str(self.path),
            "format": source_kind,
            "sha256": hash_sample(files),
            **describe_sample(files),
        }

    def _shard_chunks(self, source: Path, chunk_size: int) -> Iterator[np.ndarray]:
        if self.kind in _NAMED_FEATURES:
            datasets = [f"features/{dataset_name(feature)}" for feature in self.features]
        else:
            datasets = [_DATASETS[self.kind]]
        files = shard_files(source) if source.is_dir() else [source]
        for shard in iter_chunks(files, chunk_size=chunk_size, datasets=datasets):
            if self.kind in _NAMED_FEATURES:
                yield np.stack([shard.arrays[name] for name in datasets], axis=1)  # (n, k)
            elif self.kind == "event" and self.features:
                columns = len(self.features)
                yield np.ascontiguousarray(shard.arrays[datasets[0]][..., :columns])
            else:
                yield np.ascontiguousarray(shard.arrays[datasets[0]])

    def _convert(self, source_kind: SourceFormat, directory: Path, chunk_size: int) -> None:
        from training.data.convert import convert_adc2021, convert_landscape

        expected = "event" if source_kind == "adc2021" else "jet"
        if not self.kind.startswith(expected) or self.kind == "event-features":
            raise BadDataFile(
                f"{self.path} is a {source_kind} file of {expected}s; a {self.kind} bundle "
                "cannot score it"
            )
        convert = convert_adc2021 if source_kind == "adc2021" else convert_landscape
        convert(self.path, directory, chunk_size=chunk_size)
