"""Model cards: what a tiny trained, evaluated and exported bundle's card quotes, that its rebuild
commands rebuild it, and the cards and table of a models directory."""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from service.bundle import load_bundle, sha256_file
from training.cards import BUNDLE_TABLE_BEGIN, BUNDLE_TABLE_END, bundle_card, write_cards
from training.data.shards import hash_sample
from training.errors import BadBundle, NaeError

NAME = "jets-test-features-pca"


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory, feature_shards: Callable) -> Path:
    """A PCA fit on seeded feature shards, evaluated, then exported with int8 and a signal as
    ``<tmp>/models/jets-test-features-pca/1``."""
    from training.config import load_run_config
    from training.evaluate import evaluate_run
    from training.export import export_run
    from training.train import train

    root = tmp_path_factory.mktemp("card")
    train_dir = feature_shards(root / "train", 3_000, seed=1)
    background = feature_shards(root / "background", 12_000, seed=2)
    signal = feature_shards(root / "signal", 2_000, seed=3, shift=1.5)
    overrides = [f"data.train=['{train_dir}']", "model.preprocessing=standardise"]
    train(load_run_config("jets-qcd-features-pca", overrides), root / "run")
    evaluate_run(root / "run", background=background, signals={"shift": signal}, plots=False)
    out = root / "models" / NAME / "1"
    export_run(
        root / "run",
        out,
        background=background,
        signals={"shift": signal},
        target_efficiencies=[1e-2, 1e-3],
        int8=True,
        timing_budget_s=0.2,
    )
    return out


def test_the_card_quotes_samples_metrics_working_points_int8_and_sizes(
    exported_run: Path,
) -> None:
    root = exported_run.parents[2]
    card = bundle_card(exported_run)
    text = card.markdown
    assert card.metrics_path == root / "run" / "evaluation" / "best" / "metrics.json"
    assert text.startswith(f"# {NAME}, version 1\n")
    for sample in ("train", "background", "signal"):
        assert f"`{hash_sample(root / sample)}`" in text, sample
    bundle = load_bundle(exported_run)
    for name in bundle.files:
        assert f"`{sha256_file(exported_run / name)}`" in text
    total = sum(path.stat().st_size for path in exported_run.iterdir())
    assert f"On disk: {total / 1024:.1f} KiB in all." in text
    report = json.loads(card.metrics_path.read_text())
    auc = report["signals"]["shift"]["scores"]["reconstruction"]["auc"]
    assert f"| {auc['value']:.4f} +- {auc['error']:.4f} |" in text
    assert "needs 100,000 background" in text  # TPR at 1e-4 is out of 12,000 events' reach
    for point in bundle.working_points:
        low, high = point.background_efficiency_ci95
        row = next(line for line in text.splitlines() if line.startswith(f"| `{point.name}` | "))
        assert f"{point.threshold:.6g} [" in row
        assert f"{point.background_efficiency:.3g} [{low:.3g}, {high:.3g}]" in row
        assert f"/ {point.n_background:,}" in row
    record = bundle.model_extra["int8"]
    assert f"Shipped: **{record['shipped'] or 'no'}**" in text
    for method, gate in record["gates"].items():
        assert f"### {method} quantization: " in text
        assert f"{gate['spearman']:.6f}" in text
        for timing in gate["timings"]:
            assert f"| {timing['batch_size']:,} | {timing['fp32_cpu_s'] * 1e3:.4g} |" in text
    assert card.row["size"] == f"{total / 1024:.1f} KiB"


@pytest.mark.slow
def test_the_cards_rebuild_commands_rebuild_the_run_and_its_metrics(
    exported_run: Path, tmp_path: Path, nae: Callable
) -> None:
    """The train line, run into a new directory, fits the same model; the evaluate line
    writes the same metrics.json; the export line is the one export_run was called with."""
    root = exported_run.parents[2]
    text = bundle_card(exported_run).markdown
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    train_line, evaluate_line, export_line = block[:3]
    assert export_line == shlex.join(
        ["nae", "export", str(root / "run"), "--out", str(exported_run), "--calibrate",
         str(root / "background"), "--signal", f"shift={root / 'signal'}", "--int8",
         "--bkg-eff", "0.01,0.001"]
    )  # fmt: skip
    train = shlex.split(train_line)
    train[train.index("--run-dir") + 1] = str(tmp_path / "again")
    assert nae(*train[1:]).returncode == 0
    before = json.loads((root / "run" / "summary.json").read_text())
    after = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert after["selection_value"] == before["selection_value"]
    metrics = root / "run" / "evaluation" / "best" / "metrics.json"
    written = metrics.read_text()
    metrics.unlink()
    evaluated = nae(*shlex.split(evaluate_line)[1:])
    assert evaluated.returncode == 0, evaluated.stderr
    assert metrics.read_text() == written


def test_metrics_of_another_checkpoint_are_refused(exported_run: Path, tmp_path: Path) -> None:
    report = json.loads((exported_run.parents[2] / "run/evaluation/best/metrics.json").read_text())
    report["step"] = 7
    (tmp_path / "metrics.json").write_text(json.dumps(report))
    with pytest.raises(NaeError, match="evaluates stage pca step 7, but the bundle holds"):
        bundle_card(exported_run, metrics=tmp_path / "metrics.json")


def test_metrics_of_another_training_are_refused_when_given_and_skipped_when_found(
    exported_run: Path, tmp_path: Path
) -> None:
    report = json.loads((exported_run.parents[2] / "run/evaluation/best/metrics.json").read_text())
    assert report["selection_metric"], "the fixture's checkpoint records no selection metric"
    report["selection_metric"] = {
        name: 2 * value for name, value in report["selection_metric"].items()
    }
    (tmp_path / "metrics.json").write_text(json.dumps(report))
    with pytest.raises(NaeError, match=r"another training\)"):
        bundle_card(exported_run, metrics=tmp_path / "metrics.json")
    # Found in the run directory rather than given, it is not quoted: the card falls back to
    # the export's own metrics.
    found = exported_run.parents[2] / "run/evaluation/best/metrics.json"
    original = found.read_text()
    found.write_text(json.dumps(report))
    try:
        assert bundle_card(exported_run).metrics_path is None
    finally:
        found.write_text(original)
    assert bundle_card(exported_run).metrics_path == found


def test_cards_of_a_models_directory_and_its_table(
    exported_run: Path, tmp_path: Path, bundle_factory: Callable
) -> None:
    """The highest version of each bundle gets a card, a contract-minimal bundle (no
    provenance) too, and the README table between its markers is replaced."""
    models = tmp_path / "models"
    shutil.copytree(exported_run, models / NAME / "1")
    bundle_factory(models, "events-minimal", 1, (19, 3))
    bundle_factory(models, "events-minimal", 2, (19, 3))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bundles\n\n{BUNDLE_TABLE_BEGIN}\nold\n{BUNDLE_TABLE_END}\n\nAfter.\n")
    written = write_cards(models, tmp_path / "cards", readme=readme, root=tmp_path)
    assert [path.name for path in written] == ["events-minimal.md", f"{NAME}.md"]
    minimal = written[0].read_text()
    assert minimal.startswith("# events-minimal, version 2\n")
    assert "The bundle records no run" in minimal and "Not requested at export" in minimal
    table = readme.read_text()
    assert "old" not in table and table.endswith(f"{BUNDLE_TABLE_END}\n\nAfter.\n")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split(" | ")[0] for row in rows] == ["| `events-minimal`", f"| `{NAME}`"]
    assert "[events-minimal](cards/events-minimal.md)" in rows[0]
    readme.write_text("no markers\n")
    with pytest.raises(NaeError, match="no bundle table to replace"):
        write_cards(models, tmp_path / "cards", readme=readme)


def test_a_card_whose_run_metrics_are_gone_is_kept_not_rewritten_poorer(
    exported_run: Path, tmp_path: Path
) -> None:
    """Cards rewritten on a machine without the run's metrics.json keep the card (and table
    row) written from the same export where it was at hand; a new export is written anew."""
    models = tmp_path / "models"
    shutil.copytree(exported_run, models / NAME / "1")
    readme = tmp_path / "README.md"
    readme.write_text(f"{BUNDLE_TABLE_BEGIN}\n{BUNDLE_TABLE_END}\n")
    (card,) = write_cards(models, tmp_path / "cards", readme=readme, root=tmp_path)
    first, table = card.read_text(), readme.read_text()
    assert "From `nae evaluate`" in first
    evaluation = exported_run.parents[2] / "run" / "evaluation"
    evaluation.rename(evaluation.with_name("evaluation.away"))
    try:
        assert bundle_card(models / NAME / "1").metrics_path is None
        assert write_cards(models, tmp_path / "cards", readme=readme, root=tmp_path) == []
        assert card.read_text() == first and readme.read_text() == table
        bundle = json.loads((models / NAME / "1" / "bundle.json").read_text())
        bundle["provenance"]["exported_at"] = "2030-01-01T00:00:00+00:00"  # another export
        (models / NAME / "1" / "bundle.json").write_text(json.dumps(bundle))
        assert write_cards(models, tmp_path / "cards", readme=readme, root=tmp_path) == [card]
        assert "From `nae evaluate`" not in card.read_text()
    finally:
        evaluation.with_name("evaluation.away").rename(evaluation)


def test_a_card_is_refused_for_a_tampered_or_misplaced_bundle(
    exported_run: Path, tmp_path: Path, nae: Callable
) -> None:
    copy = shutil.copytree(exported_run, tmp_path / "models" / NAME / "1")
    misplaced = shutil.copytree(exported_run, tmp_path / "elsewhere" / "1")
    with pytest.raises(BadBundle, match=f"holds {NAME} v1; a shipped bundle lives in"):
        bundle_card(misplaced)
    model = bytearray((copy / "model.onnx").read_bytes())
    model[len(model) // 2] ^= 0x01
    (copy / "model.onnx").write_bytes(bytes(model))
    refused = nae("bundle", "card", copy)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "model.onnx has sha256" in refused.stderr


def test_the_card_checks_the_working_points_on_a_fresh_background(
    exported_run: Path, tmp_path: Path, feature_shards: Callable
) -> None:
    """A fresh sample of the same population (another seed) is consistent at every working
    point; a shifted one (more passing) is not; the calibration sample itself is refused; and
    data/fresh/<process> under the root is found without being named."""
    root = exported_run.parents[2]
    same = feature_shards(tmp_path / "data" / "fresh" / "test", 12_000, seed=4)
    card = bundle_card(exported_run, root=tmp_path)
    assert card.fresh_path == same and card.row["fresh check"] == "consistent"
    fresh_section = card.markdown.split("## On a fresh background", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in fresh_section.splitlines() if line.startswith("| `model")]
    bundle = load_bundle(exported_run)
    assert len(rows) == len(bundle.files) * len(bundle.working_points)
    assert all("consistent (two-sample p " in row for row in rows)
    shifted = feature_shards(tmp_path / "shifted", 12_000, seed=5, shift=0.6)
    card = bundle_card(exported_run, fresh=shifted)
    assert card.row["fresh check"].startswith("inconsistent at eff_1e-")
    assert "**inconsistent**" in card.markdown
    with pytest.raises(NaeError, match=r"shares shards \(seeds \[2\]\) with the bundle's"):
        bundle_card(exported_run, fresh=root / "background")
