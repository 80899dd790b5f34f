"""The in-evolution veto (training/data/veto.py): what it loses, what it changes, what it buys.

For each process, ``--rounds`` paired rounds, each with its own seeds:

- an **off** run: jets generated without the veto, with a recording hook that notes, per event,
  the leading parton-level jet pT at the veto scale for several clustering radii. Pooled over
  rounds this gives the fraction of window jets that a threshold T would have removed (the
  veto's loss), with its one-sided 95% upper limit (Clopper-Pearson), for every (R, T);
- an **on** run: ``generate_jets`` with the default config (veto on), as production runs it.

Both runs are timed in CPU seconds of this process, split by stage (Pythia, detector,
clustering, truth labels, features, images), so the paired on/off ratio of stored jets per CPU
second is measured under the same machine conditions round by round, with and without Pythia's
initialisation ("steady": what shards of thousands of jets see). The pooled on and off jets
are compared in pT, mass, soft-drop mass, tau32 and constituent count with two-sample KS tests
(and a chi2 test for the counts), and sigma x efficiency is compared between the two.

The recording hook of the off runs clusters the partons once per radius per event, which makes
the off runs slightly slower than a run without any hook, so the ratio errs low.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.veto --process qcd top --rounds 8 \\
        --n-off 300 --n-on 250

Run it as a module from the repository root: as a script, benchmarks/training.py would shadow
the ``training`` package. Writes benchmarks/results/veto.json after every round (a stopped run
keeps what it measured); processes not measured by this run keep their earlier entries.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pythia8mc
from scipy.stats import beta, chi2_contingency, ks_2samp

from benchmarks.machine import describe_machine
from training.config import JetSampleConfig
from training.data import jets as jets_module
from training.data.generation import shard_seed
from training.data.jets import BATCH_SIZE, generate_jets
from training.data.pythia import jet_process_settings
from training.data.veto import ScaleVeto, leading_jet_pt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "veto.json"
RADII = (0.8, 1.0, 1.2)
THRESHOLDS_GEV = (300, 350, 400, 420, 440, 460, 480, 500)
KS_QUANTITIES = ("pt", "mass", "msd", "tau32", "n_constituents")
STAGES = ("init", "detector", "clustering", "truth", "features", "images")


class _Recorder(ScaleVeto):
    """Vetoes nothing; records the leading parton-level jet pT for every radius of RADII."""

    def __init__(self, config: JetSampleConfig) -> None:
        super().__init__(config.veto, threshold_gev=0.0)
        self._all = [
            pythia8mc.SlowJet(-1, radius, 20.0, 10.0, 1, 2) for radius in RADII
        ]  # the arguments of ScaleVeto's own SlowJet, radius apart

    def doVetoPT(self, iPos: int, event: pythia8mc.Event) -> bool:
        if iPos != 5:
            eta_max = self.config.eta_max
            self._pending = tuple(leading_jet_pt(jets, event, eta_max) for jets in self._all)
        return False


def main() -> None:
    args = _parse_args()
    # Processes measured by earlier runs stay in the file; each keeps its own command and machine.
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for process in args.process:
        command = vars(args) | {"out": str(args.out)}
        results[process] = {"machine": describe_machine(), "command": command}
        config = JetSampleConfig(process=process)
        rounds = []
        for r in range(args.rounds):
            off = _off_run(config, args.n_off, shard_seed(args.seed, 2 * r))
            on = _on_run(config, args.n_on, shard_seed(args.seed, 2 * r + 1))
            rounds.append((off, on))
            ratio = on["jets_per_cpu_s"] / off["jets_per_cpu_s"]
            print(
                f"{process} round {r}: off {off['jets_per_cpu_s']:.2f} jets/CPU s, "
                f"on {on['jets_per_cpu_s']:.2f}, ratio {ratio:.2f}",
                flush=True,
            )
            results[process] |= _summary(config, rounds)
            results[process]["machine"]["load_avg_after"] = os.getloadavg()
            args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process", nargs="+", default=["qcd", "top"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n-off", type=int, default=300, help="jets per off run")
    parser.add_argument("--n-on", type=int, default=250, help="jets per on run")
    parser.add_argument("--seed", type=int, default=3001)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


@contextmanager
def _stage_timers() -> Iterator[dict[str, float]]:
    """CPU seconds spent in each stage of ``training.data.jets``, by wrapping its functions."""
    names = {
        "detector": "detector_response",
        "clustering": "_cluster_leading",
        "truth": "_truth_labels",
        "features": "features_from_constituents",
        "images": "images_from_constituents",
    }
    names["init"] = "PythiaRun"  # Pythia's initialisation: constructing the run
    spent: dict[str, float] = defaultdict(float)
    saved = {name: getattr(jets_module, name) for name in names.values()}

    def timed(stage: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[stage] += time.process_time() - start

        return wrapper

    for stage, name in names.items():
        setattr(jets_module, name, timed(stage, saved[name]))
    try:
        yield spent
    finally:
        for name, function in saved.items():
            setattr(jets_module, name, function)


def _off_run(config: JetSampleConfig, n_jets: int, seed: int) -> dict:
    """Unvetoed jets with the parton-level leading-jet pT of their events, timed by stage."""
    with _stage_timers() as spent:
        start = time.process_time()
        run = jets_module.PythiaRun(jet_process_settings(config), seed, veto=_Recorder(config))
        rng = np.random.default_rng(seed)
        parts, scale_pts, n_events = [], [], 0
        for batch in run.batches(BATCH_SIZE):
            selected = jets_module.leading_jets(batch, config, rng)
            take = min(len(selected.label), n_jets - sum(len(p.label) for p in parts))
            parts.append(jets_module.LeadingJets(*(a[:take] for a in selected)))
            scale_pts.append(batch.scale_jet_pt[selected.event[:take]])
            done = sum(len(p.label) for p in parts) == n_jets
            n_events += int(selected.event[take - 1]) + 1 if done else batch.final.n_events
            if done:
                break
        constituents = np.concatenate([p.constituents for p in parts])
        features = jets_module.features_from_constituents(constituents)
        jets_module.images_from_constituents(constituents, config.image)
        cpu = time.process_time() - start
    jet = np.concatenate([p.jet for p in parts])
    return {
        "seed": seed,
        "cpu_s": cpu,
        "stages_cpu_s": dict(spent),
        "jets_per_cpu_s": n_jets / cpu,
        "n_events": n_events,
        "sigma_eff_pb": run.cross_section_pb * n_jets / n_events,
        "sigma_err_pb": float(run._pythia.infoPython().sigmaErr()) * 1e9 * n_jets / n_events,
        "scale_pt": np.concatenate(scale_pts).tolist(),  # (n_jets, len(RADII))
        "observables": _observables(jet, features),
    }


def _on_run(config: JetSampleConfig, n_jets: int, seed: int) -> dict:
    with _stage_timers() as spent:
        start = time.process_time()
        shard = generate_jets(config, n_jets=n_jets, seed=seed)
        cpu = time.process_time() - start
    attrs = shard.attrs
    features = {
        key.removeprefix("features/"): value
        for key, value in shard.arrays.items()
        if key.startswith("features/")
    }
    return {
        "seed": seed,
        "cpu_s": cpu,
        "stages_cpu_s": dict(spent),
        "jets_per_cpu_s": n_jets / cpu,
        "n_events": int(attrs["n_events_generated"]),
        "n_vetoed": int(attrs["n_vetoed"]),
        "sigma_eff_pb": attrs["cross_section_pb"] * attrs["selection_efficiency"],
        "observables": _observables(shard.arrays["jet"], features),
    }


def _observables(jet: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {
        "pt": jet[:, 0].tolist(),
        "mass": jet[:, 3].tolist(),
        "msd": features["msd"].tolist(),
        "tau32": features["tau32"].tolist(),
        "n_constituents": features["n_constituents"].tolist(),
    }


def _summary(config: JetSampleConfig, rounds: list[tuple[dict, dict]]) -> dict:
    """Loss table, paired speed ratios, stage breakdown, distribution tests, sigma x eff."""
    scale_pt = np.concatenate([np.asarray(off["scale_pt"]) for off, _ in rounds])  # (n, radii)
    n = len(scale_pt)
    loss = {}
    for i, radius in enumerate(RADII):
        for threshold in THRESHOLDS_GEV:
            k = int((scale_pt[:, i] < threshold).sum())
            loss[f"R={radius},T={threshold}"] = {
                "lost": k,
                "of": n,
                "fraction": k / n,
                "upper95": float(beta.ppf(0.95, k + 1, n - k)),
            }
    ratios = [on["jets_per_cpu_s"] / off["jets_per_cpu_s"] for off, on in rounds]
    steady = [_steady_rate(on) / _steady_rate(off) for off, on in rounds]
    tests = {}
    for name in KS_QUANTITIES:
        a = np.concatenate([off["observables"][name] for off, _ in rounds])
        b = np.concatenate([on["observables"][name] for _, on in rounds])
        tests[name] = {"ks_statistic": float(ks_2samp(a, b).statistic)}
        tests[name]["ks_p"] = float(ks_2samp(a, b).pvalue)
    tests["n_constituents"]["chi2_p"] = _chi2_p(
        np.concatenate([off["observables"]["n_constituents"] for off, _ in rounds]),
        np.concatenate([on["observables"]["n_constituents"] for _, on in rounds]),
    )
    return {
        "veto": config.veto.model_dump(),
        "threshold_gev": config.veto.pt_fraction * config.pt_min_gev,
        "n_off_jets": n,
        "n_on_jets": sum(len(on["observables"]["pt"]) for _, on in rounds),
        "loss": loss,
        "min_scale_pt_gev": {str(r): float(scale_pt[:, i].min()) for i, r in enumerate(RADII)},
        "ratio": {
            "per_round": ratios,
            "median": float(np.median(ratios)),
            "min": float(min(ratios)),
            "max": float(max(ratios)),
            "steady_per_round": steady,
            "steady_median": float(np.median(steady)),
            "steady_min": float(min(steady)),
            "steady_max": float(max(steady)),
        },
        "rates_jets_per_cpu_s": {
            "off": [off["jets_per_cpu_s"] for off, _ in rounds],
            "on": [on["jets_per_cpu_s"] for _, on in rounds],
        },
        "stages_cpu_s_per_jet": {
            side: _per_jet_stages([rnd[j] for rnd in rounds])
            for j, side in enumerate(("off", "on"))
        },
        "events_per_jet": {
            "off": sum(off["n_events"] for off, _ in rounds) / n,
            "on": sum(on["n_events"] for _, on in rounds)
            / sum(len(on["observables"]["pt"]) for _, on in rounds),
        },
        "veto_pass_fraction": 1
        - sum(on["n_vetoed"] for _, on in rounds) / sum(on["n_events"] for _, on in rounds),
        "distribution_tests": tests,
        "sigma_eff_pb": {
            "off": _pooled_sigma_eff([off for off, _ in rounds]),
            "on": _pooled_sigma_eff([on for _, on in rounds]),
        },
    }


def _steady_rate(run: dict) -> float:
    """Jets per CPU second without Pythia's initialisation, as in a large shard."""
    return len(run["observables"]["pt"]) / (run["cpu_s"] - run["stages_cpu_s"].get("init", 0.0))


def _per_jet_stages(runs: list[dict]) -> dict[str, float]:
    jets = sum(len(run["observables"]["pt"]) for run in runs)
    total = sum(run["cpu_s"] for run in runs)
    stages = {s: sum(run["stages_cpu_s"].get(s, 0.0) for run in runs) for s in STAGES}
    stages["pythia_and_rest"] = total - sum(stages.values())
    return {stage: seconds / jets for stage, seconds in stages.items()} | {"total": total / jets}


def _pooled_sigma_eff(runs: list[dict]) -> dict[str, float]:
    """Mean of the per-round sigma x efficiency and its standard error over rounds."""
    values = np.array([run["sigma_eff_pb"] for run in runs])
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "error": float(error)}


def _chi2_p(a: np.ndarray, b: np.ndarray) -> float:
    """chi2 homogeneity p-value of two integer samples, bins merged to >= 5 expected counts."""
    edges = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, 21)))
    edges[-1] += 1
    table = np.array([np.histogram(a, edges)[0], np.histogram(b, edges)[0]])
    table = table[:, table.sum(axis=0) > 0]
    return float(chi2_contingency(table)[1])


if __name__ == "__main__":
    main()
