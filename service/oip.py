"""Open Inference Protocol (KServe V2) REST types, field for field from the kserve spec
(https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol), as
MLServer's ``types/dataplane.py`` has them. ``data`` stays ``Any``: pydantic never walks a large
tensor, the codecs turn it into numpy.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = [
    "InferenceRequest",
    "InferenceResponse",
    "MetadataModelResponse",
    "MetadataServerResponse",
    "MetadataTensor",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
]

Parameters = dict[str, Any]


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class MetadataServerResponse(_Message):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class MetadataTensor(_Message):
    """One input or output of a model; ``-1`` marks a dynamic axis."""

    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None


class MetadataModelResponse(_Message):
    """``GET /v2/models/{name}[/versions/{v}]``."""

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor] | None = None
    outputs: list[MetadataTensor] | None = None
    parameters: Parameters | None = None


class RequestInput(_Message):
    """An input tensor: JSON ``data`` or ``parameters.binary_data_size`` bytes after the header."""

    name: str
    shape: list[StrictInt] = Field(min_length=1)
    datatype: str
    parameters: Parameters | None = None
    data: Any = None


class RequestOutput(_Message):
    """A requested output; ``parameters.binary_data`` asks for it as a binary tensor."""

    name: str
    parameters: Parameters | None = None


class InferenceRequest(_Message):
    """``POST /v2/models/{name}[/versions/{v}]/infer``."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Message):
    """An output tensor: JSON ``data`` or ``parameters.binary_data_size`` bytes after the header."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: Any = None


class InferenceResponse(_Message):
    """The answer to an inference request."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]
