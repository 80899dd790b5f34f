"""``Metrics``: contract-4 names and labels, vectorised bookkeeping, the sliding window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.bundle import load_bundle
from service.metrics import SCORE_BUCKETS, Metrics
from service.runtime import OnnxModel


class FakeClock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def model(tmp_path: Path, bundle_factory: Callable[..., Path]) -> OnnxModel:
    directory = bundle_factory(tmp_path, "ev", 3, (19, 4), {"loose": 70.0, "tight": 90.0})
    return OnnxModel(load_bundle(directory), directory)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _labels(**labels: str) -> frozenset:
    return frozenset(labels.items())


def test_every_contract_metric_is_exposed_with_its_labels(model: OnnxModel) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, window_seconds=60, reference_rate_hz=1000.0)
    metrics.describe_bundles([model])
    scores = np.array([10.0, 80.0, 95.0, 100.0], np.float32)
    metrics.record_scores(model, scores, model.fired(scores))
    metrics.record_inference(model, 4, 0.001)
    metrics.record_request("/score", 200, 0.002)
    samples = _samples(registry)
    ev = {"model": "ev", "version": "3"}
    assert samples["nae_events_scored_total", _labels(**ev)] == 4
    assert samples["nae_events_triggered_total", _labels(**ev, working_point="loose")] == 3
    assert samples["nae_events_triggered_total", _labels(**ev, working_point="tight")] == 2
    assert samples["nae_trigger_fraction", _labels(**ev, working_point="loose")] == 0.75
    assert samples["nae_trigger_rate_hz", _labels(**ev, working_point="tight")] == 500.0
    assert samples["nae_score_count", _labels(**ev)] == 4
    assert samples["nae_score_sum", _labels(**ev)] == pytest.approx(285.0)
    assert samples["nae_requests_total", _labels(endpoint="/score", status="200")] == 1
    assert samples["nae_request_duration_seconds_count", _labels(endpoint="/score")] == 1
    assert samples["nae_inference_duration_seconds_count", _labels(model="ev")] == 1
    assert samples["nae_batch_size_sum", _labels(model="ev")] == 4
    sha256 = model.bundle.files["model.onnx"].sha256
    info = _labels(**ev, sha256=sha256, working_point="tight", threshold="90.0")
    assert samples["nae_model_info", info] == 1


def test_calibrated_trigger_fraction_comes_from_the_bundle(model: OnnxModel) -> None:
    """The alert rules compare the observed fraction with this interval (deploy/rules/)."""
    registry = CollectorRegistry()
    Metrics(registry).describe_bundles([model])
    samples = _samples(registry)
    for working_point in model.bundle.working_points:
        low, high = working_point.background_efficiency_ci95
        expected = {"low": low, "central": working_point.background_efficiency, "high": high}
        for bound, value in expected.items():
            labels = _labels(model="ev", version="3", working_point=working_point.name, bound=bound)
            assert samples["nae_calibrated_trigger_fraction", labels] == value


@pytest.mark.parametrize("n_events", [5, 10_000])  # below and above the table lookup's size
def test_score_histogram_buckets_match_numpy(model: OnnxModel, n_events: int) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    edges = np.array(SCORE_BUCKETS, np.float32)  # and the float32 values either side of each
    around_edges = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, np.inf)])
    scores = np.concatenate(
        [
            np.random.default_rng(2).lognormal(0, 3, size=n_events).astype(np.float32),
            around_edges if n_events > 100 else [],
            [0.0, -1.0, 1e-30, 1e30],
        ]
    ).astype(np.float32)
    metrics.record_scores(model, scores, model.fired(scores))
    samples = _samples(registry)
    for edge in SCORE_BUCKETS:
        bucket = _labels(model="ev", version="3", le=str(edge))
        # The exact value of the edge, not its float32 rounding: the le label is that decimal.
        assert samples["nae_score_bucket", bucket] == np.count_nonzero(scores.astype(float) <= edge)
    assert samples["nae_score_count", _labels(model="ev", version="3")] == len(scores)


def test_counters_start_at_zero_for_loaded_bundles(model: OnnxModel) -> None:
    registry = CollectorRegistry()
    Metrics(registry).describe_bundles([model])
    samples = _samples(registry)
    assert samples["nae_events_scored_total", _labels(model="ev", version="3")] == 0
    assert (
        "nae_trigger_fraction",
        _labels(model="ev", version="3", working_point="loose"),
    ) not in (samples)


def test_the_trigger_window_forgets_old_events(model: OnnxModel) -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    metrics = Metrics(registry, window_seconds=10, reference_rate_hz=2.0, clock=clock)
    loose = _labels(model="ev", version="3", working_point="loose")
    everything = np.full(10, 100.0, np.float32)
    nothing = np.zeros(30, np.float32)
    metrics.record_scores(model, everything, model.fired(everything))
    clock.now += 5
    metrics.record_scores(model, nothing, model.fired(nothing))
    assert _samples(registry)["nae_trigger_fraction", loose] == pytest.approx(10 / 40)
    clock.now += 6  # the first batch leaves the window
    assert _samples(registry)["nae_trigger_fraction", loose] == 0.0
    assert _samples(registry)["nae_trigger_rate_hz", loose] == 0.0
    clock.now += 10  # nothing left: the gauge disappears rather than claiming 0/0
    assert ("nae_trigger_fraction", loose) not in _samples(registry)
    assert _samples(registry)["nae_events_scored_total", _labels(model="ev", version="3")] == 40
