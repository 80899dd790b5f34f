"""Request and response bodies <-> numpy arrays, with the cheap checks that keep bad input out.

Decoders never create one Python object per number where the format allows it: binary bodies
(``.npy``, raw float32, Triton binary tensors) become arrays with ``np.frombuffer`` without a
copy, and JSON goes through orjson straight into ``np.array``. Every problem raises ``BadInput``
(or ``PayloadTooLarge``) with a message that names it.

``/score`` JSON bodies first try a faster path (``score_json_fast``): simdjson parses the body
and copies the numbers of ``inputs`` into one float64 buffer, about 4x faster than orjson plus
``np.array``. That buffer flattens ragged arrays, so the shape is checked exactly: the candidate
shape comes from the first-element chain (``len(a)``, ``len(a[0])``, ...), and the body's
structural skeleton (every byte but ``[``, ``]`` and ``,`` deleted) must equal the skeleton of
that shape. The skeleton is taken from the whole body, so the path only accepts bodies whose
other members are scalars without those characters; anything else, and every error, returns
``None`` and the caller uses the orjson path, whose checks and messages are the reference.

Raw float32 bodies (``Content-Type: application/octet-stream``) are the array's bytes in
C order, little-endian float32, with the full shape including the batch axis in a header:
``X-Shape: 100,19,4``.
"""

from __future__ import annotations

import functools
import io
import math
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from service.errors import BadInput, PayloadTooLarge

__all__ = [
    "NPY_MEDIA_TYPE",
    "RAW_MEDIA_TYPE",
    "SHAPE_HEADER",
    "array_from_json",
    "array_from_npy",
    "array_from_raw",
    "binary_body_from_parts",
    "check_batch",
    "json_bytes",
    "json_from_body",
    "npy_bytes",
    "score_json_fast",
    "split_binary_body",
    "tensor_from_binary",
    "tensor_from_json",
]

NPY_MEDIA_TYPE = "application/x-npy"
RAW_MEDIA_TYPE = "application/octet-stream"
SHAPE_HEADER = "x-shape"
FLOAT32_LE = np.dtype("<f4")


def json_from_body(body: bytes | memoryview) -> Any:
    """Parse a JSON body with orjson; malformed JSON names orjson's position."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"malformed JSON body: {exc}") from exc


def json_bytes(content: Any) -> bytes:
    """Serialize a response; numpy arrays go out without a ``tolist()`` round trip."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def array_from_json(values: Any, *, what: str = "inputs") -> np.ndarray:
    """A (nested) JSON list of numbers -> float32 array. Ragged lists, strings, booleans and
    nulls are refused rather than coerced."""
    if not isinstance(values, list):
        raise BadInput(f"{what} must be a JSON array of numbers, got {type(values).__name__}")
    try:
        array = np.array(values)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{what} is ragged: every event must have the same shape") from exc
    if array.dtype.kind not in "fiu" and array.size:
        raise BadInput(f"{what} must hold only numbers (found {_kind_name(array.dtype)})")
    return array.astype(np.float32, copy=False)


def score_json_fast(body: bytes | memoryview) -> tuple[Any, np.ndarray] | None:
    """``(model, float32 inputs)`` of a well-formed ``{"model": ..., "inputs": [...]}`` body, or
    ``None`` when the body is anything else (malformed, ragged, non-numbers, out-of-range
    numbers, duplicate keys, non-scalar members...): then ``json_from_body`` and
    ``array_from_json`` must decode it and name the problem."""
    try:
        doc = _parse(body)
        if not isinstance(doc, simdjson.Object):
            return None
        keys = list(doc.keys())
        if "inputs" not in keys or len(set(keys)) != len(keys):
            return None
        others = [(key, doc[key]) for key in keys if key != "inputs"]
        if any(_has_structure(item) for pair in others for item in pair):
            return None
        inputs = doc["inputs"]
        shape = _first_element_shape(inputs)
        values = np.frombuffer(inputs.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError, KeyError):
        return None
    skeleton = bytes(body).translate(None, _NOT_STRUCTURE).strip(b",")
    if values.size != math.prod(shape) or skeleton != _skeleton(shape):
        return None
    return dict(others).get("model"), values.astype(np.float32).reshape(shape)


_PARSERS = threading.local()
_REUSE_MAX_BYTES = 16 * 1024 * 1024


def _parse(body: bytes | memoryview) -> Any:
    """Parse with this thread's reused ``simdjson.Parser``: a fresh one allocates (and the
    kernel zero-fills) buffers the size of the body, 2.4x the parse time at 10,000 events.
    A parser keeps the buffers of the largest body it parsed, so bodies above
    ``_REUSE_MAX_BYTES`` get a parser of their own. A parser cannot parse again while a
    document of its last parse is alive; ``score_json_fast`` keeps none."""
    if len(body) > _REUSE_MAX_BYTES:
        return simdjson.Parser().parse(body)
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = simdjson.Parser()
    return parser.parse(body)


_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b"[],")))


def _has_structure(item: Any) -> bool:
    """Whether a key or value other than ``inputs`` would add to the body's skeleton."""
    if isinstance(item, str):
        return any(char in item for char in "[],")
    return not (item is None or isinstance(item, bool | int | float))


def _first_element_shape(array: Any) -> tuple[int, ...]:
    if not isinstance(array, simdjson.Array):
        raise TypeError("inputs is not an array")
    shape = []
    while isinstance(array, simdjson.Array):
        shape.append(len(array))
        if not shape[-1]:
            break
        array = array[0]
    return tuple(shape)


@functools.lru_cache(maxsize=16)  # a 10,000-event skeleton is ~1.3 MB
def _skeleton(shape: tuple[int, ...]) -> bytes:
    """``[``, ``]`` and ``,`` of a JSON array of numbers with this shape: (2, 3) -> [[,,],[,,]]."""
    text = "[" + "," * (shape[-1] - 1) + "]" if shape[-1] else "[]"
    for dim in reversed(shape[:-1]):
        text = "[" + ",".join([text] * dim) + "]"
    return text.encode()


def array_from_npy(body: bytes | memoryview) -> np.ndarray:
    """An ``.npy`` body -> float32 array without copying the data."""
    offset = _npy_data_offset(body)
    try:
        shape, fortran_order, dtype = _npy_header(bytes(body[:offset]))
    except (ValueError, SyntaxError) as exc:
        raise BadInput(f"body is not a valid .npy file: {exc}") from exc
    if dtype.kind != "f" or dtype.itemsize != 4:
        raise BadInput(f".npy array has dtype {dtype}; send float32 (np.float32)")
    count = math.prod(shape)
    if len(body) - offset != count * 4:
        raise BadInput(
            f".npy header promises shape {list(shape)} ({count * 4} bytes of data), "
            f"body holds {len(body) - offset}"
        )
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    if fortran_order:
        array = np.ascontiguousarray(array.reshape(shape[::-1]).T)
    return array.reshape(shape).astype(FLOAT32_LE, copy=False)


def _npy_data_offset(body: bytes | memoryview) -> int:
    """Where the data starts: after the magic, the version, the header length and the header
    (format versions 1: 2-byte length; 2 and 3: 4-byte length). A body too short for it gives
    an offset that ``_npy_header`` then refuses."""
    if len(body) < 10:
        return len(body)
    if body[6] == 1:
        return 10 + int.from_bytes(body[8:10], "little")
    return 12 + int.from_bytes(body[8:12], "little")


@functools.lru_cache(maxsize=64)
def _npy_header(prefix: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of an ``.npy`` header. numpy parses the header as a
    Python literal (~45 us); clients repeat the same few headers, so they are cached."""
    stream = io.BytesIO(prefix)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream)
    return np.lib.format.read_array_header_2_0(stream)


def array_from_raw(body: bytes | memoryview, shape_header: str | None) -> np.ndarray:
    """Raw little-endian float32 bytes with ``X-Shape: N,d1,d2`` -> array, without a copy."""
    if not shape_header:
        raise BadInput(
            "raw float32 body needs its shape in a header, e.g. 'X-Shape: 100,19,4' "
            "(or send application/x-npy or JSON)"
        )
    try:
        shape = tuple(int(dim) for dim in shape_header.split(","))
    except ValueError as exc:
        raise BadInput(f"X-Shape {shape_header!r} must be comma-separated integers") from exc
    if any(dim < 0 for dim in shape):
        raise BadInput(f"X-Shape {shape_header!r} has a negative dimension")
    count = math.prod(shape)
    if len(body) != count * 4:
        raise BadInput(
            f"X-Shape {shape_header} needs {count * 4} bytes of float32, body has {len(body)}"
        )
    return np.frombuffer(body, dtype=FLOAT32_LE).reshape(shape)


def check_batch(x: np.ndarray, input_shape: tuple[int, ...], *, max_batch_size: int) -> np.ndarray:
    """Refuse a batch the model must not see: wrong per-event shape, empty, too many events,
    or any NaN/infinity (naming the first offending event). Returns a C-contiguous float32 array
    ``(N, *input_shape)``."""
    if x.ndim >= 1 and x.shape[0] == 0:
        raise BadInput("empty batch: send at least one event")
    if x.shape == input_shape:
        raise BadInput(
            f"inputs have shape {list(x.shape)}, which is one event without the batch axis: "
            f"send [event, ...] with shape [N, {', '.join(map(str, input_shape))}]"
        )
    if x.ndim != len(input_shape) + 1 or x.shape[1:] != input_shape:
        raise BadInput(
            f"inputs have shape {list(x.shape)}; this model takes "
            f"[N, {', '.join(map(str, input_shape))}]"
        )
    n_events = x.shape[0]
    if n_events > max_batch_size:
        raise PayloadTooLarge(
            f"batch of {n_events} events exceeds the limit of {max_batch_size}; split the request"
        )
    if not np.isfinite(x).all():
        finite_rows = np.isfinite(x.reshape(n_events, -1)).all(axis=1)
        row = int(np.argmin(finite_rows))
        raise BadInput(f"inputs hold NaN or infinity, first in event {row} (0-based)")
    return np.ascontiguousarray(x, dtype=np.float32)


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as an ``.npy`` body (C order; the header is built once per dtype and shape)."""
    array = np.ascontiguousarray(array)
    return _npy_header_bytes(array.dtype, array.shape) + array.tobytes()


@functools.lru_cache(maxsize=64)
def _npy_header_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    stream = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue()


def split_binary_body(
    body: bytes | memoryview, header_length: str | None
) -> tuple[Any, memoryview]:
    """Triton's binary tensor extension: the first ``Inference-Header-Content-Length`` bytes
    are the JSON request, the rest the concatenated binary tensors. Without the header the
    whole body is JSON."""
    if header_length is None:
        return json_from_body(body), memoryview(b"")
    try:
        length = int(header_length)
    except ValueError as exc:
        raise BadInput(
            f"Inference-Header-Content-Length {header_length!r} is not an integer"
        ) from exc
    if not 0 < length <= len(body):
        raise BadInput(
            f"Inference-Header-Content-Length {length} does not fit a body of {len(body)} bytes"
        )
    view = memoryview(body)
    return json_from_body(view[:length]), view[length:]


def tensor_from_binary(
    name: str, shape: list[int], datatype: str, binary: memoryview
) -> np.ndarray:
    """One Triton binary tensor (FP32 only: the contract's input dtype) -> array, no copy."""
    _check_fp32(name, datatype)
    count = math.prod(shape)
    if len(binary) != count * 4:
        raise BadInput(
            f"input {name!r}: shape {shape} needs {count * 4} bytes of FP32, "
            f"binary_data_size is {len(binary)}"
        )
    return np.frombuffer(binary, dtype=FLOAT32_LE).reshape(shape)


def tensor_from_json(name: str, shape: list[int], datatype: str, data: Any) -> np.ndarray:
    """One Open Inference Protocol JSON tensor (flat or nested ``data``) -> array."""
    _check_fp32(name, datatype)
    if data is None:
        raise BadInput(f"input {name!r} has neither data nor parameters.binary_data_size")
    array = array_from_json(data, what=f"input {name!r} data")
    if array.size != int(np.prod(shape)):
        raise BadInput(f"input {name!r}: {array.size} values do not fill shape {shape}")
    return array.reshape(shape)


def binary_body_from_parts(header: dict[str, Any], buffers: list[bytes]) -> tuple[bytes, int]:
    """A Triton binary response: JSON header then buffers; returns the body and the header's
    length for ``Inference-Header-Content-Length``."""
    head = json_bytes(header)
    return b"".join([head, *buffers]), len(head)


def _check_fp32(name: str, datatype: str) -> None:
    if datatype != "FP32":
        raise BadInput(f"input {name!r} has datatype {datatype}; this model takes FP32")


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "O": "nulls or mixed types"}.get(
        dtype.kind, str(dtype)
    )
