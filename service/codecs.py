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

Every shape a client declares or sends (JSON nesting, ``X-Shape``, ``.npy`` header, Open
Inference Protocol tensor) passes ``checked_shape`` before an array of it exists: 1 to
``MAX_NDIM`` dimensions, each an integer in ``[0, MAX_DIMENSION]``, with the element count
computed in Python integers (no overflow) and compared with the bytes or values the body holds.
Bundle names, versions and integer headers pass ``checked_name``, ``checked_version`` and
``integer_from_text`` (ASCII digits only: ``int()`` would also take ``1_0``, ``+1`` or ``١``).
"""

from __future__ import annotations

import functools
import io
import math
import re
import threading
from typing import Any

import numpy as np
import orjson
import simdjson

from service.errors import BadInput, PayloadTooLarge
from service.runtime import InputRanges

__all__ = [
    "MAX_DIMENSION",
    "MAX_NAME_LENGTH",
    "MAX_NDIM",
    "NPY_MEDIA_TYPE",
    "RAW_MEDIA_TYPE",
    "SHAPE_HEADER",
    "array_from_json",
    "array_from_npy",
    "array_from_raw",
    "binary_body_from_parts",
    "check_batch",
    "checked_name",
    "checked_shape",
    "checked_version",
    "integer_from_text",
    "json_bytes",
    "json_from_body",
    "media_type_of",
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
MAX_NDIM = 8  # the contract's inputs have 2 or 3 axes with the batch axis; numpy allows 64
MAX_DIMENSION = 2**31 - 1  # no accepted body holds an axis this long; numpy's limit is 2**63
MAX_NAME_LENGTH = 128  # as bundle names (service.bundle.Name)
_DIGITS = re.compile(r"[0-9]{1,18}")  # at most 18 digits: always below 2**63


def checked_shape(dims: Any, *, what: str) -> tuple[int, ...]:
    """``dims`` as a shape, or ``BadInput`` naming the problem: a list of 1 to ``MAX_NDIM``
    integers (not booleans), each in ``[0, MAX_DIMENSION]``."""
    if not isinstance(dims, list | tuple):
        raise BadInput(f"{what} must be a list of dimensions, got {type(dims).__name__}")
    if not 1 <= len(dims) <= MAX_NDIM:
        raise BadInput(f"{what} has {len(dims)} dimensions; inputs have 1 to {MAX_NDIM}")
    for axis, dim in enumerate(dims):
        if type(dim) is not int or not 0 <= dim <= MAX_DIMENSION:
            raise BadInput(
                f"{what} {_shape_text(dims)}: dimension {axis} is {dim!r}; dimensions are "
                f"integers from 0 to {MAX_DIMENSION}"
            )
    return tuple(dims)


def integer_from_text(text: str, *, what: str) -> int:
    """A non-negative integer written in ASCII digits (surrounding spaces allowed)."""
    stripped = text.strip(" \t")
    if not _DIGITS.fullmatch(stripped):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise BadInput(f"{what} {shown!r} is not an integer of 1 to 18 digits 0-9")
    return int(stripped)


def checked_name(value: Any, *, what: str = "model") -> str | None:
    """A bundle name from a request: ``None`` (not given), or a non-empty string of at most
    ``MAX_NAME_LENGTH`` characters; anything else (a list, an object, a number) is refused
    rather than replaced by the default bundle."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a bundle name (a string), got {type(value).__name__}")
    if not value:
        raise BadInput(f"{what} is empty: name a bundle, or leave {what} out for the default")
    if len(value) > MAX_NAME_LENGTH:
        raise BadInput(f"{what} is {len(value)} characters long; names have at most 128")
    return value


def checked_version(text: str) -> int:
    """A bundle version from a URL: a positive integer in digits."""
    version = integer_from_text(text, what="model version")
    if version < 1:
        raise BadInput(f"model version {text!r} must be a positive integer")
    return version


def media_type_of(header: str | None, default: str) -> str:
    """The media type of a ``Content-Type`` header, lower case (media types are
    case-insensitive), without parameters."""
    return (header or default).split(";", 1)[0].strip().lower()


def _shape_text(dims: Any) -> str:
    text = str(list(dims))
    return text if len(text) <= 80 else text[:80] + "...]"


def _element_count(shape: tuple[int, ...]) -> int:
    """Values in ``shape``, exact (Python integers do not overflow)."""
    return math.prod(shape)


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
    depth, first = 0, values
    while isinstance(first, list) and depth <= MAX_NDIM:
        depth, first = depth + 1, first[0] if first else None
    if depth > MAX_NDIM:
        raise BadInput(f"{what} is nested more than {MAX_NDIM} deep; inputs have 1 to {MAX_NDIM}")
    try:
        array = np.array(values)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{what} is ragged: {_ragged_event(values)}") from exc
    if array.dtype.kind not in "fiu" and array.size:
        raise BadInput(f"{what} must hold only numbers (found {_kind_name(array.dtype)})")
    checked_shape(array.shape, what=f"{what} shape")
    with np.errstate(over="ignore"):  # a number beyond float32 becomes inf, refused later
        return array.astype(np.float32, copy=False)


def _ragged_event(values: list) -> str:
    """Names the first event whose shape differs from event 0's (an error path only)."""
    first = _nested_shape(values[0])
    event = (
        0
        if first is None
        else next((i for i, item in enumerate(values) if _nested_shape(item) != first), None)
    )
    if event is None:
        return "every event must have the same shape"
    return f"event {event} (0-based) differs in shape; every event must have the same shape"


def _nested_shape(item: Any) -> tuple[int, ...] | None:
    try:
        return np.shape(item)
    except ValueError:  # ragged inside
        return None


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
    with np.errstate(over="ignore"):  # a number beyond float32 becomes inf, refused later
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
        if len(shape) > MAX_NDIM:
            raise TypeError("inputs nested too deep")  # the orjson path names it
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
    except Exception as exc:  # numpy's header parser raises many types on untrusted bytes
        raise BadInput(f"body is not a valid .npy file: {_first_line(exc)}") from exc
    if dtype.kind != "f" or dtype.itemsize != 4:
        raise BadInput(f".npy array has dtype {dtype}; send float32 (np.float32)")
    shape = checked_shape(shape, what=".npy header shape")
    count = _element_count(shape)
    if len(body) - offset != count * 4:
        raise BadInput(
            f".npy header promises shape {_shape_text(shape)} ({count * 4} bytes of data), "
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
    dims = shape_header.split(",", MAX_NDIM)  # one more than allowed is enough to refuse
    try:
        parsed = [integer_from_text(dim, what="dimension") for dim in dims]
    except BadInput as exc:
        shown = shape_header if len(shape_header) <= 40 else shape_header[:40] + "..."
        raise BadInput(
            f"X-Shape {shown!r} must be comma-separated integers, e.g. 'X-Shape: 100,19,4' "
            f"({exc.message})"
        ) from exc
    shape = checked_shape(parsed, what="X-Shape")
    count = _element_count(shape)
    if len(body) != count * 4:
        raise BadInput(
            f"X-Shape {_shape_text(shape)} needs {count * 4} bytes of float32, body has {len(body)}"
        )
    return np.frombuffer(body, dtype=FLOAT32_LE).reshape(shape)


def check_batch(
    x: np.ndarray,
    input_shape: tuple[int, ...],
    *,
    max_batch_size: int,
    ranges: InputRanges | None = None,
) -> np.ndarray:
    """Refuse a batch the model must not see: wrong per-event shape, empty, too many events,
    any NaN/infinity, or (when the bundle declares ``ranges``) a value outside its range,
    naming the first offending event. Returns a C-contiguous float32 array
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
    x = np.ascontiguousarray(x, dtype=np.float32)
    # With ranges, the range check also refuses NaN and infinity (open sides stop at float32's
    # largest finite value); the finiteness check below then only names the problem.
    if ranges is not None and ranges.contains(x):
        return x
    if not np.isfinite(x).all():
        finite_rows = np.isfinite(x.reshape(n_events, -1)).all(axis=1)
        row = int(np.argmin(finite_rows))
        raise BadInput(f"inputs hold NaN or infinity, first in event {row} (0-based)")
    if ranges is not None:
        event, index = ranges.first_violation(x)
        where, interval = ranges.describe(index)
        raise BadInput(
            f"inputs outside the bundle's input ranges: event {event} (0-based), {where} = "
            f"{float(x[(event, *index)]):g}, outside {interval}"
        )
    return x


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
    length = integer_from_text(header_length, what="Inference-Header-Content-Length")
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
    dims = checked_shape(shape, what=f"input {name!r} shape")
    count = _element_count(dims)
    if len(binary) != count * 4:
        raise BadInput(
            f"input {name!r}: shape {_shape_text(dims)} needs {count * 4} bytes of FP32, "
            f"binary_data_size is {len(binary)}"
        )
    return np.frombuffer(binary, dtype=FLOAT32_LE).reshape(dims)


def tensor_from_json(name: str, shape: list[int], datatype: str, data: Any) -> np.ndarray:
    """One Open Inference Protocol JSON tensor (flat or nested ``data``) -> array."""
    _check_fp32(name, datatype)
    dims = checked_shape(shape, what=f"input {name!r} shape")
    if data is None:
        raise BadInput(f"input {name!r} has neither data nor parameters.binary_data_size")
    array = array_from_json(data, what=f"input {name!r} data")
    if array.size != _element_count(dims):
        raise BadInput(f"input {name!r}: {array.size} values do not fill shape {_shape_text(dims)}")
    return array.reshape(dims)


def binary_body_from_parts(header: dict[str, Any], buffers: list[bytes]) -> tuple[bytes, int]:
    """A Triton binary response: JSON header then buffers; returns the body and the header's
    length for ``Inference-Header-Content-Length``."""
    head = json_bytes(header)
    return b"".join([head, *buffers]), len(head)


def _check_fp32(name: str, datatype: str) -> None:
    if datatype != "FP32":
        raise BadInput(f"input {name!r} has datatype {datatype}; this model takes FP32")


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _kind_name(dtype: np.dtype) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "O": "nulls or mixed types"}.get(
        dtype.kind, str(dtype)
    )
