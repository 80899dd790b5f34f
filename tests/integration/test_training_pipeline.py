"""Generate -> train -> evaluate through the installed ``nae`` command, on small real Pythia
samples: the SM mix as background, Z' -> mu mu as the signal (the event NAE of issue 8)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

TINY = [
    "train.ae_epochs=3",
    "train.ae_batch_size=64",
    "train.nae_iterations=20",
    "train.nae_batch_size=32",
    "train.checkpoint_every=10",
    "train.emd_points=64",
    "sampler.n_negatives=32",
]


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def samples(tmp_path_factory, nae) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samples")
    specs = {
        "train": ("sm", 200, 103),
        "background": ("sm", 150, 204),
        "signal": ("zprime_mumu", 100, 205),
    }
    for name, (process, n, seed) in specs.items():
        _ok(
            nae(
                "data",
                "events",
                "--process",
                process,
                "--n",
                n,
                "--seed",
                seed,
                "--shard-size",
                n,
                "--out",
                root / name,
            )
        )
    return {name: root / name for name in specs}


@pytest.mark.pythia
@pytest.mark.slow
def test_train_then_evaluate_an_event_nae(samples, tmp_path, nae):
    run = tmp_path / "run"
    sets = [f"--set=data.train=['{samples['train']}']", *(f"--set={s}" for s in TINY)]
    out = _ok(nae("train", "events-sm-nae", *sets, "--run-dir", run))
    assert "selected best.pt" in out
    assert {"config.toml", "metrics.jsonl", "summary.json"} <= {p.name for p in run.iterdir()}
    stages = [
        json.loads(line)["stage"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert stages == ["ae"] * 3 + ["nae"] * 2

    out = _ok(
        nae(
            "evaluate",
            run,
            "--background",
            samples["background"],
            "--signal",
            f"zprime_mumu={samples['signal']}",
            "--all-checkpoints",
        )
    )
    assert "zprime_mumu: AUC(reconstruction)" in out
    evaluation = run / "evaluation" / "best"
    report = json.loads((evaluation / "metrics.json").read_text())
    assert report["background"]["n"] == 150 and report["stage"] == "nae"
    metrics = report["signals"]["zprime_mumu"]["scores"]["reconstruction"]
    assert 0.0 <= metrics["auc"]["value"] <= 1.0 and metrics["auc"]["error"] > 0
    assert metrics["tpr_at_fpr_1e-05"]["value"] is None  # 150 events cannot reach 1e-5
    for png in ("roc.png", "scores.png", "negatives.png", "training.png"):
        assert (evaluation / png).stat().st_size > 1000
    table = json.loads((run / "evaluation" / "checkpoints.json").read_text())
    assert len(table["checkpoints"]) == 3 + 2
    assert table["best_auc"]["zprime_mumu"]["selected_minus_best"] <= 0
    assert table["rules"]["emd"]["step"] == table["selected"]["step"]  # the run's own rule
    assert "rule emd would select" in out


def test_bad_input_is_one_line(nae):
    result = nae("train", "no-such-recipe")
    assert result.returncode == 1
    assert result.stderr.startswith("error: config 'no-such-recipe'")
    assert len(result.stderr.strip().splitlines()) == 1
