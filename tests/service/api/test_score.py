"""``POST /score``: every body format, both answers, and every bad input of contract 3."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from service.settings import Settings

EVENTS = "events-test-ae"
IMAGES = "jets-test-image-nae"
THRESHOLDS = {"eff_1e-1": 76 * 1.2, "eff_1e-2": 76 * 1.5}  # bundle_factory's defaults, 19x4


def _expected(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1)


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def test_json_in_json_out(client: TestClient, events: np.ndarray) -> None:
    response = client.post("/score", json={"model": EVENTS, "inputs": events.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["version"]) == (EVENTS, 1)
    scores = np.array(body["scores"])
    np.testing.assert_allclose(scores, _expected(events), rtol=1e-5)
    assert list(body["triggers"]) == list(THRESHOLDS)
    for name, threshold in THRESHOLDS.items():
        np.testing.assert_array_equal(body["triggers"][name], scores > threshold)


def test_the_default_bundle_is_used_when_none_is_named(
    client: TestClient, events: np.ndarray
) -> None:
    response = client.post("/score", json={"inputs": events[:3].tolist()})
    assert response.json()["model"] == EVENTS


@pytest.mark.parametrize("accept", ["application/json", "application/x-npy"])
def test_npy_body(client: TestClient, events: np.ndarray, accept: str) -> None:
    response = client.post(
        f"/score?model={EVENTS}",
        content=_npy(events),
        headers={"Content-Type": "application/x-npy", "Accept": accept},
    )
    assert response.status_code == 200, response.text
    if accept == "application/x-npy":
        assert response.headers["content-type"] == "application/x-npy"
        assert (response.headers["x-model"], response.headers["x-model-version"]) == (EVENTS, "1")
        scores = np.load(io.BytesIO(response.content))
        assert scores.dtype == np.float32
    else:
        scores = np.array(response.json()["scores"])
    np.testing.assert_allclose(scores, _expected(events), rtol=1e-5)


def test_raw_float32_body_with_shape_header(client: TestClient) -> None:
    images = np.random.default_rng(5).random((7, 40, 40), dtype=np.float32)
    response = client.post(
        f"/score?model={IMAGES}",
        content=images.tobytes(),
        headers={"Content-Type": "application/octet-stream", "X-Shape": "7,40,40"},
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["scores"], _expected(images), rtol=1e-5)


def _json_body(inputs: object, model: str = EVENTS) -> dict:
    return {"content": orjson.dumps({"model": model, "inputs": inputs})}


def _bad_requests() -> list:
    good = np.zeros((2, 19, 4), np.float32)
    nan = good.copy()
    nan[1, 5, 2] = np.nan
    return [
        ("wrong shape", _json_body(np.zeros((2, 19, 3)).tolist()), 400, r"shape \[2, 19, 3\]"),
        ("one event", _json_body(np.zeros((19, 4)).tolist()), 400, "without the batch axis"),
        ("ragged", _json_body([[[0.0] * 4] * 19, [[0.0] * 4] * 18]), 400, "ragged"),
        # as many numbers as [2, 19, 4]: simdjson's flat buffer alone would accept it
        ("ragged, same count", _json_body([[[0.0] * 4] * 20, [[0.0] * 4] * 18]), 400, "ragged"),
        ("strings", _json_body([[["a"] * 4] * 19]), 400, "only numbers"),
        ("out of range", {"content": b'{"inputs": [[[1e400, 0, 0, 0]]]}'}, 400, "malformed JSON"),
        ("empty", _json_body([]), 400, "empty batch"),
        ("too many", _json_body(np.zeros((1001, 19, 4)).tolist()), 413, "limit of 1000"),
        ("unknown model", _json_body(good.tolist(), model="nope"), 404, "no bundle named 'nope'"),
        ("malformed", {"content": b'{"inputs": [[1, 2'}, 400, "malformed JSON"),
        ("no inputs", {"content": b'{"model": "x"}'}, 400, "must be an object"),
        (
            "nan npy",
            {"content": _npy(nan), "headers": {"Content-Type": "application/x-npy"}},
            400,
            "NaN or infinity, first in event 1",
        ),
        (
            "float64 npy",
            {
                "content": _npy(good.astype(np.float64)),
                "headers": {"Content-Type": "application/x-npy"},
            },
            400,
            "dtype float64",
        ),
        (
            "raw without shape",
            {"content": good.tobytes(), "headers": {"Content-Type": "application/octet-stream"}},
            400,
            "X-Shape",
        ),
        ("oversize", {"content": b" " * 2_000_001}, 413, "exceeds the limit of 2000000 bytes"),
        (
            "media type",
            {"content": b"1,2,3", "headers": {"Content-Type": "text/csv"}},
            415,
            "unsupported Content-Type 'text/csv'",
        ),
    ]


@pytest.mark.parametrize(
    ("case", "request_kwargs", "status", "message"),
    _bad_requests(),
    ids=[case[0] for case in _bad_requests()],
)
def test_bad_input_is_a_4xx_naming_the_problem_and_counts_nothing(
    client: TestClient,
    metric_value: Callable[..., float],
    case: str,
    request_kwargs: dict,
    status: int,
    message: str,
) -> None:
    response = client.post("/score", **request_kwargs)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert re.search(message, error), error
    scored = metric_value(client.get("/metrics").text, "nae_events_scored_total")
    assert scored == 0
    healthy = client.post("/score", json={"inputs": np.zeros((1, 19, 4)).tolist()})
    assert healthy.status_code == 200  # the service survived


@pytest.mark.parametrize("strict", [True, False])
def test_an_empty_models_directory_starts_and_says_no_bundle_is_loaded(
    tmp_path: Path, strict: bool
) -> None:
    from service.app import create_app

    settings = Settings(models_dir=tmp_path / "none", strict_readiness=strict)
    with TestClient(create_app(settings)) as empty:
        ready = empty.get("/v2/health/ready")
        response = empty.post("/score", json={"inputs": [[[0.0] * 4] * 19]})
    if strict:
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "reason": "the models directory is missing"}
    else:
        assert ready.status_code == 200
    assert response.status_code == 404
    assert "no bundle is loaded" in response.json()["error"]
    assert str(tmp_path) not in response.text
