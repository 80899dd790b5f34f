"""``MicroBatcher``: merged calls give each request the same outputs as unbatched ones."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.batching import MicroBatcher


def _score(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1).astype(np.float32)


def _outputs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(N,)`` and two rows of thresholds ``(2, N)``: events on the last axis."""
    scores = _score(x)
    return scores, scores[None, :] > np.array([[10.0], [100.0]], np.float32)


class Recorder:
    """The scoring function, recording the batch size of every call."""

    def __init__(self, fail: bool = False) -> None:
        self.sizes: list[int] = []
        self.fail = fail

    async def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.sizes.append(len(x))
        if self.fail:
            raise RuntimeError("onnxruntime exploded")
        return _outputs(x)


async def _score_all(batcher: MicroBatcher, requests: list[np.ndarray]) -> list[tuple]:
    return await asyncio.gather(*(batcher.score(x) for x in requests))


def test_concurrent_requests_are_merged_and_get_their_own_scores() -> None:
    rng = np.random.default_rng(3)
    requests = [rng.normal(size=(int(n), 19, 4)).astype(np.float32) for n in rng.integers(1, 5, 40)]
    recorder, depths = Recorder(), []

    async def score_all_watching_the_queue(batcher: MicroBatcher) -> list[tuple]:
        tasks = [asyncio.create_task(batcher.score(x)) for x in requests]
        while not all(task.done() for task in tasks):
            depths.append(batcher.queue_depth)
            await asyncio.sleep(0)
        depths.append(batcher.queue_depth)
        return [task.result() for task in tasks]

    batcher = MicroBatcher(recorder, max_batch_size=32, max_queue_delay_us=20_000)
    results = asyncio.run(score_all_watching_the_queue(batcher))
    for x, (scores, fired) in zip(requests, results, strict=True):
        expected_scores, expected_fired = _outputs(x)
        np.testing.assert_array_equal(scores, expected_scores)
        np.testing.assert_array_equal(fired, expected_fired)
    assert sum(recorder.sizes) == sum(len(x) for x in requests)
    assert max(recorder.sizes) <= 32
    assert len(recorder.sizes) < len(requests)  # merging happened
    assert max(depths) > 1 and depths[-1] == 0


def test_a_request_as_large_as_a_batch_skips_the_queue() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch_size=8, max_queue_delay_us=1_000_000)
    x = np.ones((8, 19, 4), np.float32)
    np.testing.assert_array_equal(asyncio.run(batcher.score(x))[0], _score(x))
    assert recorder.sizes == [8]


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    batcher = MicroBatcher(Recorder(fail=True), max_batch_size=8, max_queue_delay_us=1000)
    requests = [np.ones((1, 19, 4), np.float32)] * 3
    with pytest.raises(RuntimeError, match="exploded"):
        asyncio.run(_score_all(batcher, requests))
