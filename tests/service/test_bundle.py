"""The bundle schema of contract 2, the hash checks and the writer the training side uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.bundle import (
    MODEL_FILE,
    Bundle,
    InvalidBundle,
    digest_files,
    load_bundle,
    sha256_file,
    write_bundle,
)

MINIMAL = {
    "schema_version": 1,
    "name": "jets-qcd-image-nae",
    "version": 1,
    "kind": "jet-image",
    "input": {"name": "x", "shape": [40, 40], "dtype": "float32", "features": ["pixel"]},
    "output": {"name": "score"},
    "files": {"model.onnx": {"sha256": "0" * 64}, "model.int8.onnx": {"sha256": "1" * 64}},
    "reference_rate_hz": 28608806.4,
    "working_points": [
        {
            "name": "eff_1e-3",
            "target_background_efficiency": 0.001,
            "threshold": 0.0123,
            "background_efficiency": 0.00098,
            "background_efficiency_ci95": [0.00080, 0.00119],
            "n_background": 100000,
            "expected_rate_hz": 28036.6,
        }
    ],
    "metrics": {"top": {"auc": 0.91, "rejection_at_eff_0.2": 80.0}},
}


def test_the_contracts_minimal_bundle_validates_and_keeps_extra_fields() -> None:
    bundle = Bundle.model_validate({**MINIMAL, "provenance": {"seed": 7}})
    assert bundle.working_points[0].threshold == 0.0123
    assert bundle.model_dump()["provenance"] == {"seed": 7}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kind": "muons"}, "kind"),
        ({"schema_version": 2}, "schema_version"),
        ({"files": {"weights.bin": {"sha256": "0" * 64}}}, "model.onnx"),
        ({"files": {"model.onnx": {"sha256": "xyz"}}}, "sha256"),
        ({"files": {"model.onnx": {"sha256": "0" * 64}, "../x": {"sha256": "0" * 64}}}, "plain"),
        ({"working_points": MINIMAL["working_points"] * 2}, "unique"),
        ({"name": "a/b"}, "name"),
    ],
)
def test_invalid_fields_are_refused(change: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Bundle.model_validate({**MINIMAL, **change})


def test_a_missing_required_field_is_refused() -> None:
    incomplete = {key: value for key, value in MINIMAL.items() if key != "working_points"}
    with pytest.raises(ValueError, match="working_points"):
        Bundle.model_validate(incomplete)


def _bundle_dir(tmp_path: Path) -> tuple[Path, Bundle]:
    directory = tmp_path / "jets-qcd-image-nae" / "1"
    directory.mkdir(parents=True)
    (directory / MODEL_FILE).write_bytes(b"not really onnx, but hashed all the same")
    bundle = Bundle.model_validate(
        {**MINIMAL, "files": digest_files(directory, [MODEL_FILE]), "extra": [1, 2]}
    )
    return directory, bundle


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    directory, bundle = _bundle_dir(tmp_path)
    path = write_bundle(directory, bundle)
    assert json.loads(path.read_text())["files"][MODEL_FILE]["sha256"] == sha256_file(
        directory / MODEL_FILE
    )
    assert load_bundle(directory) == bundle
    assert sorted(p.name for p in directory.iterdir()) == ["bundle.json", MODEL_FILE]


def test_a_file_that_changed_after_export_is_refused(tmp_path: Path) -> None:
    directory, bundle = _bundle_dir(tmp_path)
    write_bundle(directory, bundle)
    (directory / MODEL_FILE).write_bytes(b"tampered")
    with pytest.raises(InvalidBundle, match=r"model\.onnx has sha256 .* promises"):
        load_bundle(directory)


def test_writing_refuses_digests_that_do_not_match(tmp_path: Path) -> None:
    directory, _ = _bundle_dir(tmp_path)
    with pytest.raises(InvalidBundle, match=r"model\.onnx has sha256 .* promises 000000"):
        write_bundle(directory, Bundle.model_validate(MINIMAL))
    int8_missing = {
        **MINIMAL,
        "files": {**digest_files(directory, [MODEL_FILE]), "model.int8.onnx": {"sha256": "1" * 64}},
    }
    with pytest.raises(
        InvalidBundle, match=r"model\.int8\.onnx is listed in bundle\.json but missing"
    ):
        write_bundle(directory, Bundle.model_validate(int8_missing))
    assert not (directory / "bundle.json").exists()


def test_unreadable_and_invalid_json_give_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidBundle, match=r"cannot read bundle\.json"):
        load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(InvalidBundle, match=r"bundle\.json is invalid") as error:
        load_bundle(tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "ranges",
    [
        [[0.0, 1.0]],
        [[0.0, 1.0]] * 40,
        [[None, 1.0]] * 40,
        None,
    ],
)
def test_input_ranges_one_per_column_or_one_for_all(ranges: object) -> None:
    bundle = Bundle.model_validate({**MINIMAL, "input": {**MINIMAL["input"], "ranges": ranges}})
    bounds = bundle.input.column_bounds()
    assert len(bounds) == (0 if ranges is None else 40)


def test_input_ranges_by_feature_name() -> None:
    event_input = {
        "name": "x",
        "shape": [19, 4],
        "dtype": "float32",
        "features": ["pt", "eta", "phi", "class"],
        "ranges": {"pt": [0, 13000], "eta": [-5, 5]},
    }
    bundle = Bundle.model_validate({**MINIMAL, "input": event_input})
    assert bundle.input.column_bounds() == [(0, 13000), (-5, 5), (None, None), (None, None)]


@pytest.mark.parametrize(
    ("ranges", "features", "problem"),
    [
        ([[0, 1]] * 3, ["pixel"], "3 intervals; give 1 or one per entry of the last axis"),
        ([[1, 0]], ["pixel"], "low > high"),
        ({"pt": [0, 1]}, ["pixel"], "features naming all 40 entries"),
        ({"mass": [0, 1]}, [f"f{i}" for i in range(40)], "unknown features"),
    ],
)
def test_bad_input_ranges_are_refused(ranges: object, features: list[str], problem: str) -> None:
    spec = {**MINIMAL["input"], "ranges": ranges, "features": features}
    with pytest.raises(ValueError, match=problem):
        Bundle.model_validate({**MINIMAL, "input": spec})
