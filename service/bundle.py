"""The bundle schema (docs/contracts.md, contract 2), its loader with hash checks and its writer.

A bundle is a directory ``models/<name>/<version>/`` holding ``bundle.json`` and the ONNX files it
lists with their sha256. The service reads bundles through ``load_bundle``; the training side
writes them through ``digest_files`` and ``write_bundle``, so both sides share one schema.
Every model accepts extra fields (``extra="allow"``): a bundle.json holding only the contract's
fields is valid, and richer provenance never breaks an older service.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "BUNDLE_FILE",
    "INT8_FILE",
    "MODEL_FILE",
    "REFERENCE_RATE_HZ",
    "Bundle",
    "FileDigest",
    "InputSpec",
    "InvalidBundle",
    "ModelChoice",
    "OutputSpec",
    "WorkingPoint",
    "digest_files",
    "load_bundle",
    "sha256_file",
    "write_bundle",
]

BUNDLE_FILE = "bundle.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
ModelFile = Literal["model.onnx", "model.int8.onnx"]
# Which file a service serves: the bundle's recommendation, or fp32 / int8 (where shipped).
ModelChoice = Literal["recommended", "model.onnx", "model.int8.onnx"]
# The one home of the LHC reference input rate: 2544 colliding bunch pairs x 11245.6 Hz revolution
# frequency (the ADC2021 convention), written out because the float product is 28608806.400000002.
# Bundles, the service's settings and the calibration use it.
REFERENCE_RATE_HZ = 28_608_806.4
# event-features: one row of named per-event features (the Z-gamma table, issue 11).
BundleKind = Literal["jet-image", "jet-features", "event", "event-features"]
# Names end up in URLs, Prometheus labels and Triton output names: keep them to a safe alphabet.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_CHUNK_BYTES = 1 << 20


class InvalidBundle(ValueError):
    """A bundle directory whose bundle.json is unreadable, breaks the schema or whose files do
    not match their sha256. The message is one line naming the directory and the problem."""


class _Open(BaseModel):
    """Frozen, and tolerant of fields this version of the schema does not know."""

    model_config = ConfigDict(extra="allow", frozen=True)


# A valid interval [low, high] in the input's units; null leaves that side open.
Bounds = tuple[float | None, float | None]


class InputSpec(_Open):
    """The ONNX input: name, per-event shape (without the batch axis) and dtype.

    ``features`` names the entries of the last axis (with units, e.g. ``"pt [GeV]"``).
    ``ranges`` (optional) bounds the values the service accepts, inclusive, in the input's
    units: either one ``[low, high]`` per entry of the last axis (a list as long as that
    axis, or of length 1 for every value), or ``{feature: [low, high]}`` for the named
    features (``features`` must then name every entry of the last axis)."""

    name: str
    shape: list[PositiveInt] = Field(min_length=1)
    dtype: Literal["float32"]
    features: list[str] = []
    ranges: list[Bounds] | dict[str, Bounds] | None = None

    @model_validator(mode="after")
    def _ranges_fit_the_last_axis(self) -> InputSpec:
        columns = self.shape[-1]
        if isinstance(self.ranges, dict):
            if len(self.features) != columns:
                raise ValueError(
                    f"ranges by feature name need features naming all {columns} entries of "
                    f"the last axis, got {len(self.features)} features"
                )
            unknown = sorted(set(self.ranges) - set(self.features))
            if unknown:
                raise ValueError(f"ranges name unknown features {unknown}")
        elif self.ranges is not None and len(self.ranges) not in (1, columns):
            raise ValueError(
                f"ranges hold {len(self.ranges)} intervals; give 1 or one per entry of the "
                f"last axis ({columns})"
            )
        bounds = self.ranges.values() if isinstance(self.ranges, dict) else self.ranges or []
        for low, high in bounds:
            if any(bound is not None and not math.isfinite(bound) for bound in (low, high)):
                raise ValueError("range bounds must be finite numbers or null")
            if low is not None and high is not None and low > high:
                raise ValueError(f"range [{low}, {high}] has low > high")
        return self

    def column_bounds(self) -> list[Bounds]:
        """``[low, high]`` of each entry of the last axis (``None``: open), or ``[]`` without
        ranges."""
        if self.ranges is None:
            return []
        columns = self.shape[-1]
        if isinstance(self.ranges, dict):
            return [self.ranges.get(feature, (None, None)) for feature in self.features]
        return list(self.ranges) * (columns if len(self.ranges) == 1 else 1)


class OutputSpec(_Open):
    """The ONNX output holding the anomaly score, float32 ``(N,)``."""

    name: str


class FileDigest(_Open):
    """The sha256 (lowercase hex) of one file of the bundle."""

    sha256: Sha256


class WorkingPoint(_Open):
    """A calibrated threshold: events with ``score > threshold`` trigger."""

    name: Name
    target_background_efficiency: float = Field(gt=0, le=1)
    threshold: float
    background_efficiency: float = Field(ge=0, le=1)
    background_efficiency_ci95: tuple[float, float]
    n_background: NonNegativeInt
    expected_rate_hz: NonNegativeFloat

    @field_validator("threshold")
    @classmethod
    def _finite(cls, threshold: float) -> float:
        if not math.isfinite(threshold):
            raise ValueError("threshold must be finite")
        return threshold

    @field_validator("background_efficiency_ci95")
    @classmethod
    def _ordered(cls, interval: tuple[float, float]) -> tuple[float, float]:
        low, high = interval
        if not 0 <= low <= high <= 1:
            raise ValueError(f"interval {list(interval)} must satisfy 0 <= low <= high <= 1")
        return interval


class Bundle(_Open):
    """``bundle.json`` of contract 2. Fields beyond these (preprocessing, hyperparameters,
    provenance) are kept as extras."""

    schema_version: Literal[1]
    name: Name
    version: PositiveInt
    kind: BundleKind
    input: InputSpec
    output: OutputSpec
    files: dict[str, FileDigest]
    reference_rate_hz: float = Field(gt=0)
    working_points: list[WorkingPoint]
    metrics: dict[str, dict[str, float]] = {}
    recommended: ModelFile = MODEL_FILE

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, files: dict[str, FileDigest]) -> dict[str, FileDigest]:
        if MODEL_FILE not in files:
            raise ValueError(f"files must list {MODEL_FILE}")
        for file_name in files:
            if file_name != Path(file_name).name or file_name in {".", ".."}:
                raise ValueError(f"file name {file_name!r} must be a plain name in the bundle")
        return files

    @model_validator(mode="after")
    def _unique_working_points(self) -> Bundle:
        names = [working_point.name for working_point in self.working_points]
        if len(set(names)) != len(names):
            raise ValueError(f"working point names must be unique, got {names}")
        if self.recommended not in self.files:
            raise ValueError(f"recommended {self.recommended} is not listed in files")
        return self

    def file_to_serve(self, choice: ModelChoice) -> ModelFile:
        """The ONNX file to run for an operator's ``choice``: the bundle's recommendation, fp32,
        or int8 where the bundle ships it (int8 ships only where it passed its gate) and fp32
        otherwise."""
        if choice == "recommended":
            return self.recommended
        return INT8_FILE if choice == INT8_FILE and INT8_FILE in self.files else MODEL_FILE


def sha256_file(path: Path) -> str:
    """Lowercase hex sha256 of a file, read in chunks so large models never sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def digest_files(directory: Path, names: list[str]) -> dict[str, FileDigest]:
    """The ``files`` field of a bundle: sha256 of each named file in ``directory``."""
    return {name: FileDigest(sha256=sha256_file(Path(directory) / name)) for name in names}


def load_bundle(directory: Path) -> Bundle:
    """Read and validate ``directory/bundle.json`` and check every listed file's sha256.

    Raises ``InvalidBundle`` with a one-line message; never returns a bundle whose files differ
    from what it promises.
    """
    directory = Path(directory)
    try:
        raw = (directory / BUNDLE_FILE).read_bytes()
        bundle = Bundle.model_validate_json(raw)
    except OSError as exc:
        raise InvalidBundle(f"{directory}: cannot read {BUNDLE_FILE}: {exc.strerror}") from exc
    except ValidationError as exc:
        raise InvalidBundle(f"{directory}: {BUNDLE_FILE} is invalid: {_one_line(exc)}") from exc
    _check_digests(directory, bundle)
    return bundle


def write_bundle(directory: Path, bundle: Bundle) -> Path:
    """Write ``bundle.json`` into ``directory`` (which already holds the ONNX files) after checking
    that the files match the bundle's digests; returns the path written.

    The file is written to a temporary name and renamed, so a service reloading at the same
    moment sees either no bundle.json or a complete one.
    """
    directory = Path(directory)
    _check_digests(directory, bundle)
    path = directory / BUNDLE_FILE
    temporary = directory / f".{BUNDLE_FILE}.tmp"
    temporary.write_text(json.dumps(bundle.model_dump(mode="json"), indent=2) + "\n")
    os.replace(temporary, path)
    return path


def _check_digests(directory: Path, bundle: Bundle) -> None:
    for file_name, expected in bundle.files.items():
        path = directory / file_name
        if not path.is_file():
            raise InvalidBundle(f"{directory}: {file_name} is listed in {BUNDLE_FILE} but missing")
        actual = sha256_file(path)
        if actual != expected.sha256:
            raise InvalidBundle(
                f"{directory}: {file_name} has sha256 {actual[:12]}..., "
                f"{BUNDLE_FILE} promises {expected.sha256[:12]}...; re-export the bundle"
            )


def _one_line(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'bundle'}: {item['msg']}"
        for item in error.errors()
    )
