"""Generation speed: jets/s and events/s per process, per core.

Rates are per CPU second of this process (``time.process_time``), not per wall second: the
machines this runs on are shared and their clock drifts, and generation is single-threaded, so
CPU time is what a run of N shards on N cores costs. Pythia's initialisation is timed
separately (a 1-row run) and taken out, so the rates are the steady state that large samples
see; wall-clock rates are printed too, for reference.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.generation --n-jets 300 --n-events 300

Writes benchmarks/results/generation.json with the machine (nproc, CPU model, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from benchmarks.machine import describe_machine
from training.config import EventProcess, EventSampleConfig, JetProcess, JetSampleConfig
from training.data.events import generate_events
from training.data.jets import generate_jets
from training.data.shards import Shard

RESULTS = Path(__file__).parent / "results" / "generation.json"
SEED = 20240601


def main() -> None:
    args = _parse_args()
    machine = describe_machine()
    print(f"machine: {machine}")
    results = []
    for process in args.jets:
        config = JetSampleConfig(process=process)
        results.append(_measure("jets", config, args.n_jets, _jets))
    for process in args.events:
        # Lepton-filtered QCD is infeasible (efficiency ~1e-4): it is offered unfiltered.
        filter_pt = (
            None
            if process == "qcd"
            else EventSampleConfig.model_fields["lepton_filter_pt_gev"].default
        )
        config = EventSampleConfig(process=process, lepton_filter_pt_gev=filter_pt)
        results.append(_measure("events", config, args.n_events, _events))
    machine["load_avg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jets", type=int, default=300, help="jets per process")
    parser.add_argument("--n-events", type=int, default=300, help="events per process")
    parser.add_argument("--jets", nargs="*", default=list(get_args(JetProcess)))
    parser.add_argument("--events", nargs="*", default=list(get_args(EventProcess)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def _jets(config: JetSampleConfig, n: int) -> Shard:
    return generate_jets(config, n_jets=n, seed=SEED)


def _events(config: EventSampleConfig, n: int) -> Shard:
    return generate_events(config, n_events=n, seed=SEED)


def _measure(
    kind: str,
    config: JetSampleConfig | EventSampleConfig,
    n: int,
    generate: Callable[[JetSampleConfig | EventSampleConfig, int], Shard],
) -> dict[str, object]:
    """CPU and wall seconds of a 1-row run (≈ initialisation) and an n-row run."""
    init_cpu, _, _ = _timed(generate, config, 1)
    cpu, wall, shard = _timed(generate, config, n)
    steady_cpu = max(cpu - init_cpu, 1e-9)
    result = {
        "kind": kind,
        "process": config.process,
        "n": n,
        "init_cpu_s": round(init_cpu, 2),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "per_core_per_s": round((n - 1) / steady_cpu, 2),
        "per_core_with_init_per_s": round(n / cpu, 2),
        "wall_per_s": round(n / wall, 2),
        "n_tried": shard.attrs.get("n_tried"),
        "cross_section_pb": shard.attrs.get("cross_section_pb"),
    }
    print(
        f"{kind:6s} {config.process:12s} n={n:5d}  {result['per_core_per_s']:8.2f} /s per core"
        f"  (init {init_cpu:5.1f} s CPU; wall {result['wall_per_s']:.2f} /s)",
        flush=True,
    )
    return result


def _timed(generate: Callable, config: object, n: int) -> tuple[float, float, Shard]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    shard = generate(config, n)
    return time.process_time() - cpu0, time.perf_counter() - wall0, shard


if __name__ == "__main__":
    main()
