"""In-process cost of decoding a ``/score`` JSON body: orjson + ``np.array`` against simdjson.

``python -m benchmarks.json_decode``: best-of-N process CPU time per body, events of (19, 4)
of normal noise written as float32 (shortest round-trip text), and the bodies that
``benchmarks/service.py`` sends (synthetic events, half the rows zero, 4 decimals).
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.service import events_from_seed, request_for
from service.codecs import array_from_json, json_bytes, json_from_body, score_json_fast


def _old(body: bytes) -> np.ndarray:
    return array_from_json(json_from_body(body)["inputs"])


def _new(body: bytes) -> np.ndarray:
    fast = score_json_fast(body)
    assert fast is not None
    return fast[1]


def _best_ms(decode, body: bytes, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time_ns()
        decode(body)
        best = min(best, time.process_time_ns() - start)
    return best / 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    print("text      events  body_bytes  orjson+np.array_ms  simdjson_ms  speedup")
    for text in ("float32", "benchmark"):
        for n in (1, 100, 1_000, 10_000):
            if text == "float32":
                x = rng.normal(size=(n, 19, 4)).astype(np.float32)
                body = json_bytes({"model": "m", "inputs": x})
            else:
                body = request_for("json", events_from_seed(n, seed=3)).body
            np.testing.assert_array_equal(_new(body), _old(body))
            repeats = max(20, 20_000 // n)
            old, new = _best_ms(_old, body, repeats), _best_ms(_new, body, repeats)
            print(f"{text:<10}{n:6d}  {len(body):10d}  {old:18.4f}  {new:11.4f}  {old / new:7.2f}")


if __name__ == "__main__":
    main()
