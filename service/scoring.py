"""The data plane shared by ``/score`` and ``/v2``: resolve the bundle -> validate the batch ->
run ONNX Runtime (inline or on the inference thread), apply the thresholds and count (once per
merged batch through the micro-batcher) -> return arrays. HTTP formats stay in ``api``; this
layer sees only numpy arrays.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.batching import MicroBatcher
from service.codecs import check_batch
from service.errors import Unscorable
from service.memory import release_freed_memory
from service.metrics import Metrics
from service.registry import LoadReport, ModelRegistry
from service.runtime import OnnxModel
from service.settings import Settings

__all__ = ["ScoreResult", "Scorer"]


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~1 us to build
class ScoreResult:
    """Scores ``(N,)`` float32 and, per working point, triggers ``(N,)`` bool."""

    model: OnnxModel
    scores: np.ndarray
    triggers: dict[str, np.ndarray]


class Scorer:
    """Scores batches on the registry's models and keeps the metrics in step."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, settings: Settings) -> None:
        self.registry = registry
        self.metrics = metrics
        self.settings = settings
        self.in_flight = 0
        """Scoring requests being served (maintained by the HTTP layer, ``serve_hot``)."""
        self._inference: ThreadPoolExecutor | None = None  # started on first use
        # One batcher per loaded model, dropped with the model when a reload replaces it.
        self._batchers: weakref.WeakKeyDictionary[OnnxModel, MicroBatcher] = (
            weakref.WeakKeyDictionary()
        )

    def load_bundles(self) -> LoadReport:
        """(Re)load the registry, publish the new set in ``nae_model_info`` and give the heap's
        free pages back to the kernel. Blocking: call it from a worker thread.

        The sessions a reload replaces are freed when the last request holding them ends, and
        ``service.memory``'s retention settings would keep their pages in the heap for good:
        a service reloaded under load grew with every reload. Trimming here returns what the
        previous reload freed."""
        report = self.registry.load()
        self.metrics.describe_bundles(self.registry.models)
        release_freed_memory()
        return report

    def close(self) -> None:
        """Stop the inference threads once their work is done (the app's shutdown; a later
        request starts new ones)."""
        inference, self._inference = self._inference, None
        if inference is not None:
            inference.shutdown(wait=True)

    def resolve(self, name: str | None, version: int | None = None) -> OnnxModel:
        """The model a request names (``ModelNotFound`` otherwise)."""
        return self.registry.resolve(name, version)

    async def score(self, model: OnnxModel, x: np.ndarray) -> ScoreResult:
        """Validate ``x`` ``(N, *input_shape)`` for ``model``, score it, count it. Nothing is
        counted unless the whole batch was scored; a micro-batched request is counted with
        the merged batch it was scored in.

        A score that is not finite (an input far outside what the model was trained on, e.g.
        1e19 overflowing float32) has no trigger meaning: the request is refused with 422
        naming the event, its non-finite events are counted in ``nae_events_unscorable_total``
        and nothing else is counted, so every answered score is a finite number."""
        x = check_batch(
            x, model.input_shape, max_batch_size=self.settings.max_batch_size, ranges=model.ranges
        )
        if self.settings.batching_enabled:
            scores, fired, counted = await self._batcher(model).score(x)
        else:
            scores, fired, counted = await self._score_and_count(
                model, x, may_hop=self.in_flight > 1
            )
        if not counted[0]:
            self._count_alone(model, scores, fired)
        triggers = dict(zip(model.working_points, fired, strict=True))
        return ScoreResult(model=model, scores=scores, triggers=triggers)

    def _count_alone(self, model: OnnxModel, scores: np.ndarray, fired: np.ndarray) -> None:
        """Count one request of a batch that was not counted because some score in it was not
        finite: this request's, if all its scores are finite; else refuse it."""
        finite = np.isfinite(scores)
        if finite.all():
            self.metrics.record_scores(model, scores, fired)
            return
        self.metrics.record_unscorable(model, len(scores) - int(np.count_nonzero(finite)))
        event = int(np.argmin(finite))
        raise Unscorable(
            f"the model scores event {event} (0-based) as {float(scores[event])}, not a finite "
            "number: its inputs are far outside what the model was trained on; nothing in this "
            "request was scored"
        )

    async def _score_and_count(
        self, model: OnnxModel, x: np.ndarray, *, may_hop: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores ``(N,)`` and ``model.fired`` ``(n_working_points, N)`` of one ONNX Runtime
        call, counted when every score is finite, and whether they were: ``counted`` ``(N,)``
        bool, all equal (an array so that the micro-batcher splits it with the scores).

        A batch above ``inline_max_events`` runs on the inference thread when ``may_hop``, so
        the event loop reads other bodies meanwhile. Only ONNX Runtime goes there: run in the
        thread, the Python of thresholds and metrics would wait for the GIL the event loop
        holds (1,000-event requests at 8 clients: 1,283-1,292 -> 1,433-1,475 requests/s)."""
        if may_hop and len(x) > self.settings.inline_max_events:
            if self._inference is None:
                self._inference = ThreadPoolExecutor(
                    self.settings.inference_threads, thread_name_prefix="nae-inference"
                )
            loop = asyncio.get_running_loop()
            scores, seconds = await loop.run_in_executor(self._inference, _timed_score, model, x)
        else:
            scores, seconds = _timed_score(model, x)
        self.metrics.record_inference(model, len(x), seconds)
        fired = model.fired(scores)
        counted = bool(np.isfinite(scores).all())
        if counted:
            self.metrics.record_scores(model, scores, fired)
        return scores, fired, np.broadcast_to(np.bool_(counted), scores.shape)

    def _batcher(self, model: OnnxModel) -> MicroBatcher:
        batcher = self._batchers.get(model)
        if batcher is None:
            # Weak references: a strong one from the value would keep the key alive forever,
            # and the gauge must not keep a replaced model's batcher.
            model_ref = weakref.ref(model)
            batcher = MicroBatcher(
                lambda x: self._score_and_count(model_ref(), x, may_hop=True),
                max_batch_size=self.settings.batching_max_batch_size,
                max_queue_delay_us=self.settings.batching_max_queue_delay_us,
            )
            self._batchers[model] = batcher
            batcher_ref = weakref.ref(batcher)

            def queue_depth() -> int:
                live = batcher_ref()
                return 0 if live is None else live.queue_depth

            self.metrics.batch_queue_depth.labels(model.name).set_function(queue_depth)
        return batcher


def _timed_score(model: OnnxModel, x: np.ndarray) -> tuple[np.ndarray, float]:
    """``model.score(x)`` and its duration [s], timed where it runs."""
    start = time.perf_counter()
    scores = model.score(x)
    return scores, time.perf_counter() - start
