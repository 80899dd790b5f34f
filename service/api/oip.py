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
from service.api.deps import (
    NAME_SCHEMA,
    VERSION_SCHEMA,
    DocumentedRoute,
    NameParam,
    RegistryDep,
    VersionParam,
    error_responses,
)
from service.api.exchange import Exchange, Reply
from service.codecs import (
    binary_body_from_parts,
    checked_name,
    checked_version,
    json_bytes,
    split_binary_body,
    tensor_from_binary,
    tensor_from_json,
)
from service.errors import BadInput
from service.oip import (
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataServerResponse,
    MetadataTensor,
    RequestInput,
)
from service.registry import ModelRegistry
from service.runtime import OnnxModel
from service.schemas import Readiness
from service.scoring import Scorer, ScoreResult

__all__ = ["infer", "router"]

router = APIRouter(prefix="/v2", tags=["open inference protocol"])

HEADER_LENGTH = "Inference-Header-Content-Length"
TRIGGER_PREFIX = "trigger_"
EXTENSIONS = ["binary_tensor_data"]


@router.get("/health/live", responses=error_responses())
async def live() -> dict[str, bool]:
    """The process answers."""
    return {"live": True}


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={
        **error_responses(),
        503: {"model": Readiness, "description": "Not ready; `reason` says why."},
    },
)
async def ready(registry: RegistryDep) -> Response:
    """Strict readiness (unless ``NAE_STRICT_READINESS=false``): 200 when the models directory
    exists, at least one bundle is loaded and none was refused at the last load; else 503 with
    the reason. Not strict: 200 once the directory has been read."""
    reason = registry.readiness()
    if reason is None:
        return Response(json_bytes({"ready": True}), media_type="application/json")
    content = json_bytes({"ready": False, "reason": reason})
    return Response(content, status_code=503, media_type="application/json")


@router.get("", response_model=MetadataServerResponse, responses=error_responses())
async def server_metadata() -> MetadataServerResponse:
    """Server name, version and the protocol extensions it speaks."""
    return MetadataServerResponse(name="nae-trigger", version=__version__, extensions=EXTENSIONS)


@router.get(
    "/models/{name}",
    response_model=MetadataModelResponse,
    response_model_exclude_none=True,
    responses=error_responses(400, 404),
)
async def model_metadata(name: NameParam, registry: RegistryDep) -> MetadataModelResponse:
    """Metadata of the default (highest) version of bundle ``name``."""
    return _metadata(registry.resolve(checked_name(name, what="model name")), registry)


@router.get(
    "/models/{name}/versions/{version}",
    response_model=MetadataModelResponse,
    response_model_exclude_none=True,
    responses=error_responses(400, 404),
)
async def model_version_metadata(
    name: NameParam, version: VersionParam, registry: RegistryDep
) -> MetadataModelResponse:
    """Metadata of one version of bundle ``name``."""
    model = registry.resolve(checked_name(name, what="model name"), checked_version(version))
    return _metadata(model, registry)


@router.get("/models/{name}/ready", responses=error_responses(400, 404))
async def model_ready(name: NameParam, registry: RegistryDep) -> dict[str, Any]:
    """200 when bundle ``name`` is loaded, 404 otherwise."""
    model = registry.resolve(checked_name(name, what="model name"))
    return {"name": model.name, "version": str(model.version), "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=error_responses(400, 404))
async def model_version_ready(
    name: NameParam, version: VersionParam, registry: RegistryDep
) -> dict[str, Any]:
    """200 when this version of bundle ``name`` is loaded, 404 otherwise."""
    model = registry.resolve(checked_name(name, what="model name"), checked_version(version))
    return {"name": model.name, "version": str(model.version), "ready": True}


def _document_infer(path: str, name: str, *path_parameters: str) -> None:
    """Declare a scoring route, served by ``ScoringApp``, for the OpenAPI document: the body
    is an ``InferenceRequest`` in JSON, or (Triton's binary tensor extension) that JSON
    followed by the tensor bytes, with the JSON's length in ``Inference-Header-Content-Length``."""

    async def documented(request: InferenceRequest) -> None:
        """Score with the default (highest) version of bundle ``name``, or with the version
        the path names. Binary tensors (Triton's extension) or JSON tensors."""

    schemas = {"name": NAME_SCHEMA, "version": VERSION_SCHEMA}
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schemas[name]}
        for name in path_parameters
    ]
    parameters.append(
        {
            "name": HEADER_LENGTH,
            "in": "header",
            "required": False,
            "description": "Bytes of JSON before the binary tensors (binary bodies only; an "
            "empty header is no header: uvicorn drops it).",
            "schema": {"type": "string", "pattern": "^([0-9]{1,18})?$"},
        }
    )
    binary = {"schema": {"type": "string", "format": "binary"}}
    router.add_api_route(
        path,
        documented,
        name=name,
        methods=["POST"],
        route_class_override=DocumentedRoute,
        response_model=InferenceResponse,
        response_model_exclude_none=True,
        responses={
            200: {
                "description": "The outputs: JSON, or JSON then binary tensors "
                "(`Inference-Header-Content-Length` gives the JSON's length).",
                "content": {"application/octet-stream": binary},
            },
            **error_responses(400, 404, 413, 415, 422, 503),
        },
        openapi_extra={
            "parameters": parameters,
            "requestBody": {"content": {"application/octet-stream": binary}},
        },
    )


_document_infer("/models/{name}/infer", "infer", "name")
_document_infer("/models/{name}/versions/{version}/infer", "infer_version", "name", "version")


async def infer(scorer: Scorer, exchange: Exchange) -> Reply:
    """``POST /v2/models/{name}[/versions/{version}]/infer``. Everything in the request
    (outputs and their parameters included) is checked before the batch is scored, so a
    refused request is never counted."""
    params = exchange.path_params
    version = params.get("version")
    model = scorer.resolve(
        checked_name(params["name"], what="model name"),
        None if version is None else checked_version(version),
    )
    body = await exchange.body(scorer.settings.max_body_bytes)
    header, binary = split_binary_body(body, exchange.header(HEADER_LENGTH.lower()))
    try:
        inference = InferenceRequest.model_validate(header)
    except ValidationError as exc:
        raise BadInput(f"invalid inference request: {_first_error(exc)}") from exc
    wanted = _wanted_outputs(inference, model)
    x = _input_array(model, inference.inputs, binary)
    result = await scorer.score(model, x)
    return _reply(result, wanted, inference.id)


def _input_array(model: OnnxModel, inputs: list[RequestInput], binary: memoryview) -> np.ndarray:
    expected = model.bundle.input.name
    if [tensor.name for tensor in inputs] != [expected]:
        names = [tensor.name[:40] for tensor in inputs[:4]]
        raise BadInput(f"model {model.name!r} takes one input {expected!r}, got {names}")
    tensor = inputs[0]
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is None:
        if len(binary):
            raise BadInput(
                f"{len(binary)} bytes follow the JSON header, but input {tensor.name!r} "
                "declares no parameters.binary_data_size"
            )
        return tensor_from_json(tensor.name, tensor.shape, tensor.datatype, tensor.data)
    if type(size) is not int or size != len(binary):
        raise BadInput(
            f"input {tensor.name!r}: binary_data_size {str(size)[:40]} does not match the "
            f"{len(binary)} bytes after the JSON header"
        )
    return tensor_from_binary(tensor.name, tensor.shape, tensor.datatype, binary)


def _reply(result: ScoreResult, wanted: list[tuple[str, bool]], request_id: str | None) -> Reply:
    model = result.model
    available = {model.bundle.output.name: result.scores} | {
        TRIGGER_PREFIX + name: fired for name, fired in result.triggers.items()
    }
    outputs, buffers = [], []
    for name, as_binary in wanted:
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
    if request_id is not None:
        header["id"] = request_id
    if not buffers:
        return Reply(json_bytes(header))
    content, header_length = binary_body_from_parts(header, buffers)
    return Reply(
        content, "application/octet-stream", headers=((HEADER_LENGTH, str(header_length)),)
    )


def _wanted_outputs(inference: InferenceRequest, model: OnnxModel) -> list[tuple[str, bool]]:
    """(output name, as binary) pairs: the requested outputs, or all of them when none are;
    an unknown output or a non-boolean ``binary_data`` is refused here, before scoring."""
    available = [model.bundle.output.name, *(TRIGGER_PREFIX + wp for wp in model.working_points)]
    all_binary = _flag(inference.parameters, "binary_data_output", default=False)
    if not inference.outputs:
        return [(name, all_binary) for name in available]
    wanted = []
    for output in inference.outputs:
        if output.name not in available:
            raise BadInput(f"unknown output {output.name[:60]!r}; this model has {available}")
        wanted.append((output.name, _flag(output.parameters, "binary_data", default=all_binary)))
    return wanted


def _flag(parameters: dict[str, Any] | None, key: str, *, default: bool) -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise BadInput(f"parameter {key} must be true or false, got {str(value)[:40]}")
    return value


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


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    return f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
