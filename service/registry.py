"""``ModelRegistry``: every bundle version under the models directory, swapped atomically.

The loaded set is one immutable ``ModelSet``; a request reads the reference once and keeps its
``OnnxModel`` (and session) alive until it is done, so a reload never fails an in-flight request.
A reload builds a complete new set off to the side and then replaces the reference in one
assignment. A bundle that is refused on reload but was served before keeps being served
(contract 2: "keeps serving what it had"). Any failure while loading one bundle (schema, hash,
ONNX Runtime session, test run, or anything unforeseen) refuses that bundle alone.

Readiness is strict by default (as Triton's ``--strict-readiness``): ready only after a load
found the models directory, loaded at least one bundle and refused none. Not strict: ready
once the directory has been read, whatever it held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from service.bundle import BUNDLE_FILE, InvalidBundle, ModelChoice, load_bundle
from service.errors import BadInput, ModelNotFound, ReloadFailed
from service.runtime import OnnxModel

__all__ = ["LoadReport", "ModelRegistry", "ModelSet"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSet:
    """An immutable snapshot: bundle name -> version -> model."""

    versions: dict[str, dict[int, OnnxModel]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[OnnxModel]:
        for by_version in self.versions.values():
            yield from by_version.values()

    def __len__(self) -> int:
        return sum(len(by_version) for by_version in self.versions.values())


@dataclass(frozen=True)
class LoadReport:
    """What a (re)load did: ``loaded`` and ``kept`` are ``name/version``; ``refused`` maps a
    bundle directory, relative to the models directory (``name/version``), to the one-line
    reason. No server path appears in it: the admin endpoint returns it."""

    loaded: list[str]
    kept: list[str]
    refused: dict[str, str]


class ModelRegistry:
    """Loads bundles from ``models_dir`` and resolves ``(name, version)`` to an ``OnnxModel``."""

    def __init__(
        self,
        models_dir: Path,
        *,
        default_model: str | None = None,
        intra_op_threads: int = 1,
        model_file: ModelChoice = "recommended",
        strict_readiness: bool = True,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.default_model = default_model
        self.strict_readiness = strict_readiness
        self._intra_op_threads = intra_op_threads
        self._model_file: ModelChoice = model_file
        self._models = ModelSet()
        self._reload_lock = threading.Lock()
        self.loaded_once = False
        self._directory_found = False
        self._refused: list[str] = []  # name/version refused by the last load

    @property
    def models(self) -> ModelSet:
        """The current snapshot; read it once per request."""
        return self._models

    def load(self) -> LoadReport:
        """(Re)load every bundle and swap the set in. A missing models directory is an empty
        set at start-up, but on a reload it keeps the old set (``ReloadFailed``)."""
        with self._reload_lock:
            self._directory_found = self.models_dir.is_dir()
            if not self._directory_found and self.loaded_once:
                logger.error("reload: models directory %s is missing", self.models_dir)
                raise ReloadFailed(
                    "the models directory is missing; "
                    f"still serving the {len(self._models)} loaded bundles"
                )
            if not self._directory_found:
                logger.warning("models directory %s is missing: no bundle", self.models_dir)
            old = self._models
            versions, refused = self._scan()
            kept = []
            for model in old:
                served = versions.get(model.name, {})
                if model.version not in served and _still_on_disk(self.models_dir, model):
                    served[model.version] = model
                    versions[model.name] = served
                    kept.append(f"{model.name}/{model.version}")
            self._models = ModelSet(versions)
            self._refused = sorted(refused)
            self.loaded_once = True
        loaded = [
            f"{m.name}/{m.version}" for m in self._models if f"{m.name}/{m.version}" not in kept
        ]
        logger.info(
            "bundles: %d loaded, %d kept from before, %d refused",
            len(loaded),
            len(kept),
            len(refused),
        )
        return LoadReport(loaded=sorted(loaded), kept=sorted(kept), refused=refused)

    def readiness(self) -> str | None:
        """``None`` when ready to serve, else why not (one line, no server path)."""
        if not self.loaded_once:
            return "bundles are still loading"
        if not self.strict_readiness:
            return None
        if not self._directory_found:
            return "the models directory is missing"
        if self._refused:
            return (
                f"{len(self._refused)} bundle(s) refused at the last load: "
                f"{', '.join(self._refused)} (the reasons are in the log and in the answer of "
                "POST /admin/reload)"
            )
        if not len(self._models):
            return "no bundle is loaded"
        return None

    def resolve(self, name: str | None, version: int | None = None) -> OnnxModel:
        """The model for ``name`` (default bundle when None) at ``version`` (highest when None)."""
        models = self._models
        name = name or self._default_name(models)
        by_version = models.versions.get(name)
        if by_version is None:
            raise ModelNotFound(f"no bundle named {name!r}; loaded: {_names(models)}")
        if version is None:
            return by_version[max(by_version)]
        model = by_version.get(version)
        if model is None:
            raise ModelNotFound(
                f"bundle {name!r} has no version {version}; loaded versions: {sorted(by_version)}"
            )
        return model

    def _default_name(self, models: ModelSet) -> str:
        if self.default_model:
            return self.default_model
        if len(models.versions) == 1:
            return next(iter(models.versions))
        if not models.versions:
            raise ModelNotFound(
                "no bundle is loaded: ship one (nae export RUN --out models/NAME/VERSION) "
                "and reload"
            )
        raise BadInput(f"name a model: several bundles are loaded: {_names(models)}")

    def _scan(self) -> tuple[dict[str, dict[int, OnnxModel]], dict[str, str]]:
        versions: dict[str, dict[int, OnnxModel]] = {}
        refused: dict[str, str] = {}
        for directory in _bundle_directories(self.models_dir):
            where = directory.relative_to(self.models_dir).as_posix()
            try:
                model = self._load_one(directory)
            except Exception as exc:  # anything that fails one bundle refuses that bundle only
                reason = str(exc) if isinstance(exc, InvalidBundle) else _unforeseen(directory, exc)
                logger.error("refusing bundle %s", _one_line(reason))
                refused[where] = _one_line(reason.removeprefix(f"{directory}: ")).replace(
                    str(self.models_dir), "<models>"
                )
                continue
            versions.setdefault(model.name, {})[model.version] = model
        return versions, refused

    def _load_one(self, directory: Path) -> OnnxModel:
        bundle = load_bundle(directory)
        if (directory.parent.name, directory.name) != (bundle.name, str(bundle.version)):
            raise InvalidBundle(
                f"{directory}: bundle.json says {bundle.name}/{bundle.version}; "
                f"move it to {bundle.name}/{bundle.version}/"
            )
        return OnnxModel(
            bundle,
            directory,
            intra_op_threads=self._intra_op_threads,
            model_file=self._model_file,
        )


def _bundle_directories(models_dir: Path) -> list[Path]:
    """Every ``<name>/<version>/`` holding a bundle.json, in a stable order."""
    if not models_dir.is_dir():
        return []
    return sorted(path.parent for path in models_dir.glob(f"*/*/{BUNDLE_FILE}"))


def _still_on_disk(models_dir: Path, model: OnnxModel) -> bool:
    """A served bundle refused on reload is kept only while its directory still exists; a
    deleted bundle is unloaded."""
    return (models_dir / model.name / str(model.version) / BUNDLE_FILE).is_file()


def _names(models: ModelSet) -> list[str]:
    return sorted(models.versions)


def _unforeseen(directory: Path, exc: Exception) -> str:
    return f"{directory}: unexpected {type(exc).__name__} while loading: {exc}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
