"""Every Prometheus metric of contract 4 (docs/contracts.md), owned by one ``Metrics`` per app.

Per-event bookkeeping is vectorised: a request of 10,000 events costs a few whole-array numpy
calls for the ``nae_score`` histogram and one counter increment per working point, never a Python
call per event. Per-request bookkeeping avoids ``.labels()`` (a lock and a dict lookup on the
label tuple each time): the labelled children of a bundle are resolved once when the bundle is
loaded (``describe_bundles``), and those of an HTTP route and status on their first request.
The trigger-fraction and rate gauges are computed at scrape time from a sliding
window of small time slices, so an idle service does no work and the window is exact up to one
slice (1/60 of the window).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

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
_CALIBRATION_BOUNDS = ("low", "central", "high")
_CELL_BITS = 13  # float32 sign, exponent and 4 mantissa bits: cells of 1/16 octave
_SEARCH_MAX_EVENTS = 64  # below this, np.searchsorted is cheaper than the table lookup


@dataclass(frozen=True)
class _BundleSeries:
    """The labelled children one bundle version records into, resolved once."""

    events_scored: Any
    events_unscorable: Any
    events_triggered: tuple[Any, ...]  # one per working point, in the bundle's order
    inference_duration: Any
    batch_size: Any


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
        self.events_unscorable = Counter(
            "nae_events_unscorable",
            "Events refused (422) because the model gave them a score that is not finite.",
            ["model", "version"],
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
        self._series: dict[OnnxModel, _BundleSeries] = {}
        self._request_series: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._scores = _ScoreHistogram()
        self._window = _TriggerWindow(window_seconds, reference_rate_hz, clock)
        self._info = _ModelInfo()
        for collector in (self._scores, self._window, self._info):
            registry.register(collector)

    def describe_bundles(self, models: Iterable[OnnxModel]) -> None:
        """Publish ``nae_model_info`` and ``nae_calibrated_trigger_fraction`` for the loaded
        set, and resolve each bundle's counter series, which creates them at 0 so ``rate()``
        sees a bundle's first events."""
        models = list(models)
        self._info.models = models
        self._series = {model: self._bundle_series(model) for model in models}

    def record_scores(self, model: OnnxModel, scores: np.ndarray, fired: np.ndarray) -> None:
        """Count one scored batch of finite ``scores`` (``fired``: ``model.fired(scores)``):
        totals, triggered totals, score histogram, sliding window."""
        series = self._series_of(model)
        series.events_scored.inc(len(scores))
        triggered = np.count_nonzero(fired, axis=1).astype(np.int64, copy=False)
        for child, count in zip(series.events_triggered, triggered.tolist(), strict=True):
            if count:  # inc(0) changes nothing but costs a lock
                child.inc(count)
        self._scores.observe(model.name, str(model.version), scores)
        self._window.add(model, len(scores), triggered)

    def record_unscorable(self, model: OnnxModel, n_events: int) -> None:
        """Events whose score was not finite (their request was refused, nothing else counts
        them)."""
        self._series_of(model).events_unscorable.inc(n_events)

    def record_inference(self, model: OnnxModel, n_events: int, seconds: float) -> None:
        """One ONNX Runtime call."""
        series = self._series_of(model)
        series.inference_duration.observe(seconds)
        series.batch_size.observe(n_events)

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        """One finished HTTP request; ``endpoint`` is the route template, never the raw path,
        so the children cached here stay few."""
        children = self._request_series.get((endpoint, status))
        if children is None:
            children = (
                self.requests.labels(endpoint, str(status)),
                self.request_duration.labels(endpoint),
            )
            self._request_series[endpoint, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def _series_of(self, model: OnnxModel) -> _BundleSeries:
        # A request may still hold a model that a reload has just replaced: resolve it afresh.
        series = self._series.get(model)
        return series if series is not None else self._bundle_series(model)

    def _bundle_series(self, model: OnnxModel) -> _BundleSeries:
        version = str(model.version)
        return _BundleSeries(
            events_scored=self.events_scored.labels(model.name, version),
            events_unscorable=self.events_unscorable.labels(model.name, version),
            events_triggered=tuple(
                self.events_triggered.labels(model.name, version, working_point)
                for working_point in model.working_points
            ),
            inference_duration=self.inference_duration.labels(model.name),
            batch_size=self.batch_size.labels(model.name),
        )


class _ScoreHistogram(Collector):
    """``nae_score``: a histogram filled a whole batch at a time.

    Small batches use ``np.searchsorted``. For large float32 batches a binary search costs ~20 ns
    per score (a mispredicted branch per level), so the bucket is looked up instead: the top 13
    bits of a float32 (sign, exponent, 4 mantissa bits) cut the number line into cells of 1/16
    octave, narrower than the 1/4 decade between edges, so a cell holds at most one edge; a table
    gives the bucket of each cell's lower end, and one comparison with that bucket's upper edge
    moves scores above an edge inside the cell up by one. The result equals ``searchsorted``
    exactly. Scores are finite (``Scorer`` refuses the others), so the sum stays finite."""

    def __init__(self) -> None:
        self._edges = np.array(SCORE_BUCKETS)
        self._upper = np.append(self._edges, np.inf)  # bucket k holds (edges[k-1], edges[k]]
        cells = (np.arange(1 << _CELL_BITS, dtype=np.uint32) << (32 - _CELL_BITS)).view(np.float32)
        with np.errstate(invalid="ignore"):  # the cells that hold NaN
            self._bucket_of_cell = np.searchsorted(self._edges, cells, side="left")
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], list] = {}  # labels -> [bucket counts, sum]

    def observe(self, model: str, version: str, scores: np.ndarray) -> None:
        total = float(scores.sum(dtype=np.float64))
        counts = np.bincount(self._buckets(scores), minlength=len(self._upper))
        with self._lock:
            series = self._series.setdefault(
                (model, version), [np.zeros(len(self._upper), np.int64), 0.0]
            )
            series[0] += counts
            series[1] += total

    def _buckets(self, scores: np.ndarray) -> np.ndarray:
        """Index of each (finite) score's bucket ``(N,)``, ``le`` semantics."""
        if len(scores) < _SEARCH_MAX_EVENTS or scores.dtype != np.float32:
            return np.searchsorted(self._edges, scores, side="left")
        cells = np.ascontiguousarray(scores).view(np.uint32) >> (32 - _CELL_BITS)
        buckets = self._bucket_of_cell.take(cells)
        buckets += scores > self._upper.take(buckets)
        return buckets

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
    """What the loaded bundles declare, read from bundle.json at scrape time.

    ``nae_model_info``: one series per loaded bundle version and working point, labelled with
    the model file's sha256 and the threshold, so dashboards can show what is served.
    ``nae_calibrated_trigger_fraction``: each working point's calibrated background efficiency
    (``bound="central"``) and its Clopper-Pearson 95% interval (``"low"``, ``"high"``), which
    the alert rules in deploy/rules/ compare with the observed trigger fraction."""

    def __init__(self) -> None:
        self.models: list[OnnxModel] = []

    def describe(self) -> list[Metric]:
        return [
            GaugeMetricFamily(
                "nae_model_info",
                "Loaded bundles: model file sha256 and working point thresholds (value 1).",
                labels=["model", "version", "sha256", "working_point", "threshold"],
            ),
            GaugeMetricFamily(
                "nae_calibrated_trigger_fraction",
                "Calibrated background efficiency of each working point (bound=central) and its "
                "Clopper-Pearson 95% interval (bound=low, high), from bundle.json.",
                labels=["model", "version", "working_point", "bound"],
            ),
        ]

    def collect(self) -> Iterator[Metric]:
        family, calibrated = self.describe()
        for model in self.models:
            for working_point in model.bundle.working_points:
                low, high = working_point.background_efficiency_ci95
                values = (low, working_point.background_efficiency, high)
                for bound, value in zip(_CALIBRATION_BOUNDS, values, strict=True):
                    labels = [model.name, str(model.version), working_point.name, bound]
                    calibrated.add_metric(labels, value)
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
        yield calibrated
