"""Every class of bad input a careless or hostile client can send, through a real uvicorn, on
every body format of both scoring routes: each answers its 4xx with ``{"error": ...}`` naming
the problem, no answer shows a server path, nothing is counted as scored, and the service keeps
scoring good requests afterwards. Then the variants a client may legitimately send (media types
in any case, spaces in ``X-Shape``) that must be accepted.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.settings import Settings

EVENTS = "events-ranged"  # (19, 4), with input ranges
IMAGES = "images-open"  # (4, 4), no ranges: large inputs overflow its score
PHI_MAX = float(np.float32(np.pi))
RANGES = [[0.0, 13000.0], [-5.0, 5.0], [-PHI_MAX, PHI_MAX], [0.0, 4.0]]
FEATURES = ["pt [GeV]", "eta", "phi [rad]", "class id"]
NPY = {"Content-Type": "application/x-npy"}
RAW = {"Content-Type": "application/octet-stream"}
HEADER_LENGTH = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, bundle_factory: Callable[..., Path]) -> Path:
    directory = tmp_path_factory.mktemp("bad-input-models")
    bundle_factory(directory, EVENTS, 1, (19, 4), features=FEATURES, ranges=RANGES)
    bundle_factory(directory, IMAGES, 1, (4, 4), kind="jet-image")
    return directory


@pytest.fixture(scope="module")
def server(models: Path, live_server: Callable) -> Iterator[httpx.Client]:
    """No default bundle (two are loaded), small limits."""
    settings = Settings(
        models_dir=models, max_body_bytes=1_000_000, max_batch_size=100, admin_token="t"
    )
    with live_server(settings) as address, httpx.Client(base_url=f"http://{address}") as client:
        yield client


def _events(n: int = 2) -> np.ndarray:
    x = np.zeros((n, 19, 4), np.float32)
    x[:, :, 0] = 50.0
    return x


def _npy_with_header(shape: str, data: bytes = b"") -> bytes:
    """An .npy file whose header says ``shape`` (any text), followed by ``data``."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def _score_json(inputs: Any, model: Any = EVENTS) -> dict[str, Any]:
    return {"content": orjson.dumps({"model": model, "inputs": inputs})}


def _infer(tensor: dict[str, Any], **request: Any) -> dict[str, Any]:
    return {"content": orjson.dumps({"inputs": [tensor], **request})}


def _tensor(shape: list[Any], data: Any = None, **fields: Any) -> dict[str, Any]:
    return {"name": "x", "shape": shape, "datatype": "FP32", "data": data, **fields}


def _binary_infer(shape: list[Any], payload: bytes, **tensor: Any) -> dict[str, Any]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(payload)},
                    **tensor,
                }
            ]
        }
    )
    headers = {**RAW, HEADER_LENGTH: str(len(header))}
    return {"content": header + payload, "headers": headers}


def _nested(depth: int) -> Any:
    value: Any = 0.0
    for _ in range(depth):
        value = [value]
    return value


SCORE = f"/score?model={EVENTS}"
INFER = f"/v2/models/{EVENTS}/infer"
IMAGE_INFER = f"/v2/models/{IMAGES}/infer"
X = _events()
TENSOR = _tensor([2, 19, 4], X.ravel().tolist())
OUT_OF_RANGE = _events()
OUT_OF_RANGE[1, 3, 1] = 7.5  # eta
HUGE = np.full((1, 4, 4), 1e19, np.float32)  # finite, but its score overflows float32

# (id, path, request, status, message pattern)
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    # 1. Shapes and names, on every body format.
    ("json nested 65 deep", "/score", _score_json(_nested(65)), 400, "nested more than 8 deep"),
    ("json nested 9 deep", "/score", _score_json(_nested(9)), 400, "nested more than 8 deep"),
    ("model is a list", "/score", _score_json(X.tolist(), ["x"]), 400, "string.*got list"),
    ("model is an object", "/score", _score_json(X.tolist(), {}), 400, "string.*got dict"),
    ("model is a number", "/score", _score_json(X.tolist(), 5), 400, "string.*got int"),
    ("model is empty", "/score", _score_json(X.tolist(), ""), 400, "model is empty"),
    ("model too long", "/score", _score_json(X.tolist(), "m" * 200), 400, "at most 128"),
    ("query model empty", "/score?model=", {"content": _npy(X), "headers": NPY}, 400, "empty"),
    (
        "x-shape 20 digits",
        SCORE,
        {"content": b"", "headers": {**RAW, "X-Shape": "99999999999999999999,0"}},
        400,
        "X-Shape .* 1 to 18 digits",
    ),
    (
        "x-shape underscore",
        SCORE,
        {"content": X.tobytes(), "headers": {**RAW, "X-Shape": "1_0,19,4"}},
        400,
        "comma-separated integers",
    ),
    (
        "x-shape negative",
        SCORE,
        {"content": X.tobytes(), "headers": {**RAW, "X-Shape": "-2,-19,4"}},
        400,
        "comma-separated integers",
    ),
    (
        "x-shape unicode digit",
        SCORE,
        {"content": X.tobytes(), "headers": {**RAW, "X-Shape": "2,19,\u0664".encode()}},
        400,
        "comma-separated integers",
    ),
    (
        "x-shape 9 dimensions",
        SCORE,
        {"content": b"", "headers": {**RAW, "X-Shape": ",".join(["1"] * 9)}},
        400,
        "9 dimensions",
    ),
    (
        "x-shape dimension too large",
        SCORE,
        {"content": b"", "headers": {**RAW, "X-Shape": "4294967296,0,4"}},
        400,
        "dimension 0 is 4294967296",
    ),
    (
        "x-shape on a json body",
        "/score",
        {**_score_json(X.tolist()), "headers": {"X-Shape": "2,19,4"}},
        400,
        "X-Shape describes raw float32 bodies",
    ),
    (
        "x-shape empty",
        SCORE,
        {"content": b"", "headers": {**RAW, "X-Shape": "0,19,4"}},
        400,
        "empty batch",
    ),
    (
        "npy negative shape",
        SCORE,
        {"content": _npy_with_header("(-2, -19, 4)", bytes(608)), "headers": NPY},
        400,
        r"\.npy header shape .*dimension 0 is -2",
    ),
    (
        "npy 65 dimensions",
        SCORE,
        {"content": _npy_with_header(str((1,) * 65), bytes(4)), "headers": NPY},
        400,
        "65 dimensions",
    ),
    (
        "npy huge shape",
        SCORE,
        {"content": _npy_with_header("(4294967296, 4294967296)"), "headers": NPY},
        400,
        "dimension 0 is 4294967296",
    ),
    ("npy garbage header", SCORE, {"content": _npy_with_header("{]"), "headers": NPY}, 400, "npy"),
    (
        "oip huge shape, no data",
        INFER,
        _infer(_tensor([4294967296, 4294967296], [])),
        400,
        "dimension 0 is 4294967296",
    ),
    ("oip negative shape", INFER, _infer(_tensor([-2, -38], [0.0] * 76)), 400, "dimension 0 is -2"),
    ("oip 65 dimensions", INFER, _infer(_tensor([1] * 65, [0.0])), 400, "65 dimensions"),
    ("oip shape of strings", INFER, _infer(_tensor(["2", 19, 4], [0.0])), 400, "shape"),
    ("oip shape of booleans", INFER, _infer(_tensor([True, 19, 4], [0.0])), 400, "shape"),
    ("oip too few values", INFER, _infer(_tensor([3, 19, 4], TENSOR["data"])), 400, "fill shape"),
    (
        "oip binary negative shape",
        INFER,
        _binary_infer([-2, -38], X.tobytes()),
        400,
        "dimension 0 is -2",
    ),
    (
        "oip binary huge shape",
        INFER,
        _binary_infer([4294967296, 4294967296], b""),
        400,
        "dimension 0 is 4294967296",
    ),
    (
        "oip binary size not an integer",
        INFER,
        _binary_infer([2, 19, 4], X.tobytes(), parameters={"binary_data_size": True}),
        400,
        "binary_data_size",
    ),
    (
        "oip header length underscore",
        INFER,
        {"content": b"{}", "headers": {**RAW, HEADER_LENGTH: "1_0"}},
        400,
        "Inference-Header-Content-Length",
    ),
    ("oip bytes after json", INFER, {"content": b"{}" + bytes(8)}, 400, "malformed JSON"),
    (
        "version with underscore",
        f"/v2/models/{EVENTS}/versions/1_0/infer",
        _infer(TENSOR),
        400,
        "version",
    ),
    ("version zero", f"/v2/models/{EVENTS}/versions/0/infer", _infer(TENSOR), 400, "positive"),
    (
        "version unknown",
        f"/v2/models/{EVENTS}/versions/99/infer",
        _infer(TENSOR),
        404,
        "no version 99",
    ),
    ("ragged json", "/score", _score_json([X[0].tolist(), X[0, :18].tolist()]), 400, "event 1"),
    ("strings", "/score", _score_json([[["a"] * 4] * 19]), 400, "only numbers"),
    (
        "nan npy",
        SCORE,
        {"content": _npy(np.full((1, 19, 4), np.nan, np.float32)), "headers": NPY},
        400,
        "NaN",
    ),
    ("empty batch", "/score", _score_json([]), 400, "empty batch"),
    ("wrong shape", "/score", _score_json(np.zeros((2, 19, 3)).tolist()), 400, r"\[2, 19, 3\]"),
    # 2. Requested outputs are checked before anything is scored.
    (
        "oip unknown output",
        INFER,
        _infer(TENSOR, outputs=[{"name": "nope"}]),
        400,
        "unknown output 'nope'",
    ),
    (
        "oip binary_data not a boolean",
        INFER,
        _infer(TENSOR, outputs=[{"name": "score", "parameters": {"binary_data": "yes"}}]),
        400,
        "binary_data must be true or false",
    ),
    # 3. Inputs outside physics, and scores that are not finite.
    (
        "out of range json",
        "/score",
        _score_json(OUT_OF_RANGE.tolist()),
        400,
        r"event 1 \(0-based\), row 3, 'eta' = 7\.5, outside \[-5, 5\]",
    ),
    (
        "out of range npy",
        SCORE,
        {"content": _npy(OUT_OF_RANGE), "headers": NPY},
        400,
        "'eta' = 7.5",
    ),
    (
        "out of range oip",
        INFER,
        _infer(_tensor([2, 19, 4], OUT_OF_RANGE.ravel().tolist())),
        400,
        "'eta' = 7.5",
    ),
    (
        "1e19 everywhere, ranged",
        "/score",
        _score_json(np.full((1, 19, 4), 1e19).tolist()),
        400,
        "input ranges",
    ),
    (
        "beyond float32",
        "/score",
        _score_json(np.full((1, 19, 4), 1e39).tolist()),
        400,
        "NaN or infinity",
    ),
    (
        "score overflows, json",
        "/score",
        _score_json(HUGE.tolist(), IMAGES),
        422,
        "not a finite number",
    ),
    (
        "score overflows, oip",
        IMAGE_INFER,
        _binary_infer([1, 4, 4], HUGE.tobytes()),
        422,
        "not a finite",
    ),
    # 8. Which bundle, and the limits.
    (
        "no model, several loaded",
        "/score",
        {"content": orjson.dumps({"inputs": X.tolist()})},
        400,
        "name a model",
    ),
    ("unknown model", "/score", _score_json(X.tolist(), "nope"), 404, "no bundle named 'nope'"),
    ("unknown oip model", "/v2/models/nope/infer", _infer(TENSOR), 404, "no bundle named 'nope'"),
    ("too many events", "/score", _score_json(_events(101).tolist()), 413, "limit of 100"),
    ("oversize body", "/score", {"content": b" " * 1_000_001}, 413, "limit of 1000000 bytes"),
    # 6. Headers.
    (
        "unknown media type",
        "/score",
        {"content": b"1", "headers": {"Content-Type": "text/csv"}},
        415,
        "text/csv",
    ),
    (
        "gzip on /score",
        "/score",
        {**_score_json(X.tolist()), "headers": {"Content-Encoding": "gzip"}},
        415,
        "Content-Encoding 'gzip'",
    ),
    (
        "gzip on /infer",
        INFER,
        {**_infer(TENSOR), "headers": {"Content-Encoding": "gzip"}},
        415,
        "Content-Encoding 'gzip'",
    ),
]


@pytest.mark.parametrize(
    ("path", "request_kwargs", "status", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_a_4xx_naming_the_problem(
    server: httpx.Client,
    models: Path,
    metric_value: Callable[..., float],
    path: str,
    request_kwargs: dict[str, Any],
    status: int,
    message: str,
) -> None:
    before = server.get("/metrics").text
    response = server.post(path, **request_kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error"}
    assert re.search(message, response.json()["error"]), response.json()["error"]
    assert str(models) not in response.text
    after = server.get("/metrics").text
    for bundle in (EVENTS, IMAGES):
        labels = {"model": bundle, "version": "1"}
        assert metric_value(after, "nae_events_scored_total", **labels) == metric_value(
            before, "nae_events_scored_total", **labels
        ), "a refused request was counted as scored"
    unscorable = metric_value(after, "nae_events_unscorable_total", model=IMAGES, version="1")
    assert unscorable - metric_value(
        before, "nae_events_unscorable_total", model=IMAGES, version="1"
    ) == (1 if status == 422 else 0)
    assert server.post(SCORE, content=_npy(X), headers=NPY).status_code == 200  # still serving


# Requests that differ from the documented examples only where HTTP allows it.
GOOD_VARIANTS = [
    (
        "json media type in capitals",
        "/score",
        {**_score_json(X.tolist()), "headers": {"Content-Type": "Application/JSON"}},
    ),
    (
        "json with charset",
        "/score",
        {**_score_json(X.tolist()), "headers": {"Content-Type": "application/json; charset=utf-8"}},
    ),
    (
        "npy media type in capitals",
        SCORE,
        {"content": _npy(X), "headers": {"Content-Type": "APPLICATION/X-NPY"}},
    ),
    (
        "x-shape with spaces",
        SCORE,
        {"content": X.tobytes(), "headers": {**RAW, "X-Shape": "2, 19, 4"}},
    ),
    (
        "identity encoding",
        "/score",
        {**_score_json(X.tolist()), "headers": {"Content-Encoding": "Identity"}},
    ),
    (
        "json model null",
        "/score",
        {
            "content": orjson.dumps({"model": None, "inputs": X.tolist()}),
            "params": {"model": EVENTS},
        },
    ),
    ("version 1", f"/v2/models/{EVENTS}/versions/1/infer", _infer(TENSOR)),
    ("binary infer", INFER, _binary_infer([2, 19, 4], X.tobytes())),
    (
        "at the range edge",
        "/score",
        _score_json(np.tile(np.array(RANGES)[:, 1], (1, 19, 1)).tolist()),
    ),
]


@pytest.mark.parametrize(
    ("path", "request_kwargs"),
    [case[1:] for case in GOOD_VARIANTS],
    ids=[case[0] for case in GOOD_VARIANTS],
)
def test_what_http_allows_is_accepted(
    server: httpx.Client, path: str, request_kwargs: dict[str, Any]
) -> None:
    response = server.post(path, **request_kwargs)
    assert response.status_code == 200, response.text


def test_accept_is_case_insensitive(server: httpx.Client) -> None:
    response = server.post(SCORE, content=_npy(X), headers={**NPY, "Accept": "Application/X-NPY"})
    assert response.headers["content-type"] == "application/x-npy"
    np.testing.assert_allclose(np.load(io.BytesIO(response.content)), [19 * 50.0**2] * 2)
