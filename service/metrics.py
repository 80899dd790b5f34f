"""Every Prometheus metric of DESIGN.md contract 4, owned by one ``Metrics`` object per app.

Per-event bookkeeping is vectorised: a request of 10,000 events costs one ``np.searchsorted``
for the ``nae_score`` histogram and one counter increment per working point, never a Python call
per event. The trigger-fraction and rate gauges are computed at scrape time from a sliding
window of small time slices, so an idle service does no work and the window is exact up to one
slice (1/60 of the window).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from service.bundle import MODEL_FILE
from service.runtime import OnnxModel

__all__ = ["DURATION_BUCKETS_SECONDS", "SCORE_BUCKETS", "Metrics"]

# 100 µs .. 10 s: a request is sub-millisecond for single events and seconds for huge batches.
DURATION_BUCKETS_SECONDS = (
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Reconstruction-error scores span decades: four log-spaced buckets per decade, 1e-4 .. 1e4.
SCORE_BUCKETS = tuple(float(f"{edge:.4g}") for edge in np.logspace(-4, 4, 33))
BATCH_SIZE_BUCKETS = tuple(float(2**k) for k in range(17))  # 1 .. 65536 events
_SLICES_PER_WINDOW = 60


class Metrics:
    """Owns the metrics of one app in ``registry``; the API and data plane call ``record_*``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        window_seconds: float = 60.0,
        reference_rate_hz: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.events_scored = Counter(
            "nae_events_scored", "Events scored.", ["model", "version"], registry=registry
        )
        self.events_triggered = Counter(
            "nae_events_triggered",
            "Events whose score exceeds the working point's threshold.",
            ["model", "version", "working_point"],
            registry=registry,
        )
        self.requests = Counter(
            "nae_requests", "HTTP requests by route and status.", ["endpoint", "status"],
            registry=registry,
        )  # fmt: skip
        self.request_duration = Histogram(
            "nae_request_duration_seconds",
            "Time from request start to response end, by route.",
            ["endpoint"],
            buckets=DURATION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "nae_inference_duration_seconds",
            "ONNX Runtime time per call.",
            ["model"],
            buckets=DURATION_BUCKETS_SECONDS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "nae_batch_size",
            "Events per ONNX Runtime call (after micro-batching).",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.batch_queue_depth = Gauge(
            "nae_batch_queue_depth",
            "Requests waiting in the micro-batcher.",
            ["model"],
            registry=registry,
        )
        self._scores = _ScoreHistogram()
        self._window = _TriggerWindow(window_seconds, reference_rate_hz, clock)
        self._info = _ModelInfo()
        for collector in (self._scores, self._window, self._info):
            registry.register(collector)

    def describe_bundles(self, models: Iterable[OnnxModel]) -> None:
        """Publish ``nae_model_info`` for the loaded set and create every counter series at 0,
        so ``rate()`` sees a bundle's first events."""
        models = list(models)
        self._info.models = models
        for model in models:
            version = str(model.version)
            self.events_scored.labels(model.name, version)
            for working_point in model.working_points:
                self.events_triggered.labels(model.name, version, working_point)

    def record_scores(
        self, model: OnnxModel, scores: np.ndarray, triggers: dict[str, np.ndarray]
    ) -> None:
        """Count one scored batch: totals, triggered totals, score histogram, sliding window."""
        version = str(model.version)
        self.events_scored.labels(model.name, version).inc(len(scores))
        triggered = np.array([int(np.count_nonzero(fired)) for fired in triggers.values()])
        for working_point, count in zip(model.working_points, triggered, strict=True):
            self.events_triggered.labels(model.name, version, working_point).inc(int(count))
        self._scores.observe(model.name, version, scores)
        self._window.add(model, len(scores), triggered)

    def record_inference(self, model_name: str, n_events: int, seconds: float) -> None:
        """One ONNX Runtime call."""
        self.inference_duration.labels(model_name).observe(seconds)
        self.batch_size.labels(model_name).observe(n_events)

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        """One finished HTTP request; ``endpoint`` is the route template, never the raw path."""
        self.requests.labels(endpoint, str(status)).inc()
        self.request_duration.labels(endpoint).observe(seconds)


class _ScoreHistogram(Collector):
    """``nae_score``: a histogram filled a whole batch at a time with ``np.searchsorted``."""

    def __init__(self) -> None:
        self._edges = np.array(SCORE_BUCKETS)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], list] = {}  # labels -> [bucket counts, sum]

    def observe(self, model: str, version: str, scores: np.ndarray) -> None:
        buckets = np.searchsorted(self._edges, scores, side="left")  # le semantics
        counts = np.bincount(buckets, minlength=len(self._edges) + 1)
        total = float(np.nansum(scores, dtype=np.float64))
        with self._lock:
            series = self._series.setdefault(
                (model, version), [np.zeros(len(self._edges) + 1, np.int64), 0.0]
            )
            series[0] += counts
            series[1] += total

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily("nae_score", "Anomaly scores.", labels=["model", "version"])]

    def collect(self) -> Iterator[Metric]:
        family = self.describe()[0]
        with self._lock:
            snapshot = [
                (key, counts.copy(), total) for key, (counts, total) in self._series.items()
            ]
        bounds = [*map(str, SCORE_BUCKETS), "+Inf"]
        for labels, counts, total in snapshot:
            cumulative = np.cumsum(counts).tolist()
            family.add_metric(list(labels), list(zip(bounds, cumulative, strict=True)), total)
        yield family


class _TriggerWindow(Collector):
    """``nae_trigger_fraction`` and ``nae_trigger_rate_hz`` over the last ``window_seconds``.

    Each (model, version) keeps a deque of time slices ``[slice index, scored, triggered per
    working point]``; a scrape sums the slices still inside the window. A series disappears when
    its window holds no events: a fraction of nothing is undefined, not zero."""

    def __init__(
        self, window_seconds: float, reference_rate_hz: float, clock: Callable[[], float]
    ) -> None:
        self._slice_seconds = window_seconds / _SLICES_PER_WINDOW
        self._reference_rate_hz = reference_rate_hz
        self._clock = clock
        self._lock = threading.Lock()
        self._slices: dict[tuple[str, str], tuple[tuple[str, ...], deque]] = {}

    def add(self, model: OnnxModel, n_scored: int, triggered: np.ndarray) -> None:
        now_slice = int(self._clock() / self._slice_seconds)
        key = (model.name, str(model.version))
        with self._lock:
            _, slices = self._slices.setdefault(key, (model.working_points, deque()))
            if slices and slices[-1][0] == now_slice:
                slices[-1][1] += n_scored
                slices[-1][2] += triggered
            else:
                slices.append([now_slice, n_scored, triggered.astype(np.int64)])
            self._expire(slices, now_slice)

    def describe(self) -> list[Metric]:
        labels = ["model", "version", "working_point"]
        return [
            GaugeMetricFamily(
                "nae_trigger_fraction",
                "Fraction of events triggered over the sliding window.",
                labels=labels,
            ),
            GaugeMetricFamily(
                "nae_trigger_rate_hz",
                "Trigger fraction over the window times the reference input rate [Hz].",
                labels=labels,
            ),
        ]

    def collect(self) -> Iterator[Metric]:
        fraction_family, rate_family = self.describe()
        now_slice = int(self._clock() / self._slice_seconds)
        with self._lock:
            totals = []
            for key, (working_points, slices) in list(self._slices.items()):
                self._expire(slices, now_slice)
                if not slices:
                    del self._slices[key]
                    continue
                scored = sum(item[1] for item in slices)
                triggered = np.sum([item[2] for item in slices], axis=0)
                totals.append((key, working_points, scored, triggered))
        for (name, version), working_points, scored, triggered in totals:
            for working_point, count in zip(working_points, triggered, strict=True):
                fraction = float(count) / scored
                fraction_family.add_metric([name, version, working_point], fraction)
                rate_family.add_metric(
                    [name, version, working_point], fraction * self._reference_rate_hz
                )
        yield fraction_family
        yield rate_family

    @staticmethod
    def _expire(slices: deque, now_slice: int) -> None:
        while slices and slices[0][0] <= now_slice - _SLICES_PER_WINDOW:
            slices.popleft()


class _ModelInfo(Collector):
    """``nae_model_info``: one series per loaded bundle version and working point, labelled with
    the model file's sha256 and the threshold, so dashboards can show what is served."""

    def __init__(self) -> None:
        self.models: list[OnnxModel] = []

    def describe(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "nae_model_info",
                "Loaded bundles: model file sha256 and working point thresholds (value 1).",
                labels=["model", "version", "sha256", "working_point", "threshold"],
            )
        ]

    def collect(self) -> Iterator[Metric]:
        family = self.describe()[0]
        for model in self.models:
            sha256 = model.bundle.files[MODEL_FILE].sha256
            for working_point in model.bundle.working_points or [None]:
                family.add_metric(
                    [
                        model.name,
                        str(model.version),
                        sha256,
                        working_point.name if working_point else "",
                        repr(working_point.threshold) if working_point else "",
                    ],
                    1.0,
                )
        yield family
