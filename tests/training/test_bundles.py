"""Bundles offline and served: verify, score, the round trip export -> service, tampering."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.bundle import INT8_FILE, MODEL_FILE, load_bundle
from service.settings import Settings
from training.bundles import score_bundle, verify_bundle
from training.data.shards import Shard, write_shard
from training.errors import BadBundle, BadSample


@pytest.fixture
def models_dir(exported_bundle: Path, tmp_path: Path) -> Path:
    """A models directory holding a copy of the exported bundle."""
    shutil.copytree(exported_bundle, tmp_path / "models" / "test-features-ae" / "1")
    return tmp_path / "models"


def test_served_scores_and_triggers_equal_torch(
    models_dir: Path, exported_bundle: Path, make_family: Callable
) -> None:
    x = np.load(exported_bundle.parents[2] / "signal.npy")[:500]
    model, _ = make_family("dense")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    settings = Settings(models_dir=models_dir, model_file="model.onnx")
    with TestClient(create_app(settings)) as client:
        reply = client.post("/score", json={"model": "test-features-ae", "inputs": x.tolist()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    scores = np.array(body["scores"], np.float32)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5 * np.median(expected))
    for point in load_bundle(exported_bundle).working_points:
        assert body["triggers"][point.name] == (scores > np.float32(point.threshold)).tolist()


def test_the_service_can_be_told_to_serve_int8(models_dir: Path, exported_bundle: Path) -> None:
    bundle = load_bundle(exported_bundle)
    if INT8_FILE not in bundle.files:
        pytest.skip(f"int8 did not pass its gate here: {bundle.model_extra['int8']}")
    x = np.load(exported_bundle.parents[2] / "signal.npy")[:200]
    served = {}
    for choice in ("model.onnx", "model.int8.onnx"):
        summary = score_bundle(exported_bundle, _npy(models_dir.parent, x), model_file=choice)
        assert summary.model_file == choice
        with TestClient(create_app(Settings(models_dir=models_dir, model_file=choice))) as client:
            reply = client.post("/score", json={"model": bundle.name, "inputs": x.tolist()})
        served[choice] = np.array(reply.json()["scores"], np.float32)
    assert not np.array_equal(served[MODEL_FILE], served[INT8_FILE])  # really another graph
    for choice, scores in served.items():  # each the file's own scores, run here directly
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(exported_bundle / choice), options)
        direct = session.run(["score"], {"x": x.astype(np.float32)})[0]
        np.testing.assert_allclose(scores, direct, rtol=1e-6, atol=0)


def test_bundle_score_of_shards_equals_npy_and_counts_working_points(
    exported_bundle: Path, tmp_path: Path
) -> None:
    x = np.load(exported_bundle.parents[2] / "background.npy")[:3000]
    shards = tmp_path / "shards"
    for index, rows in enumerate((slice(0, 1800), slice(1800, 3000))):
        part = x[rows]
        arrays = {
            "constituents": np.zeros((len(part), 200, 4), np.float32),
            "images": np.zeros((len(part), 40, 40), np.float32),
            "jet": np.zeros((len(part), 4), np.float32),
            "label": np.zeros(len(part), np.int8),
            **{f"features/f{i}": part[:, i] for i in range(part.shape[1])},
        }
        write_shard(shards / f"test_{index}.h5", Shard(arrays, {"process": "test"}))
    from_shards = score_bundle(exported_bundle, shards, out=tmp_path / "a.npy")
    from_npy = score_bundle(exported_bundle, _npy(tmp_path, x), out=tmp_path / "b.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert from_shards.n_events == 3000 and from_shards.passing == from_npy.passing
    scores = np.load(tmp_path / "a.npy")
    for point in load_bundle(exported_bundle).working_points:
        passing = from_shards.passing[point.name]
        assert passing.n_passing == np.count_nonzero(scores > np.float32(point.threshold))
        assert passing.ci95.low <= passing.value <= passing.ci95.high


def test_bundle_score_refuses_what_the_service_refuses(
    exported_bundle: Path, tmp_path: Path
) -> None:
    x = np.load(exported_bundle.parents[2] / "background.npy")[:100].copy()
    x[42, 3] = -1.0  # the features are declared non-negative
    with pytest.raises(BadSample, match=r"event 42, 'f3' = -1 is outside .* \[0, inf\]"):
        score_bundle(exported_bundle, _npy(tmp_path, x))
    with pytest.raises(BadSample, match=r"events of shape \[5\]; the bundle takes \[6\]"):
        score_bundle(exported_bundle, _npy(tmp_path, x[:, :5]))


def test_verify_and_score_on_the_command_line(exported_bundle: Path, tmp_path: Path, nae) -> None:
    verified = nae("bundle", "verify", exported_bundle)
    assert verified.returncode == 0 and verified.stdout.startswith("ok: test-features-ae v1")
    x = np.load(exported_bundle.parents[2] / "signal.npy")[:1000]
    scored = nae("bundle", "score", exported_bundle, _npy(tmp_path, x), "--out", tmp_path / "s.npy")
    assert scored.returncode == 0, scored.stderr
    assert "1000 events scored" in scored.stdout and "eff_1e-3:" in scored.stdout
    assert np.load(tmp_path / "s.npy").shape == (1000,)


def test_a_changed_byte_is_refused_by_verify_and_by_the_service(
    models_dir: Path, tmp_path: Path, nae
) -> None:
    directory = models_dir / "test-features-ae" / "1"
    model = bytearray((directory / MODEL_FILE).read_bytes())
    model[len(model) // 3] ^= 0x10
    (directory / MODEL_FILE).write_bytes(bytes(model))
    with pytest.raises(BadBundle, match=r"model\.onnx has sha256 .* promises"):
        verify_bundle(directory)
    refused = nae("bundle", "verify", directory)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "model.onnx has sha256" in refused.stderr
    with TestClient(create_app(Settings(models_dir=models_dir))) as client:
        assert "test-features-ae" not in client.get("/models").text
        reply = client.post("/score", json={"model": "test-features-ae", "inputs": [[1.0] * 6]})
    assert reply.status_code == 404


def test_drop_int8_withdraws_the_int8_file_and_keeps_the_rest(
    models_dir: Path, exported_bundle: Path, nae
) -> None:
    from service.runtime import OnnxModel
    from training.cards import bundle_card

    directory = models_dir / "test-features-ae" / "1"
    before = load_bundle(directory)
    assert INT8_FILE in before.files  # the fixture's static int8 passes its gate
    x = np.load(exported_bundle.parents[2] / "signal.npy")[:300]
    dropped = nae("bundle", "drop-int8", directory, "--why", "scores depend on the CPU")
    assert dropped.returncode == 0, dropped.stderr
    after = verify_bundle(directory)
    assert list(after.files) == [MODEL_FILE] and after.recommended == MODEL_FILE
    assert not (directory / INT8_FILE).exists()
    assert after.files[MODEL_FILE] == before.files[MODEL_FILE]
    assert after.working_points == before.working_points
    int8 = (after.model_extra or {})["int8"]
    assert int8["shipped"] is None
    assert int8["withdrawn"]["method"] == before.model_extra["int8"]["shipped"]
    assert int8["withdrawn"]["why"] == "scores depend on the CPU"
    with TestClient(create_app(Settings(models_dir=models_dir))) as client:
        reply = client.post("/score", json={"model": "test-features-ae", "inputs": x.tolist()})
    assert reply.status_code == 200
    fp32 = OnnxModel(before, exported_bundle, model_file=MODEL_FILE).score(x)
    np.testing.assert_array_equal(np.array(reply.json()["scores"], np.float32), fp32)
    card = bundle_card(directory)
    assert "**Withdrawn**" in card.markdown and card.row["int8"] == "withdrawn"
    again = nae("bundle", "drop-int8", directory, "--why", "twice")
    assert again.returncode == 1 and "ships no model.int8.onnx" in again.stderr


def _npy(directory: Path, x: np.ndarray) -> Path:
    path = directory / f"inputs-{x.shape[0]}x{x.shape[1]}.npy"
    np.save(path, x)
    return path
