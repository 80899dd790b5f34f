"""``Scorer``: where ONNX Runtime runs, and that every path counts what it scored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from service.app import create_app
from service.settings import Settings


@pytest.mark.parametrize("batching", [False, True])
def test_small_batches_and_lone_requests_run_on_the_loop_large_concurrent_ones_in_a_thread(
    models_dir: Path, metric_value: Callable[..., float], batching: bool
) -> None:
    settings = Settings(models_dir=models_dir, inline_max_events=8, batching_enabled=batching)
    scorer = create_app(settings).scorer
    scorer.load_bundles()
    model = scorer.resolve("events-test-ae")
    threads: list[str] = []
    run_onnx = model.score

    def score(x: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return run_onnx(x)

    model.score = score  # type: ignore[method-assign]

    async def scenario() -> None:
        for n_events, in_flight in [(5, 2), (20, 1), (20, 2)]:
            scorer.in_flight = in_flight
            x = np.ones((n_events, 19, 4), np.float32)
            result = await scorer.score(model, x)
            np.testing.assert_allclose(result.scores, np.full(n_events, 76.0), rtol=1e-6)

    asyncio.run(scenario())
    scorer.close()
    # Micro-batching hops for any merged batch above inline_max_events: it merges concurrent
    # requests, so another one is always in flight.
    loop = threading.current_thread().name
    inference = "nae-inference_0"
    assert threads == [loop, loop if not batching else inference, inference]
    assert not [thread for thread in threading.enumerate() if thread.name == inference]
    metrics = generate_latest(scorer.metrics.registry).decode()
    labels = {"model": "events-test-ae", "version": "1"}
    assert metric_value(metrics, "nae_events_scored_total", **labels) == 45


def test_every_load_gives_freed_memory_back(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sessions a reload replaces are freed under load; their pages must not stay."""
    from service import scoring

    trims: list[bool] = []
    monkeypatch.setattr(scoring, "release_freed_memory", lambda: trims.append(True) or True)
    scorer = create_app(Settings(models_dir=models_dir)).scorer
    scorer.load_bundles()
    scorer.load_bundles()
    assert trims == [True, True]
