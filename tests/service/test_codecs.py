"""Bytes <-> arrays and the checks that keep bad input out."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from service import codecs
from service.codecs import (
    array_from_json,
    array_from_npy,
    array_from_raw,
    binary_body_from_parts,
    check_batch,
    checked_name,
    checked_shape,
    integer_from_text,
    json_bytes,
    json_from_body,
    npy_bytes,
    score_json_fast,
    split_binary_body,
    tensor_from_binary,
    tensor_from_json,
)
from service.errors import BadInput, PayloadTooLarge

SHAPE = (19, 4)


def _events(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, *SHAPE)).astype(np.float32)


def test_json_arrays_become_float32() -> None:
    x = _events()
    decoded = array_from_json(orjson.loads(json_bytes(x)))
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, x)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([[1.0, 2.0], [3.0]], "ragged"),
        ([["1.0", "2.0"]], "only numbers .*strings"),
        ([[True, False]], "only numbers .*booleans"),
        ([[1.0, None]], "only numbers"),
        ({"x": 1}, "must be a JSON array"),
    ],
)
def test_json_that_is_not_a_numeric_array_is_refused(values: object, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        array_from_json(values)


def test_malformed_json_names_the_problem() -> None:
    with pytest.raises(BadInput, match="malformed JSON"):
        json_from_body(b'{"inputs": [1, 2')


@pytest.mark.parametrize("shape", [(1, 19, 4), (7, 19, 4), (3, 5), (4,), (2, 0), (0,)])
def test_the_simdjson_path_equals_orjson_and_np_array(shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(1).normal(scale=1e3, size=shape)
    body = orjson.dumps({"model": "m", "inputs": values.tolist()})
    model, decoded = score_json_fast(body)
    expected = np.array(orjson.loads(body)["inputs"]).astype(np.float32)
    assert model == "m"
    assert decoded.dtype == np.float32
    assert decoded.shape == expected.shape == shape
    np.testing.assert_array_equal(decoded, expected)


def test_the_reused_parser_decodes_bodies_of_any_size_in_any_order() -> None:
    """The thread's parser is reused: a large body, then a small one, a rejected one, and a
    body above the reuse limit (which gets its own parser) must all decode as when fresh."""
    rng = np.random.default_rng(2)
    sizes = [(500, 19, 4), (1, 19, 4), None, (3, 7), (codecs._REUSE_MAX_BYTES // 8, 1), (2, 2)]
    for shape in sizes:
        if shape is None:
            assert score_json_fast(b'{"inputs": [[1, 2], [3]]}') is None
            continue
        values = rng.normal(size=shape)
        _, decoded = score_json_fast(orjson.dumps({"inputs": values.tolist()}))
        np.testing.assert_array_equal(decoded, values.astype(np.float32))


def test_the_simdjson_path_accepts_integers_whitespace_and_scalar_members() -> None:
    body = b' { "inputs" : [ [1, -2] ,\n [3e2, 4.5] ] , "model": null, "x": true }'
    model, decoded = score_json_fast(memoryview(body))
    assert model is None
    np.testing.assert_array_equal(decoded, np.array([[1, -2], [300, 4.5]], np.float32))


@pytest.mark.parametrize(
    "inputs",
    [
        "[[1,2,3],[4]]",
        "[[1,2,3],[4,5]]",  # 5 numbers: neither 2x3 nor 2x2
        "[[1,2],[3,4,5],[6]]",  # 6 numbers, as many as 3x2
        "[[1,2],[3],[4,5,6]]",
        "[1,[2]]",
        "[[1],2]",
        "[[[1,2],[3,4]],[[5,6,7],[8]]]",  # 8 numbers, as many as 2x2x2
        "[[[1,2],[3,4]],[[5,6],[7],[8]]]",
        "[[[1,2],[3,4]],[[5,6],[7,8],[]]]",
        "[[[1,2],[3,4]],[5,6,7,8]]",
        "[[[1,2,3,4]],[[5,6],[7,8]]]",
        "[[[1]],[[2]],[]]",
        "[[],[1]]",
    ],
)
def test_ragged_inputs_at_every_level_leave_the_simdjson_path_and_are_refused(
    inputs: str,
) -> None:
    body = b'{"model": "m", "inputs": ' + inputs.encode() + b"}"
    assert score_json_fast(body) is None
    with pytest.raises(BadInput, match="ragged"):
        array_from_json(json_from_body(body)["inputs"])


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ('[[1, "2"]]', "only numbers .*strings"),
        ("[[1, null]]", "only numbers"),
        ("[[true, false]]", "only numbers .*booleans"),
        ("[[1, {}]]", "ragged|only numbers"),
        ('[[1, {"a": 2}]]', "ragged|only numbers"),
        ("[[1, [2]]]", "ragged"),
    ],
)
def test_non_numbers_leave_the_simdjson_path_and_are_refused(inputs: str, problem: str) -> None:
    body = b'{"inputs": ' + inputs.encode() + b"}"
    assert score_json_fast(body) is None
    with pytest.raises(BadInput, match=problem):
        array_from_json(json_from_body(body)["inputs"])


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [[1, 1e400]]}',
        b'{"inputs": [[1, -1e400]]}',
        b'{"inputs": [[1, 2]',
        b'{"inputs": [[1, NaN]]}',
        b'{"inputs": [[1, 2]]} trailing',
        b"",
    ],
)
def test_malformed_or_out_of_range_json_leaves_the_simdjson_path_and_is_refused(
    body: bytes,
) -> None:
    assert score_json_fast(body) is None
    with pytest.raises(BadInput, match="malformed JSON"):
        json_from_body(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[[1, 2]]",
        b'{"x": [[1, 2]]}',
        b'{"inputs": 3}',
        b'{"inputs": [[1, 2]], "inputs": [[1], [2, 3]]}',
        b'{"model": "a,b]", "inputs": [[1, 2], [3]]}',
        b'{"model": ["m"], "inputs": [[1, 2]]}',
        b'{"m[": 1, "inputs": [[1, 2]]}',
    ],
)
def test_unusual_bodies_leave_the_simdjson_path(body: bytes) -> None:
    assert score_json_fast(body) is None


def test_npy_round_trips_without_copying_c_order_data() -> None:
    x = _events()
    decoded = array_from_npy(npy_bytes(x))
    np.testing.assert_array_equal(decoded, x)
    assert not decoded.flags.owndata  # a view on the body


def test_npy_in_fortran_order_and_big_endian_is_understood() -> None:
    x = _events()
    stream = io.BytesIO()
    np.save(stream, np.asfortranarray(x.astype(">f4")))
    np.testing.assert_array_equal(array_from_npy(stream.getvalue()), x)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (npy_bytes(np.zeros((2, 19, 4))), "dtype float64; send float32"),
        (npy_bytes(np.zeros((2, 19, 4), np.float32))[:-4], "body holds"),
        (b"not an npy file at all", "not a valid .npy"),
    ],
)
def test_bad_npy_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        array_from_npy(body)


def test_raw_float32_needs_a_matching_shape_header() -> None:
    x = _events(3)
    np.testing.assert_array_equal(array_from_raw(x.tobytes(), "3,19,4"), x)
    with pytest.raises(BadInput, match="X-Shape"):
        array_from_raw(x.tobytes(), None)
    with pytest.raises(BadInput, match="needs 1216 bytes"):
        array_from_raw(x.tobytes(), "4,19,4")
    with pytest.raises(BadInput, match="comma-separated integers"):
        array_from_raw(x.tobytes(), "3x19x4")


def test_check_batch_accepts_a_good_batch() -> None:
    x = _events()
    assert check_batch(x, SHAPE, max_batch_size=5) is x


@pytest.mark.parametrize(
    ("x", "problem"),
    [
        (np.zeros((2, 19, 3), np.float32), r"shape \[2, 19, 3\]; this model takes \[N, 19, 4\]"),
        (np.zeros((19, 4), np.float32), "without the batch axis"),
        (np.zeros((0, 19, 4), np.float32), "empty batch"),
        (np.zeros((0,), np.float32), "empty batch"),
    ],
)
def test_check_batch_refuses_shapes(x: np.ndarray, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        check_batch(x, SHAPE, max_batch_size=100)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_batch_names_the_first_non_finite_event(bad: float) -> None:
    x = _events(10)
    x[7, 3, 1] = bad
    x[9, 0, 0] = bad
    with pytest.raises(BadInput, match="first in event 7"):
        check_batch(x, SHAPE, max_batch_size=100)


def test_check_batch_enforces_the_batch_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="6 events exceeds the limit of 5"):
        check_batch(_events(6), SHAPE, max_batch_size=5)


def test_triton_binary_bodies_split_and_decode() -> None:
    x = _events(2)
    body, header_length = binary_body_from_parts({"inputs": []}, [x.tobytes()])
    header, binary = split_binary_body(body, str(header_length))
    assert header == {"inputs": []}
    np.testing.assert_array_equal(tensor_from_binary("x", [2, 19, 4], "FP32", binary), x)
    with pytest.raises(BadInput, match="datatype FP64; this model takes FP32"):
        tensor_from_binary("x", [2, 19, 4], "FP64", binary)
    with pytest.raises(BadInput, match="does not fit"):
        split_binary_body(body, str(len(body) + 1))
    with pytest.raises(BadInput, match="needs 608 bytes"):
        tensor_from_binary("x", [2, 19, 4], "FP32", binary[:-8])


def test_json_tensors_accept_flat_and_nested_data() -> None:
    x = _events(2)
    flat = tensor_from_json("x", [2, 19, 4], "FP32", x.ravel().tolist())
    nested = tensor_from_json("x", [2, 19, 4], "FP32", x.tolist())
    np.testing.assert_array_equal(flat, x)
    np.testing.assert_array_equal(nested, x)
    with pytest.raises(BadInput, match="do not fill shape"):
        tensor_from_json("x", [3, 19, 4], "FP32", x.ravel().tolist())
    with pytest.raises(BadInput, match="neither data nor"):
        tensor_from_json("x", [2, 19, 4], "FP32", None)


@pytest.mark.parametrize(
    ("dims", "problem"),
    [
        ([], "0 dimensions"),
        ([1] * 9, "9 dimensions"),
        ([2, -1], "dimension 1 is -1"),
        ([2, 2**31], "dimension 1 is 2147483648"),
        ([True, 3], "dimension 0 is True"),
        ([2.0, 3], "dimension 0 is 2.0"),
        (["2"], "dimension 0 is '2'"),
        ("2,3", "must be a list"),
    ],
)
def test_checked_shape_refuses_what_numpy_cannot_or_should_not_allocate(
    dims: object, problem: str
) -> None:
    with pytest.raises(BadInput, match=problem):
        checked_shape(dims, what="shape")


def test_checked_shape_accepts_zero_and_the_largest_dimension() -> None:
    assert checked_shape([0, 2**31 - 1], what="shape") == (0, 2**31 - 1)


@pytest.mark.parametrize("text", ["1_0", "+1", "-1", "1.0", "", " ", "0x10", "\u0664", "1" * 19])
def test_integer_from_text_takes_only_ascii_digits(text: str) -> None:
    with pytest.raises(BadInput, match="1 to 18 digits"):
        integer_from_text(text, what="n")


def test_integer_from_text_allows_surrounding_spaces() -> None:
    assert integer_from_text(" 42\t", what="n") == 42


@pytest.mark.parametrize(
    ("value", "problem"),
    [(["m"], "got list"), ({}, "got dict"), (5, "got int"), ("", "empty"), ("m" * 129, "128")],
)
def test_checked_name_refuses_anything_but_a_short_string(value: object, problem: str) -> None:
    with pytest.raises(BadInput, match=problem):
        checked_name(value)


def test_checked_name_passes_none_and_names() -> None:
    assert checked_name(None) is None
    assert checked_name("jets-qcd-image-nae") == "jets-qcd-image-nae"


def test_a_deep_json_body_leaves_the_simdjson_path_and_is_refused() -> None:
    body = b'{"inputs": ' + b"[" * 65 + b"0" + b"]" * 65 + b"}"
    assert score_json_fast(body) is None
    with pytest.raises(BadInput, match="nested more than 8 deep"):
        array_from_json(json_from_body(body)["inputs"])
