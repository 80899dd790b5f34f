"""Open Inference Protocol REST, checked with the real ``tritonclient.http`` client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.settings import Settings

EVENTS = "events-test-ae"
THRESHOLDS = {"eff_1e-1": 76 * 1.2, "eff_1e-2": 76 * 1.5}


@pytest.fixture(scope="module")
def triton_client(
    models_dir: Path, live_server: Callable
) -> Iterator[triton.InferenceServerClient]:
    """tritonclient against a real uvicorn server on the shared models directory."""
    with live_server(Settings(models_dir=models_dir)) as address:
        client = triton.InferenceServerClient(address)
        yield client
        client.close()


def _expected(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1)


def _events(n: int = 50) -> np.ndarray:
    return np.random.default_rng(21).normal(size=(n, 19, 4)).astype(np.float32)


def test_health_and_metadata(triton_client: triton.InferenceServerClient) -> None:
    assert triton_client.is_server_live()
    assert triton_client.is_server_ready()
    assert triton_client.is_model_ready(EVENTS)
    assert triton_client.is_model_ready(EVENTS, "1")
    assert not triton_client.is_model_ready("nope")
    assert "binary_tensor_data" in triton_client.get_server_metadata()["extensions"]
    metadata = triton_client.get_model_metadata(EVENTS, "1")
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 19, 4]}]
    assert [output["name"] for output in metadata["outputs"]] == [
        "score",
        "trigger_eff_1e-1",
        "trigger_eff_1e-2",
    ]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_with_tritonclient(triton_client: triton.InferenceServerClient, binary: bool) -> None:
    x = _events()
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput("score", binary_data=binary),
        triton.InferRequestedOutput("trigger_eff_1e-1", binary_data=binary),
    ]
    result = triton_client.infer(EVENTS, [tensor], outputs=outputs, request_id="r1")
    scores = result.as_numpy("score")
    assert scores.dtype == np.float32 and scores.shape == (50,)
    np.testing.assert_allclose(scores, _expected(x), rtol=1e-5)
    np.testing.assert_array_equal(
        result.as_numpy("trigger_eff_1e-1"), scores > THRESHOLDS["eff_1e-1"]
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        EVENTS,
        "1",
        "r1",
    )


def test_infer_without_requested_outputs_returns_all_as_binary(
    triton_client: triton.InferenceServerClient,
) -> None:
    x = _events(3)
    tensor = triton.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = triton_client.infer(EVENTS, [tensor], model_version="1")
    assert result.as_numpy("trigger_eff_1e-2").dtype == np.bool_
    np.testing.assert_allclose(result.as_numpy("score"), _expected(x), rtol=1e-5)


@pytest.mark.parametrize(
    ("model", "shape", "datatype", "message"),
    [
        ("nope", [2, 19, 4], "FP32", "no bundle named 'nope'"),
        (EVENTS, [2, 19, 3], "FP32", "shape [2, 19, 3]"),
        (EVENTS, [2, 19, 4], "FP64", "datatype FP64"),
    ],
)
def test_tritonclient_sees_errors(
    triton_client: triton.InferenceServerClient,
    model: str,
    shape: list[int],
    datatype: str,
    message: str,
) -> None:
    dtype = np.float64 if datatype == "FP64" else np.float32
    tensor = triton.InferInput("x", shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, dtype))
    with pytest.raises(InferenceServerException, match=message.replace("[", r"\[")):
        triton_client.infer(model, [tensor])


def test_json_infer_errors_name_the_problem(client: TestClient) -> None:
    zeros = [0.0] * 76
    tensor = {"name": "x", "shape": [1, 19, 4], "datatype": "FP32", "data": zeros}
    cases = [
        ({"inputs": []}, 400, "inputs"),
        ({"inputs": [{**tensor, "name": "y"}]}, 400, "one input 'x'"),
        ({"inputs": [tensor], "outputs": [{"name": "loss"}]}, 400, "unknown output 'loss'"),
    ]
    for body, status, message in cases:
        response = client.post(f"/v2/models/{EVENTS}/infer", json=body)
        assert response.status_code == status
        assert message in response.json()["error"]
    response = client.post(
        f"/v2/models/{EVENTS}/versions/one/infer", json={"inputs": cases[1][0]["inputs"]}
    )
    assert response.status_code == 400 and "integer" in response.json()["error"]
