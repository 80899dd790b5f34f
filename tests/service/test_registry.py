"""``ModelRegistry``: every version loads, bad bundles are refused alone, reloads are atomic."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from service.errors import BadInput, ModelNotFound, ReloadFailed
from service.registry import ModelRegistry


def test_loads_every_version_and_defaults_to_the_highest(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    for version in (1, 3, 2):
        bundle_factory(tmp_path, "ev", version, (19, 4))
    registry = ModelRegistry(tmp_path)
    assert registry.readiness() == "bundles are still loading"
    report = registry.load()
    assert registry.readiness() is None
    assert report.loaded == ["ev/1", "ev/2", "ev/3"] and report.refused == {}
    assert registry.resolve("ev").version == 3
    assert registry.resolve(None).version == 3  # the only name is the default
    assert registry.resolve("ev", 2).version == 2
    with pytest.raises(ModelNotFound, match="no version 7"):
        registry.resolve("ev", 7)
    with pytest.raises(ModelNotFound, match="no bundle named 'jets'"):
        registry.resolve("jets")


def test_default_model_is_configurable_and_ambiguity_is_an_error(
    models_dir: Path,
) -> None:
    registry = ModelRegistry(models_dir)
    registry.load()
    with pytest.raises(BadInput, match="name a model: several bundles are loaded"):
        registry.resolve(None)
    chosen = ModelRegistry(models_dir, default_model="jets-test-image-nae")
    chosen.load()
    assert chosen.resolve(None).input_shape == (40, 40)


def test_strict_readiness_needs_the_directory_a_bundle_and_no_refusal(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    models = tmp_path / "models"
    registry = ModelRegistry(models)
    assert registry.load().loaded == []
    assert registry.readiness() == "the models directory is missing"
    with pytest.raises(ModelNotFound, match="no bundle is loaded"):
        registry.resolve(None)
    models.mkdir()
    registry.load()
    assert registry.readiness() == "no bundle is loaded"
    bundle_factory(models, "ev", 1, (19, 4))
    _corrupt_hash(bundle_factory(models, "bad", 1, (19, 4)))
    registry.load()
    assert registry.readiness() == (
        "1 bundle(s) refused at the last load: bad/1 (the reasons are in the log and in the "
        "answer of POST /admin/reload)"
    )
    shutil.rmtree(models / "bad")
    registry.load()
    assert registry.readiness() is None


@pytest.mark.parametrize("make", ["missing", "empty", "refused"])
def test_without_strict_readiness_a_read_directory_is_ready(
    tmp_path: Path, bundle_factory: Callable[..., Path], make: str
) -> None:
    models = tmp_path / "models"
    if make != "missing":
        models.mkdir()
    if make == "refused":
        _corrupt_hash(bundle_factory(models, "bad", 1, (19, 4)))
    registry = ModelRegistry(models, strict_readiness=False)
    assert registry.readiness() == "bundles are still loading"
    registry.load()
    assert registry.readiness() is None


def _corrupt_hash(directory: Path) -> None:
    (directory / "model.onnx").write_bytes((directory / "model.onnx").read_bytes() + b"\0")


def _break_schema(directory: Path) -> None:
    bundle = json.loads((directory / "bundle.json").read_text())
    del bundle["working_points"]
    (directory / "bundle.json").write_text(json.dumps(bundle))


@pytest.mark.parametrize("damage", [_corrupt_hash, _break_schema])
def test_a_bad_bundle_is_refused_with_one_log_line_while_the_others_load(
    tmp_path: Path,
    bundle_factory: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], None],
) -> None:
    bundle_factory(tmp_path, "ev", 1, (19, 4))
    damage(bundle_factory(tmp_path, "bad", 1, (19, 4)))
    registry = ModelRegistry(tmp_path)
    with caplog.at_level(logging.ERROR, logger="service.registry"):
        report = registry.load()
    assert report.loaded == ["ev/1"]
    assert list(report.refused) == ["bad/1"]
    assert str(tmp_path) not in report.refused["bad/1"]  # the report goes to clients
    refusals = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(refusals) == 1 and str(tmp_path / "bad" / "1") in refusals[0].getMessage()
    assert "\n" not in refusals[0].getMessage()


def test_a_bundle_in_the_wrong_directory_is_refused(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    shutil.move(bundle_factory(tmp_path, "ev", 1, (19, 4)), tmp_path / "ev" / "2")
    report = ModelRegistry(tmp_path).load()
    assert report.loaded == [] and "move it to ev/1/" in next(iter(report.refused.values()))


def test_reload_keeps_served_bundles_whose_new_files_are_invalid(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    bundle_factory(tmp_path, "ev", 1, (19, 4))
    registry = ModelRegistry(tmp_path)
    registry.load()
    served = registry.resolve("ev")
    _corrupt_hash(tmp_path / "ev" / "1")
    bundle_factory(tmp_path, "ev", 2, (19, 4))
    _break_schema(tmp_path / "ev" / "2")
    report = registry.load()
    assert report.kept == ["ev/1"] and report.loaded == []
    assert len(report.refused) == 2
    assert registry.resolve("ev") is served


def test_reload_swaps_in_new_versions_and_drops_deleted_ones(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    bundle_factory(tmp_path, "ev", 1, (19, 4))
    bundle_factory(tmp_path, "old", 1, (19, 4))
    registry = ModelRegistry(tmp_path)
    registry.load()
    before = registry.models
    bundle_factory(tmp_path, "ev", 2, (19, 4))
    shutil.rmtree(tmp_path / "old")
    registry.load()
    assert sorted(registry.models.versions) == ["ev"]
    assert registry.resolve("ev").version == 2
    assert sorted(before.versions) == ["ev", "old"]  # a snapshot never changes under a reader


def test_reload_without_the_models_directory_keeps_the_old_set(
    tmp_path: Path, bundle_factory: Callable[..., Path]
) -> None:
    models = tmp_path / "models"
    bundle_factory(models, "ev", 1, (19, 4))
    registry = ModelRegistry(models)
    registry.load()
    shutil.rmtree(models)
    with pytest.raises(ReloadFailed, match="still serving the 1 loaded bundles"):
        registry.load()
    assert registry.resolve("ev").version == 1


def _replace_graph(directory: Path, graph: object) -> None:
    """Swap the bundle's model.onnx for ``graph`` and re-digest it: the hash is right, the
    graph is the problem."""
    import onnx

    from service.bundle import MODEL_FILE, Bundle, digest_files, write_bundle

    onnx.save(graph, directory / MODEL_FILE)
    raw = json.loads((directory / "bundle.json").read_text())
    raw["files"] = digest_files(directory, [MODEL_FILE])
    write_bundle(directory, Bundle.model_validate(raw))


def _graph(input_type: int, reshape_to: list[int] | None = None) -> object:
    """``x [batch, 19, 4] -> score [batch]``: sum of squares, input of ``input_type``; with
    ``reshape_to``, a Reshape that fails at run time first."""
    from onnx import TensorProto, helper

    nodes, initializers, source = [], [], "x"
    if reshape_to is not None:
        initializers.append(
            helper.make_tensor("to", TensorProto.INT64, [len(reshape_to)], reshape_to)
        )
        nodes.append(helper.make_node("Reshape", ["x", "to"], ["reshaped"]))
        source = "reshaped"
    nodes += [
        helper.make_node("Mul", [source, source], ["squared"]),
        helper.make_node("ReduceSum", ["squared", "axes"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["summed"], ["score"], to=TensorProto.FLOAT),
    ]
    initializers.append(helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]))
    graph = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("x", input_type, ["batch", 19, 4])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(
    ("graph", "problem"),
    [
        ("float64 input", "input 'x' is tensor\\(double\\); the contract is float32"),
        ("fails its test run", "fails its test run on one event of zeros"),
        ("unforeseen error", "unexpected RuntimeError while loading"),
    ],
)
def test_a_bundle_that_loads_but_cannot_run_is_refused_beside_a_good_one(
    tmp_path: Path,
    bundle_factory: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    graph: str,
    problem: str,
) -> None:
    from onnx import TensorProto

    from service import registry as registry_module

    bundle_factory(tmp_path, "ev", 1, (19, 4))
    bad = bundle_factory(tmp_path, "ev", 2, (19, 4))
    if graph == "float64 input":
        _replace_graph(bad, _graph(TensorProto.DOUBLE))
    elif graph == "fails its test run":
        _replace_graph(bad, _graph(TensorProto.FLOAT, reshape_to=[5, 19, 4]))
    else:
        real = registry_module.OnnxModel

        def flaky(bundle: object, directory: Path, **options: object) -> object:
            if directory == bad:
                raise RuntimeError("something nobody foresaw")
            return real(bundle, directory, **options)

        monkeypatch.setattr(registry_module, "OnnxModel", flaky)
    registry = ModelRegistry(tmp_path)
    report = registry.load()  # no exception escapes
    assert report.loaded == ["ev/1"]
    assert list(report.refused) == ["ev/2"]
    assert re.search(problem, report.refused["ev/2"]), report.refused["ev/2"]
    assert registry.resolve("ev").version == 1
    assert registry.readiness() is not None  # strict: a refusal makes it not ready
