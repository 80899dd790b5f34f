"""A generator run end to end on tiny real Z-gamma samples: train, resume refused, generate,
evaluate (fidelity, speed, classification, plots), export as an event-features bundle; and
the classifier two-sample test on samples whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.config import load_config
from training.data.shards import read_shard, shard_info
from training.errors import NaeError
from training.generator_evaluation import classifier_two_sample_test, evaluate_generator
from training.generator_training import train_generator
from training.synthesis import generate_sample


def test_classifier_two_sample_test_tells_shifted_samples_apart_and_not_equal_ones():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(4000, 3))
    same = classifier_two_sample_test(rng.normal(size=(4000, 3)), reference, epochs=5)
    assert abs(same["auc"]["value"] - 0.5) < 4 * same["auc"]["error"] + 0.02
    assert same["n_test_each"] == 2000
    shifted = rng.normal(size=(4000, 3)) + np.array([0.0, 0.0, 1.0])
    different = classifier_two_sample_test(shifted, reference, epochs=5)
    # one unit normal 1 sigma off: the best classifier's AUC is Phi(1/sqrt(2)) = 0.76
    assert different["auc"]["value"] == pytest.approx(0.76, abs=0.04)


@pytest.mark.pythia
def test_generator_pipeline_trains_generates_evaluates_and_exports(zgamma_samples, tmp_path):
    from service.bundle import load_bundle
    from service.runtime import OnnxModel
    from training.export import export_run

    overrides = [
        f'data.train=["{zgamma_samples["train"]}"]',
        f"data.background={zgamma_samples['test']}",
        f"data.signals.h_zgamma={zgamma_samples['signal']}",
        "model.hidden=[32, 32]",
        "model.latent_dim=4",
        "model.n_quantiles=64",
        "train.epochs=2",
        "train.batch_size=64",
    ]
    config = load_config("zgamma-vae-nf-d", overrides)
    run = tmp_path / "run"
    summary = train_generator(config, run)
    assert summary.family == "vae_nf_d" and summary.selected.is_file()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
    with pytest.raises(NaeError, match="complete"):
        train_generator(config, run, resume=True)

    paths = generate_sample(run, n=12_000, out_dir=tmp_path / "generated", seed=3, shard_size=7000)
    assert [shard_info(p).n for p in paths] == [7000, 5000]
    generated = read_shard(paths[0]).arrays
    counts = generated["features/n_jets"]
    assert np.array_equal(counts, np.round(counts)) and shard_info(paths[0]).kind == "table"

    result = evaluate_generator(run, n_bootstrap=5)
    report = json.loads((result.out_dir / "metrics.json").read_text())
    assert report["background"]["n"] == 50
    assert set(report["fidelity"]["features"]) == set(config.data.features)
    assert 0 <= report["fidelity"]["classifier_two_sample"]["auc"]["value"] <= 1
    assert report["speed"]["simulation"]["events"] == 50 and report["speed"]["speedup"] > 0
    scores = report["signals"]["h_zgamma"]["scores"]
    assert set(scores) == {"reconstruction", "kl", "mu2", "latent_nll", "discriminator"}
    for figure in ("overlays.png", "correlations.png", "latent.png", "roc.png"):
        assert (result.out_dir / figure).stat().st_size > 0

    # generated events calibrate here only because 10k held-out Pythia events are too slow
    # for a unit test; the study calibrates on held-out Monte Carlo
    bundle_dir = tmp_path / "models" / "zgamma-test" / "1"
    bundle = export_run(
        run, bundle_dir, background=tmp_path / "generated", score="latent_nll",
        signals={"h_zgamma": zgamma_samples["signal"]}, target_efficiencies=(1e-2, 1e-3),
    )  # fmt: skip
    assert bundle.kind == "event-features" and bundle.input.shape == [18]
    assert bundle.input.features[0] == "m_llg [GeV]"
    served = OnnxModel(load_bundle(bundle_dir), bundle_dir)
    x = np.stack([generated[f"features/{n}"] for n in config.data.features], axis=1)[:100]
    assert served.score(x).shape == (100,)
    with pytest.raises(NaeError, match="discriminator"):
        export_run(run, tmp_path / "models" / "x" / "1", background=tmp_path / "generated",
                   score="no_such_score")  # fmt: skip
