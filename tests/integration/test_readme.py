"""The README's "first minute": its curl lines, run as printed (host and port rewritten) against
a real uvicorn server over HTTP on a free port, must answer scores and trigger decisions that
agree with the bundles' thresholds and with the offline runtime on the same example files.

The server serves every bundle of the repository's models/. A bundle the README names that
is not shipped yet gets a stand-in under its name: the bundle's own recipe, fitted as a PCA on
200 real Pythia jets or events and exported (thresholds on 150 others) by ``nae export``'s
code, so that it has the shipped bundle's name, kind, input shape, features and ranges. Once the
real bundle is in models/, it is used instead, with no change here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## The first minute"
PRINTED_ADDRESS = "http://127.0.0.1:8000"
STAND_IN_EVENTS = {"train": (200, 9301), "calibration": (150, 9302)}  # (n, seed) per sample

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def first_minute() -> str:
    """The README's first-minute section."""
    return README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]


def readme_curl_lines() -> list[str]:
    """The curl commands of the README's first-minute bash block, continuation lines joined."""
    block = first_minute().split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [line.strip() for line in block.splitlines() if line.strip().startswith("curl ")]


def planned_bundle_names() -> set[str]:
    """The bundles models/README.md says are shipped (its table of how they are made)."""
    text = (ROOT / "models" / "README.md").read_text()
    return set(re.findall(r"^\| `([a-z0-9-]+)` \| `", text, re.M))


def example_stem(line: str) -> str | None:
    """The examples/ file a curl line sends (``STEM`` of ``@examples/STEM.<form>``)."""
    match = re.search(r"@examples/([A-Za-z0-9_-]+)\.(?:score\.json|v2\.json|npy)", line)
    return match.group(1) if match else None


def bundle_of(line: str) -> str | None:
    """The bundle a curl line scores with: its /v2 path, ``?model=`` or the body's model."""
    if match := re.search(r"/v2/models/([^/]+)/infer", line):
        return match.group(1)
    if match := re.search(r"[?&]model=([A-Za-z0-9._-]+)", line):
        return match.group(1)
    if (stem := example_stem(line)) and ".score.json" in line:
        return json.loads((ROOT / "examples" / f"{stem}.score.json").read_text())["model"]
    return None


def test_the_readme_scores_the_examples_with_shipped_bundle_names() -> None:
    lines = readme_curl_lines()
    scoring = [line for line in lines if example_stem(line)]
    assert len(scoring) >= 4, "the first minute scores example files"
    names = {bundle_of(line) for line in scoring}
    assert names <= planned_bundle_names(), names - planned_bundle_names()
    assert any("/score" in line for line in scoring) and any("/v2/" in line for line in scoring)


@pytest.fixture(scope="module")
def models_dir(
    tmp_path_factory: pytest.TempPathFactory,
    shipped_bundles: list[Path],
    pythia_sample: Callable[..., Path],
) -> Path:
    """Every shipped bundle (linked), plus a stand-in for each README bundle not shipped."""
    models = tmp_path_factory.mktemp("readme") / "models"
    models.mkdir()
    for name in sorted({directory.parent for directory in shipped_bundles}):
        (models / name.name).symlink_to(name, target_is_directory=True)
    wanted = {bundle_of(line) for line in readme_curl_lines()} - {None}
    for name in sorted(wanted - {path.name for path in models.iterdir()}):
        _export_stand_in(models, name, pythia_sample)
    return models


def _export_stand_in(models: Path, name: str, pythia_sample: Callable[..., Path]) -> None:
    """``models/NAME/1`` from NAME's recipe as a PCA fit on real Pythia samples of the recipe's
    training process (``data/train/<process>``), exported with two working points."""
    import training.export
    from training.config import EventSampleConfig, JetSampleConfig, load_run_config
    from training.train import train

    recipe = load_run_config(name)
    process = Path(recipe.data.train[0]).name
    verb, sample_config = (
        ("events", EventSampleConfig(process=process))
        if recipe.data.input == "events"
        else ("jets", JetSampleConfig(process=process))
    )
    samples = {
        role: pythia_sample(verb, sample_config, n, seed)
        for role, (n, seed) in STAND_IN_EVENTS.items()
    }
    overrides = [
        "model.family=pca", "model.architecture=dense", "model.spherical=false",
        "model.spectral_norm=false", f"data.train=['{samples['train']}']",
    ]  # fmt: skip
    run = models.parent / "runs" / name
    train(load_run_config(name, overrides), run)
    with pytest.MonkeyPatch.context() as patch:  # parity on the 150 events there are
        patch.setattr(training.export, "MIN_PARITY_EVENTS", 100)
        training.export.export_run(
            run,
            models / name / "1",
            background=samples["calibration"],
            target_efficiencies=[0.2, 0.1],
        )


@pytest.fixture(scope="module")
def server(
    models_dir: Path, live_server: Callable[..., AbstractContextManager[str]]
) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a real uvicorn serving ``models_dir``."""
    from service.settings import Settings

    with live_server(Settings(models_dir=models_dir)) as address:
        yield f"http://{address}"


def _line_id(line: str) -> str:
    route = "v2" if "/v2/models" in line else "score" if "/score" in line else "ready"
    return f"{route}-{example_stem(line)}" if example_stem(line) else route


@pytest.mark.pythia
@pytest.mark.parametrize("line", readme_curl_lines(), ids=_line_id)
def test_each_curl_line_answers_as_the_readme_says(
    line: str, server: str, models_dir: Path
) -> None:
    command = line.replace(PRINTED_ADDRESS, server)
    assert command != line, f"the README line does not use {PRINTED_ADDRESS}: {line}"
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert "error" not in answer, answer
    if "/v2/health/ready" in line:
        assert answer == {"ready": True}
        return
    name, stem = bundle_of(line), example_stem(line)
    x = np.load(ROOT / "examples" / f"{stem}.npy")
    summary = httpx.get(f"{server}/models/{name}", timeout=10).json()
    default = [v for v in summary["versions"] if v["version"] == summary["default_version"]]
    assert len(default) == 1, summary  # a request without a version is scored by the default
    version = default[0]
    thresholds = {wp["name"]: wp["threshold"] for wp in version["working_points"]}
    if "/v2/" in line:
        score = next(output for output in answer["outputs"] if output["name"] == "score")
        assert score["datatype"] == "FP32" and score["shape"] == [len(x)]
        assert isinstance(answer["model_version"], str)  # the protocol's versions are strings
    identity, scores, triggers = answer_parts(answer)
    assert identity == (name, version["version"])
    _check_scores(name, models_dir, x, scores, triggers, thresholds)


def answer_parts(answer: dict[str, Any]) -> tuple[tuple[str, int], list[Any], dict[str, list]]:
    """``((bundle, version), scores, {working point: decisions})`` of a ``/score`` answer or an
    Open Inference Protocol one (``score`` and ``trigger_<point>`` outputs)."""
    if "model_name" not in answer:
        return (answer["model"], answer["version"]), answer["scores"], answer["triggers"]
    outputs = {output["name"]: output["data"] for output in answer["outputs"]}
    triggers = {
        key.removeprefix("trigger_"): value
        for key, value in outputs.items()
        if key.startswith("trigger_")
    }
    return (answer["model_name"], int(answer["model_version"])), outputs["score"], triggers


def _check_scores(
    name: str,
    models_dir: Path,
    x: np.ndarray,
    scores: list[Any],
    triggers: dict[str, list[Any]],
    thresholds: dict[str, float],
) -> None:
    """One finite score per example, equal to the offline runtime's on the .npy, and per
    working point the decisions score > threshold."""
    from service.bundle import load_bundle
    from service.runtime import OnnxModel

    served = np.array(scores, np.float32)
    assert served.shape == (len(x),) and np.isfinite(served).all()
    directory = max((models_dir / name).iterdir(), key=lambda path: int(path.name))
    offline = OnnxModel(load_bundle(directory), directory).score(x)
    np.testing.assert_array_equal(served, offline)
    assert set(triggers) == set(thresholds)
    for point, threshold in thresholds.items():
        assert triggers[point] == (served > np.float32(threshold)).tolist(), point


@pytest.mark.pythia
def test_the_stand_ins_are_exports_of_the_named_recipes(
    models_dir: Path, shipped_bundles: list[Path]
) -> None:
    """A stand-in has what the shipped bundle will have (the name, kind, input shape,
    features and ranges of its recipe) and was made by nae export's code; a shipped bundle
    is linked as it is."""
    from service.bundle import load_bundle
    from training.config import load_run_config
    from training.data.inputs import default_features, default_ranges
    from training.models.families import input_shape

    kinds = {"images": "jet-image", "features": "jet-features", "events": "event"}
    for link in sorted(models_dir.iterdir()):
        if link.is_symlink():
            assert link.resolve() in {directory.parent.resolve() for directory in shipped_bundles}
            continue
        (directory,) = link.iterdir()
        bundle = load_bundle(directory)
        recipe = load_run_config(bundle.name).data
        kind = kinds[recipe.input]
        features = default_features(kind, input_shape(recipe), recipe.features)
        assert (bundle.kind, tuple(bundle.input.shape)) == (kind, input_shape(recipe))
        assert bundle.input.features == features
        assert bundle.input.column_bounds()[: len(features) or 1] == [
            tuple(pair) for pair in default_ranges(kind, features)
        ]
        export = shlex.split(bundle.model_extra["provenance"]["commands"]["export"])
        assert export[:5] == ["nae", "export", str(models_dir.parent / "runs" / bundle.name),
                              "--out", str(directory)]  # fmt: skip


def printed_answers() -> list[dict[str, Any]]:
    """The answers the first minute prints, one JSON object per line of its json blocks."""
    blocks = [block.split("```", 1)[0] for block in first_minute().split("```json\n")[1:]]
    return [json.loads(line) for block in blocks for line in block.splitlines() if line.strip()]


def test_the_printed_answers_are_the_shipped_bundles_answers() -> None:
    """Each printed answer, paired in order with the scoring curl lines of its form (``/score``
    or ``/v2``), names the version a request without one gets (the highest shipped) and the
    scores and decisions the offline runtime gives on the example file. Scores to 1e-5: the
    printed ones are another machine's float32 arithmetic."""
    from service.bundle import load_bundle
    from service.runtime import OnnxModel

    answers = printed_answers()
    for form, key in (("/v2/", "model_name"), ("/score", "model")):
        lines = [line for line in readme_curl_lines() if example_stem(line) and form in line]
        printed = [answer for answer in answers if key in answer]
        assert len(printed) == len(lines), f"{form}: {len(lines)} lines, {len(printed)} answers"
        for line, answer in zip(lines, printed, strict=True):
            name = bundle_of(line)
            shipped = ROOT / "models" / str(name)
            if not shipped.is_dir():
                continue  # a stand-in's answers are not printed
            directory = max(shipped.iterdir(), key=lambda path: int(path.name))
            bundle = load_bundle(directory)
            scores = OnnxModel(bundle, directory).score(
                np.load(ROOT / "examples" / f"{example_stem(line)}.npy")
            )
            identity, served, triggers = answer_parts(answer)
            assert identity == (name, bundle.version), line
            np.testing.assert_allclose(served, scores, rtol=1e-5, err_msg=line)
            assert triggers == {
                point.name: (scores > np.float32(point.threshold)).tolist()
                for point in bundle.working_points
            }, line
