"""Export: the ONNX interface, parity per family, the int8 gate and the bundle it writes."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.bundle import BUNDLE_FILE, INT8_FILE, MODEL_FILE, load_bundle, sha256_file
from training.calibration import calibrate
from training.data.inputs import Inputs
from training.errors import ExportFailed
from training.export import (
    MAX_BATCH_DEPENDENCE,
    MAX_KERNEL_DEVIATION,
    MIN_PARITY_EVENTS,
    OPSET,
    SampleScores,
    _git_state,
    check_parity,
    export_bundle,
    export_onnx,
    export_run,
    int8_gate,
    kernel_deviation,
    quantize,
)


@pytest.mark.parametrize("family", ["dense", "conv", "vae", "pca"])
def test_each_family_exports_the_contract_interface_with_parity(
    family: str, make_family: Callable, tmp_path: Path
) -> None:
    model, x = make_family(family)
    path = tmp_path / MODEL_FILE
    export_onnx(model, x, path)
    parity = check_parity(model, path, x[:MIN_PARITY_EVENTS])
    assert parity.n_events == MIN_PARITY_EVENTS
    assert parity.max_relative_difference <= 1e-5
    graph = onnx.load(path)
    assert [opset.version for opset in graph.opset_import if opset.domain == ""] == [OPSET]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_FILE]  # no external weights
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (node,) = session.get_inputs()
    assert (node.name, node.type, node.shape[1:]) == ("x", "tensor(float)", list(x.shape[1:]))
    assert isinstance(node.shape[0], str)  # the batch axis is symbolic
    for batch_size in (1, 3):
        (scores,) = session.run(["score"], {"x": x[:batch_size]})
        assert scores.shape == (batch_size,) and scores.dtype == np.float32


def test_parity_fails_for_a_graph_that_is_not_the_model(
    make_family: Callable, tmp_path: Path
) -> None:
    model, x = make_family("dense")
    export_onnx(model, x, tmp_path / MODEL_FILE)
    with torch.no_grad():
        model.net[-1].bias += 1e-3  # torch changes, the exported graph does not
    with pytest.raises(ExportFailed, match="ONNX Runtime and torch disagree"):
        check_parity(model, tmp_path / MODEL_FILE, x[:MIN_PARITY_EVENTS])


def test_a_model_that_does_not_return_n_scores_is_refused(tmp_path: Path) -> None:
    class Columns(torch.nn.Module):
        def forward(self, x):
            return x[:, :1] * 2.0  # (N, 1), not (N,)

    with pytest.raises(ExportFailed, match=r"shape \(N,\)"):
        export_onnx(Columns(), np.ones((4, 3), np.float32), tmp_path / MODEL_FILE)


def test_int8_gate_refuses_a_rate_shift_and_a_missing_signal() -> None:
    rng = np.random.default_rng(4)
    fp32 = SampleScores(rng.exponential(size=50_000).astype(np.float32), {})
    calibrations = calibrate(fp32.background, [1e-2, 1e-3], reference_rate_hz=1.0)
    faithful = int8_gate("static", fp32, SampleScores(fp32.background * 1.0001, {}), calibrations)
    assert faithful.spearman == pytest.approx(1.0)
    assert all(point["inside_ci95"] for point in faithful.working_points)
    assert faithful.reasons == [
        "AUC gate not evaluated: no signal sample given (--signal NAME=DATA)"
    ]
    shifted = int8_gate("static", fp32, SampleScores(fp32.background * 1.05, {}), calibrations)
    assert [point["inside_ci95"] for point in shifted.working_points] == [False, False]
    assert shifted.working_points[0]["int8_background_efficiency_at_own_threshold"] == 0.01
    assert shifted.reasons[0].startswith("eff_1e-2: int8 background efficiency")


def test_int8_gate_on_auc() -> None:
    rng = np.random.default_rng(5)
    background = rng.normal(size=20_000).astype(np.float32)
    signal = rng.normal(1.0, 1.0, size=5_000).astype(np.float32)
    fp32 = SampleScores(background, {"s": signal})
    calibrations = calibrate(background, [1e-2], reference_rate_hz=1.0)
    closer = signal - np.float32(0.1)  # AUC of N(0.9, 1) vs N(0, 1): 0.022 below N(1, 1)'s
    gate = int8_gate("dynamic", fp32, SampleScores(background, {"s": closer}), calibrations)
    assert gate.auc_change["s"] < -0.005
    assert not gate.passed and "s: AUC changes by" in gate.reasons[0]


def test_exported_bundle_is_complete_and_consistent(exported_bundle: Path) -> None:
    bundle = load_bundle(exported_bundle)
    raw = json.loads((exported_bundle / BUNDLE_FILE).read_text())
    assert set(bundle.files) <= {MODEL_FILE, INT8_FILE}
    assert sorted(p.name for p in exported_bundle.iterdir()) == sorted([BUNDLE_FILE, *bundle.files])
    assert bundle.input.shape == [6] and bundle.input.features == [f"f{i}" for i in range(6)]
    assert [wp.name for wp in bundle.working_points] == ["eff_1e-2", "eff_1e-3"]
    assert [wp.n_background for wp in bundle.working_points] == [30_000, 30_000]
    assert raw["parity"]["n_events"] >= MIN_PARITY_EVENTS
    assert raw["parity"]["max_relative_difference"] <= 1e-5
    assert 0.5 < bundle.metrics["shifted"]["auc"] <= 1.0
    calibration = raw["provenance"]["calibration_sample"]
    assert calibration["sha256"] == sha256_file(exported_bundle.parents[2] / "background.npy")
    assert raw["provenance"]["code_version"] and raw["provenance"]["tools"]["onnxruntime"]
    assert raw["model"]["family"] == "dense-ae"


@pytest.mark.parametrize("family", ["dense", "conv"])
def test_static_int8_scores_as_its_quantized_graph_in_float(
    family: str, make_family: Callable, tmp_path: Path
) -> None:
    """The int8 kernels give the scores of the QDQ graph evaluated in float, so a bundle's
    int8 rates hold on every CPU. Signed 8-bit weights fail this on an x86 CPU with AVX2 and
    no VNNI (measured in session 23 on such a machine: 0.14 on the dense model, 0.0028 on the
    conv model, against 0 and 2e-6 unsigned); elsewhere they pass it too."""
    model, x = make_family(family)
    export_onnx(model, x, tmp_path / MODEL_FILE)
    quantize(tmp_path / MODEL_FILE, tmp_path / INT8_FILE, "static", x[:4096])
    assert kernel_deviation(tmp_path / INT8_FILE, x[:256]) <= MAX_KERNEL_DEVIATION


def test_exported_bundle_records_the_int8_gates(exported_bundle: Path) -> None:
    raw = json.loads((exported_bundle / BUNDLE_FILE).read_text())
    record = raw["int8"]
    assert set(record["gates"]) == {"static", "dynamic"}
    for gate in record["gates"].values():
        assert [t["batch_size"] for t in gate["timings"]] == [1, 256, 4096]
        assert all(t["fp32_cpu_s"] > 0 and t["int8_cpu_s"] > 0 for t in gate["timings"])
        assert gate["spearman"] > 0.99
        assert set(gate["auc_change"]) == {"shifted"}
        assert gate["passed"] == (not gate["reasons"])
    # dynamic int8 takes activation scales from each batch: an event's score depends on its
    # neighbours, so it never ships; static QDQ has fixed scales
    dynamic, static = record["gates"]["dynamic"], record["gates"]["static"]
    assert dynamic["batch_dependence"] > MAX_BATCH_DEPENDENCE and not dynamic["passed"]
    assert any("depend on the batch" in reason for reason in dynamic["reasons"])
    assert static["batch_dependence"] <= MAX_BATCH_DEPENDENCE
    assert record["criteria"]["max_kernel_deviation"] == MAX_KERNEL_DEVIATION
    assert all(
        gate["kernel_deviation"] <= MAX_KERNEL_DEVIATION for gate in record["gates"].values()
    )
    shipped = record["shipped"]
    assert (INT8_FILE in raw["files"]) == (shipped is not None)
    if raw["recommended"] == INT8_FILE:
        timings = record["gates"][shipped]["timings"]
        assert all(t["speedup"] > 1 for t in timings if t["batch_size"] >= 256)


def test_export_refuses_an_existing_bundle_and_ranges_the_background_breaks(
    exported_bundle: Path, make_family: Callable, tmp_path: Path
) -> None:
    model, _ = make_family("dense")
    features = tuple(load_bundle(exported_bundle).input.features)
    inputs = Inputs(exported_bundle.parents[2] / "background.npy", "jet-features", features)
    with pytest.raises(ExportFailed, match="already holds files"):
        export_bundle(model, exported_bundle, name="n", version=1, kind="jet-features",
                      background=inputs)  # fmt: skip
    with pytest.raises(ExportFailed, match=r"f0 spans .* outside the declared input range"):
        export_bundle(
            model,
            tmp_path / "n" / "1",
            name="n",
            version=1,
            kind="jet-features",
            background=inputs,
            ranges=[(0.0, 1.0)] * 6,
        )
    assert list((tmp_path / "n").iterdir()) == []  # a failed export leaves nothing


def test_service_refuses_a_tampered_export(exported_bundle: Path, tmp_path: Path) -> None:
    from service.bundle import InvalidBundle

    copy = shutil.copytree(exported_bundle, tmp_path / "bundle")
    model = bytearray((copy / MODEL_FILE).read_bytes())
    model[len(model) // 2] ^= 0x01
    (copy / MODEL_FILE).write_bytes(bytes(model))
    with pytest.raises(InvalidBundle, match=r"model\.onnx has sha256"):
        load_bundle(copy)


def test_nae_export_of_a_trained_run(tmp_path: Path, feature_shards: Callable) -> None:
    """train (a PCA fit) -> ``nae export`` -> a bundle whose provenance names the run."""
    from training.config import load_run_config
    from training.data.shards import hash_sample
    from training.train import train

    train_dir = feature_shards(tmp_path / "train", 3_000, seed=1)
    background = feature_shards(tmp_path / "background", 12_000, seed=2)
    signal = feature_shards(tmp_path / "signal", 2_000, seed=3, shift=1.5)
    overrides = [f"data.train=['{train_dir}']", "model.preprocessing=standardise"]
    train(load_run_config("jets-qcd-features-pca", overrides), tmp_path / "run")
    out = tmp_path / "models" / "jets-test-pca" / "1"
    with pytest.raises(ExportFailed, match="is one the run trained on"):
        export_run(tmp_path / "run", out, background=train_dir)
    nae = Path(sys.executable).with_name("nae")
    command = [nae, "export", tmp_path / "run", "--out", out, "--calibrate", background]
    done = subprocess.run(
        [*map(str, command), "--bkg-eff", "1e-2,1e-3", "--signal", f"shift={signal}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "jets-test-pca v1 (jet-features)" in done.stdout and "eff_1e-3: score >" in done.stdout
    bundle = load_bundle(out)
    provenance = bundle.model_extra["provenance"]
    assert bundle.input.features == [
        "msd [GeV]", "tau21", "tau32", "c2_b1", "d2_b1", "ptd", "major_axis", "minor_axis"
    ]  # fmt: skip
    (trained_on,) = provenance["training_samples"]
    assert trained_on["path"] == str(train_dir) and trained_on["sha256"] == hash_sample(train_dir)
    assert (trained_on["process"], trained_on["n_events"]) == ("test", 3_000)
    calibration = provenance["calibration_sample"]
    assert calibration["sha256"] == hash_sample(background) and calibration["shard_seeds"] == [2]
    assert provenance["checkpoint"]["stage"] == "pca" and provenance["seed"] == 1
    assert provenance["checkpoint"]["name"] == "best"
    config_toml = provenance["config_toml"]
    assert hashlib.sha256(config_toml.encode()).hexdigest() == provenance["config_sha256"]
    assert load_run_config(_written(tmp_path / "c.toml", config_toml)) == load_run_config(
        tmp_path / "run" / "config.toml"
    )
    # The recorded commands are the ones that made it: the data.train override makes the
    # run's config no recipe's, so the train line names the run's config.toml.
    assert provenance["commands"] == {
        "train": f"nae train {tmp_path / 'run' / 'config.toml'} --run-dir {tmp_path / 'run'}",
        "export": shlex.join(
            ["nae", "export", str(tmp_path / "run"), "--out", str(out), "--calibrate",
             str(background), "--signal", f"shift={signal}", "--bkg-eff", "0.01,0.001"]
        ),
    }  # fmt: skip
    assert bundle.model_extra["model"]["family"] == "pca"
    assert bundle.metrics["shift"]["auc"] > 0.5


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_an_export_that_recommends_int8_checks_and_serves_the_int8_file(
    exported_bundle: Path, make_family: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last check of an export scores a few events through the service's loader with
    every file it ships, each against that file's own scores: with int8 recommended (timings
    that make int8 faster, since real speed-ups depend on the machine), the bundle serves
    int8 and the export completes (it used to compare int8's scores with fp32's and fail)."""
    import training.export as export

    def int8_faster(paths: dict[str, Path], inputs: np.ndarray, **_: object) -> dict:
        return {
            name: dict.fromkeys((1, 256, 4096), 1.0 if name == "fp32" else 0.5) for name in paths
        }

    monkeypatch.setattr(export, "time_models", int8_faster)
    samples = exported_bundle.parents[2]
    features = tuple(load_bundle(exported_bundle).input.features)
    model, _ = make_family("dense")
    bundle = export_bundle(
        model,
        tmp_path / "models" / "test-features-ae" / "1",
        name="test-features-ae",
        version=1,
        kind="jet-features",
        background=Inputs(samples / "background.npy", "jet-features", features),
        signals={"shifted": Inputs(samples / "signal.npy", "jet-features", features)},
        target_efficiencies=[1e-2],
        int8=True,
    )
    assert bundle.recommended == INT8_FILE, bundle.model_extra["int8"]
    from service.runtime import OnnxModel

    directory = tmp_path / "models" / "test-features-ae" / "1"
    x = np.load(samples / "signal.npy")[:100]
    served = OnnxModel(load_bundle(directory), directory).score(x)
    fp32 = OnnxModel(load_bundle(directory), directory, model_file=MODEL_FILE).score(x)
    assert not np.array_equal(served, fp32)  # the int8 graph really is what is served


def test_the_train_command_of_an_nae_started_from_an_ae_run_rebuilds_both(tmp_path: Path):
    from training.config import config_to_toml, load_config
    from training.export import _train_command

    ae_run = tmp_path / "jets-qcd-image-ae-seed2"
    ae_run.mkdir()
    ae = load_config("jets-qcd-image-ae", ["train.seed=2"])
    (ae_run / "config.toml").write_text(config_to_toml(ae))
    start = [f"train.init_from={ae_run}", "train.ae_epochs=0"]
    nae = load_config("jets-qcd-image-nae", ["train.seed=2", *start])
    first, second = _train_command(nae, "runs/n").splitlines()
    assert first == f"nae train jets-qcd-image-ae --set train.seed=2 --run-dir {ae_run}"
    assert shlex.split(second)[:3] == ["nae", "train", "jets-qcd-image-nae"]
    rebuilt = load_config("jets-qcd-image-nae", [a for a in shlex.split(second) if "=" in a])
    assert rebuilt == nae
    shutil.rmtree(ae_run)  # the AE run gone: the card still says where the NAE started
    assert _train_command(nae, "runs/n").splitlines()[0].startswith("# first: the AE run")


def test_provenance_counts_only_code_changes_as_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    for name in ("training/model.py", "models/README.md", "docs/card.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("first\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    (tmp_path / "models/README.md").write_text("a bundle being written\n")
    (tmp_path / "docs/card.md").write_text("its card\n")
    assert _git_state(tmp_path)["dirty"] is False
    (tmp_path / "training/model.py").write_text("changed code\n")
    state = _git_state(tmp_path)
    assert state["dirty"] is True
    assert len(state["commit"]) == 40
