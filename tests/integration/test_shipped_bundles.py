"""Every bundle shipped in models/, checked on data it has never seen and against tampering.

Calibration. For each bundle, a fresh background sample is generated here: the process and
generation config of the bundle's calibration sample (from its bundle.json provenance), with
seeds 90xx, apart from the training (101-103), test/calibration (201-208) and fresh (301-304)
seeds, and its shard seeds are checked to share none with the calibration or training samples.
It is scored through the service's runtime (``nae bundle score``'s code: the service's loader,
input checks and ``OnnxModel``) with every ONNX file the bundle ships. The rule is
``training.calibration.check_rate`` in its one-sample form (1,000 fresh events against the
calibration's 20,000 or more, whose own spread is small beside the fresh count's), per working
point with calibrated background efficiency eps and k of the n fresh events passing:

- where the fresh sample expects at least 5 passing events (n x eps >= 5), eps must lie inside
  the fresh sample's Clopper-Pearson 99% interval of k of n;
- elsewhere (too few expected to measure a rate) inside its 99.9% interval, which still
  catches a gross miscalibration (a 1e-4 working point passing 1% of new events).

Clopper-Pearson is conservative, so a well calibrated working point fails with probability
below 1% (0.1%); the calibration sample's own uncertainty (20,000 events against 1,000 here)
widens that only slightly. For a 1e-2 working point the 99% check fails at k <= 2 or k >= 20 of
1,000: with probability 0.6% when the rate is right, above one half when the true efficiency on
new data is below 0.25e-2 or above 2e-2 (a rate off by x4 low or x2 high). The seeds are fixed,
so the outcome is reproducible: a failure means the threshold does not give its rate on new
data (or the fresh events fall outside the bundle's input ranges, which fails the scoring).

Portability. A shipped int8 file scores the fresh sample with this CPU's int8 kernels as its
quantized graph does evaluated in float (``training.export.kernel_deviation``): an int8 file
whose kernels saturate on some CPUs (signed weights on AVX2 without VNNI) would give another
machine another rate.

Tampering. A changed byte in any ONNX file of a copy of the bundle is refused by
``nae bundle verify`` and by the service (not served; strict readiness answers 503).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.bundle import INT8_FILE, Bundle, load_bundle
from service.settings import Settings
from training.bundles import bundle_inputs, score_bundle, verify_bundle
from training.calibration import check_rate
from training.data.shards import describe_sample
from training.errors import BadBundle

N_FRESH = 1_000  # per background process, shared by every bundle calibrated on it
# 90xx: the test-sample seed (201-208, Makefile) of the process with 200 replaced by 9000;
# Z-gamma (test seed 402): 9402.
FRESH_SEEDS = {"qcd": 9001, "top": 9002, "dark": 9003, "sm": 9004, "zgamma": 9402}
FRESH_SEED_OTHER = 9099


def calibration_origin(bundle: Bundle, root: Path) -> tuple[str, Any, list[int]]:
    """``(verb, sample config, shard seeds to avoid)`` of a bundle's calibration sample, from
    its provenance; a bundle exported before the exporter recorded the sample's description
    is described from the sample itself where it is on disk (a relative path is taken from
    the directory above models/, where nae export ran)."""
    from training.config import EventSampleConfig, JetSampleConfig, ZgammaSampleConfig

    provenance = (bundle.model_extra or {}).get("provenance", {})
    sample = provenance.get("calibration_sample")
    if sample is None:
        pytest.fail(f"{bundle.name}: bundle.json records no calibration sample (not nae export's)")
    if "sample_config" not in sample:
        path = root / sample["path"]
        if not path.exists():
            pytest.fail(
                f"{bundle.name}: bundle.json does not say how its calibration sample was made "
                f"and {sample['path']} is not here: re-export it (nae export records it)"
            )
        sample = {**sample, **describe_sample(path)}
    if sample["sample_config"] is None:
        pytest.skip(f"{bundle.name}: calibrated on converted public data: no generator to rerun")
    avoid = [*sample["shard_seeds"]]
    for trained_on in provenance.get("training_samples", []):
        avoid += trained_on.get("shard_seeds", [])
    if bundle.kind == "event":
        return "events", EventSampleConfig.model_validate(sample["sample_config"]), avoid
    if bundle.kind == "event-features":
        return "zgamma", ZgammaSampleConfig.model_validate(sample["sample_config"]), avoid
    return "jets", JetSampleConfig.model_validate(sample["sample_config"]), avoid


def fresh_background(
    bundle: Bundle, directory: Path, pythia_sample: Callable[..., Path]
) -> tuple[Path, str]:
    """The fresh sample of ``N_FRESH`` events for a bundle (seed 90xx of its calibration
    process) and that process; its shards are checked to share no seed with the samples the
    bundle was made from."""
    verb, config, avoid = calibration_origin(bundle, root=directory.parents[2])
    seed = FRESH_SEEDS.get(config.process, FRESH_SEED_OTHER)
    fresh = pythia_sample(verb, config, N_FRESH, seed)
    overlap = set(describe_sample(fresh)["shard_seeds"]) & set(avoid)
    assert not overlap, f"seed {seed} repeats shards {overlap} the bundle was made from"
    return fresh, config.process


@pytest.mark.pythia
@pytest.mark.slow
def test_a_fresh_background_passes_each_working_point_at_its_calibrated_rate(
    shipped_bundle: Path, pythia_sample: Callable[..., Path]
) -> None:
    bundle = verify_bundle(shipped_bundle)
    fresh, process = fresh_background(bundle, shipped_bundle, pythia_sample)
    failures = []
    for model_file in bundle.files:
        summary = score_bundle(shipped_bundle, fresh, model_file=model_file)
        assert summary.n_events == N_FRESH
        for point in bundle.working_points:
            passing = summary.passing[point.name]
            check = check_rate(passing.n_passing, N_FRESH, point.background_efficiency)
            if not check.consistent:
                low, high = check.interval
                calibrated_low, calibrated_high = point.background_efficiency_ci95
                failures.append(
                    f"{model_file} {point.name}: {passing.n_passing} of {N_FRESH} fresh "
                    f"{process} events pass (CP {check.confidence:.1%} [{low:.3g}, "
                    f"{high:.3g}]), calibrated {point.background_efficiency:.3g} "
                    f"[{calibrated_low:.3g}, {calibrated_high:.3g}] on {point.n_background:,}"
                )
    assert not failures, f"{bundle.name} v{bundle.version}: " + "; ".join(failures)


@pytest.mark.pythia
@pytest.mark.slow
def test_a_shipped_int8_file_scores_alike_on_this_cpu(
    shipped_bundle: Path, pythia_sample: Callable[..., Path]
) -> None:
    from training.export import MAX_KERNEL_DEVIATION, kernel_deviation

    bundle = load_bundle(shipped_bundle)
    if INT8_FILE not in bundle.files:
        pytest.skip(f"{bundle.name} v{bundle.version} ships no int8 file")
    fresh, _ = fresh_background(bundle, shipped_bundle, pythia_sample)
    x = bundle_inputs(bundle, fresh).head(N_FRESH)
    deviation = kernel_deviation(shipped_bundle / INT8_FILE, x)
    assert deviation <= MAX_KERNEL_DEVIATION, f"{bundle.name} v{bundle.version}: {deviation:.3g}"


def test_a_changed_byte_in_any_onnx_file_is_refused(
    shipped_bundle: Path, tmp_path: Path, nae: Callable
) -> None:
    bundle = load_bundle(shipped_bundle)
    for model_file in bundle.files:
        models = tmp_path / model_file / "models"
        copy = shutil.copytree(shipped_bundle, models / bundle.name / str(bundle.version))
        data = bytearray((copy / model_file).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / model_file).write_bytes(bytes(data))
        with pytest.raises(BadBundle, match=rf"{model_file} has sha256 .* promises"):
            verify_bundle(copy)
        refused = nae("bundle", "verify", copy)
        assert refused.returncode == 1 and f"{model_file} has sha256" in refused.stderr
        with TestClient(create_app(Settings(models_dir=models))) as client:
            assert client.get(f"/models/{bundle.name}").status_code == 404
            ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "refused" in ready.json()["reason"]
