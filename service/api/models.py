"""``GET /models`` and ``GET /models/{name}``: what is served, with versions, working points and
evaluation metrics from each bundle.json."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import NameParam, RegistryDep, error_responses
from service.bundle import MODEL_FILE
from service.codecs import checked_name
from service.errors import ModelNotFound
from service.registry import ModelRegistry
from service.schemas import ModelSummary, VersionSummary

__all__ = ["router"]

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=list[ModelSummary], responses=error_responses())
async def list_models(registry: RegistryDep) -> list[ModelSummary]:
    """Every loaded bundle name with its versions."""
    return [_summary(registry, name) for name in sorted(registry.models.versions)]


@router.get("/{name}", response_model=ModelSummary, responses=error_responses(400, 404))
async def get_model(name: NameParam, registry: RegistryDep) -> ModelSummary:
    """One bundle name with its versions."""
    name = checked_name(name, what="model name") or ""
    if name not in registry.models.versions:
        raise ModelNotFound(f"no bundle named {name!r}; loaded: {sorted(registry.models.versions)}")
    return _summary(registry, name)


def _summary(registry: ModelRegistry, name: str) -> ModelSummary:
    by_version = registry.models.versions[name]
    versions = []
    for version in sorted(by_version):
        bundle = by_version[version].bundle
        versions.append(
            VersionSummary(
                version=version,
                kind=bundle.kind,
                input_shape=bundle.input.shape,
                features=bundle.input.features,
                sha256=bundle.files[MODEL_FILE].sha256,
                reference_rate_hz=bundle.reference_rate_hz,
                working_points=bundle.working_points,
                metrics=bundle.metrics,
            )
        )
    return ModelSummary(name=name, default_version=max(by_version), versions=versions)
