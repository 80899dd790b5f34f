"""Open Inference Protocol (KServe V2) REST, with Triton's binary tensor extension, so that
``tritonclient.http`` and KServe clients work unchanged.

A bundle is a V2 model with one input (``bundle.input.name``, FP32 ``[-1, *shape]``) and the
outputs ``score`` (FP32 ``[-1]``) plus one BOOL ``[-1]`` output ``trigger_<working point>`` per
working point. Outputs go out as binary tensors when the request asks for it (per output
``parameters.binary_data`` or request ``parameters.binary_data_output``), as JSON otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Response
from pydantic import ValidationError

from service import __version__
from service.api.deps import DocumentedRoute, RegistryDep
from service.api.exchange import Exchange, Reply
from service.codecs import (
    binary_body_from_parts,
    json_bytes,
    split_binary_body,
    tensor_from_binary,
    tensor_from_json,
)
from service.errors import BadInput, ModelNotFound
from service.oip import (
    InferenceRequest,
    MetadataModelResponse,
    MetadataServerResponse,
    MetadataTensor,
    RequestInput,
)
from service.registry import ModelRegistry
from service.runtime import OnnxModel
from service.scoring import Scorer, ScoreResult

__all__ = ["infer", "router"]

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

HEADER_LENGTH = "Inference-Header-Content-Length"
TRIGGER_PREFIX = "trigger_"
EXTENSIONS = ["binary_tensor_data"]


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """The process answers."""
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "bundles are still loading"}})
async def ready(registry: RegistryDep) -> Response:
    """Ready once the models directory has been loaded (even when it holds no bundle)."""
    if registry.ready:
        return Response(json_bytes({"ready": True}), media_type="application/json")
    return Response(json_bytes({"ready": False}), status_code=503, media_type="application/json")


@router.get("", response_model=MetadataServerResponse)
async def server_metadata() -> MetadataServerResponse:
    """Server name, version and the protocol extensions it speaks."""
    return MetadataServerResponse(name="nae-trigger", version=__version__, extensions=EXTENSIONS)


@router.get(
    "/models/{name}", response_model=MetadataModelResponse, response_model_exclude_none=True
)
async def model_metadata(name: str, registry: RegistryDep) -> MetadataModelResponse:
    """Metadata of the default (highest) version of bundle ``name``."""
    return _metadata(registry.resolve(name), registry)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=MetadataModelResponse,
    response_model_exclude_none=True,
)
async def model_version_metadata(
    name: str, version: str, registry: RegistryDep
) -> MetadataModelResponse:
    """Metadata of one version of bundle ``name``."""
    return _metadata(registry.resolve(name, _version(version)), registry)


@router.get("/models/{name}/ready")
async def model_ready(name: str, registry: RegistryDep) -> dict[str, Any]:
    """200 when bundle ``name`` is loaded, 404 otherwise."""
    model = registry.resolve(name)
    return {"name": model.name, "version": str(model.version), "ready": True}


@router.get("/models/{name}/versions/{version}/ready")
async def model_version_ready(name: str, version: str, registry: RegistryDep) -> dict[str, Any]:
    """200 when this version of bundle ``name`` is loaded, 404 otherwise."""
    model = registry.resolve(name, _version(version))
    return {"name": model.name, "version": str(model.version), "ready": True}


def _document_infer(path: str, name: str, *path_parameters: str) -> None:
    """Declare a scoring route, served by ``ScoringApp``, for the OpenAPI document."""

    async def documented() -> None:
        """Score with the default (highest) version of bundle ``name``, or with the version
        the path names. Binary tensors (Triton's extension) or JSON tensors."""

    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in path_parameters
    ]
    router.add_api_route(
        path,
        documented,
        name=name,
        methods=["POST"],
        route_class_override=DocumentedRoute,
        openapi_extra={"parameters": parameters},
    )


_document_infer("/models/{name}/infer", "infer", "name")
_document_infer("/models/{name}/versions/{version}/infer", "infer_version", "name", "version")


async def infer(scorer: Scorer, exchange: Exchange) -> Reply:
    """``POST /v2/models/{name}[/versions/{version}]/infer``."""
    params = exchange.path_params
    version = params.get("version")
    model = scorer.resolve(params["name"], None if version is None else _version(version))
    if (exchange.header("content-encoding") or "identity") != "identity":
        raise BadInput("compressed request bodies are not supported; send them uncompressed")
    body = await exchange.body(scorer.settings.max_body_bytes)
    header, binary = split_binary_body(body, exchange.header(HEADER_LENGTH.lower()))
    try:
        inference = InferenceRequest.model_validate(header)
    except ValidationError as exc:
        raise BadInput(f"invalid inference request: {_first_error(exc)}") from exc
    x = _input_array(model, inference.inputs, binary)
    result = await scorer.score(model, x)
    return _reply(result, inference)


def _input_array(model: OnnxModel, inputs: list[RequestInput], binary: memoryview) -> np.ndarray:
    expected = model.bundle.input.name
    if [tensor.name for tensor in inputs] != [expected]:
        raise BadInput(
            f"model {model.name!r} takes one input {expected!r}, "
            f"got {[tensor.name for tensor in inputs]}"
        )
    tensor = inputs[0]
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        return tensor_from_json(tensor.name, tensor.shape, tensor.datatype, tensor.data)
    if not isinstance(size, int) or size != len(binary):
        raise BadInput(
            f"input {tensor.name!r}: binary_data_size {size} does not match the "
            f"{len(binary)} bytes after the JSON header"
        )
    return tensor_from_binary(tensor.name, tensor.shape, tensor.datatype, binary)


def _reply(result: ScoreResult, inference: InferenceRequest) -> Reply:
    model = result.model
    available = {model.bundle.output.name: result.scores} | {
        TRIGGER_PREFIX + name: fired for name, fired in result.triggers.items()
    }
    outputs, buffers = [], []
    for name, as_binary in _wanted_outputs(inference, list(available)):
        if name not in available:
            raise BadInput(f"unknown output {name!r}; this model has {sorted(available)}")
        array = available[name]
        output: dict[str, Any] = {
            "name": name,
            "datatype": "BOOL" if array.dtype == np.bool_ else "FP32",
            "shape": list(array.shape),
        }
        if as_binary:
            buffers.append(array.tobytes())
            output["parameters"] = {"binary_data_size": len(buffers[-1])}
        else:
            output["data"] = array
        outputs.append(output)
    header = {"model_name": model.name, "model_version": str(model.version), "outputs": outputs}
    if inference.id is not None:
        header["id"] = inference.id
    if not buffers:
        return Reply(json_bytes(header))
    content, header_length = binary_body_from_parts(header, buffers)
    return Reply(
        content, "application/octet-stream", headers=((HEADER_LENGTH, str(header_length)),)
    )


def _wanted_outputs(inference: InferenceRequest, available: list[str]) -> list[tuple[str, bool]]:
    """(output name, as binary) pairs: the requested outputs, or all of them when none are."""
    all_binary = bool((inference.parameters or {}).get("binary_data_output", False))
    if not inference.outputs:
        return [(name, all_binary) for name in available]
    return [
        (output.name, bool((output.parameters or {}).get("binary_data", all_binary)))
        for output in inference.outputs
    ]


def _metadata(model: OnnxModel, registry: ModelRegistry) -> MetadataModelResponse:
    versions = registry.models.versions.get(model.name, {})
    bundle = model.bundle
    outputs = [MetadataTensor(name=bundle.output.name, datatype="FP32", shape=[-1])] + [
        MetadataTensor(name=TRIGGER_PREFIX + name, datatype="BOOL", shape=[-1])
        for name in model.working_points
    ]
    return MetadataModelResponse(
        name=model.name,
        versions=[str(version) for version in sorted(versions)],
        platform="onnxruntime_onnx",
        inputs=[
            MetadataTensor(name=bundle.input.name, datatype="FP32", shape=[-1, *bundle.input.shape])
        ],
        outputs=outputs,
    )


def _version(version: str) -> int:
    try:
        return int(version)
    except ValueError as exc:
        raise ModelNotFound(f"model version must be an integer, got {version!r}") from exc


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    return f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
