"""Physics validation of ``nae data jets`` (issue 2, "Done when"), written to docs/data.md.

Parts (each merges its numbers into benchmarks/results/validation_jets.json):

- ``scan``: the pTHatMin check. QCD and top generated with a low pTHatMin (SCAN_PTHAT_MIN_GEV);
  for every selected jet the event's pTHat is kept. A sample made with pTHatMin = c is exactly
  the subset with pTHat > c, so the fraction of window jets below c is what the cut would
  lose (sculpt), and events per jet above c is what it costs.
- ``samples``: 2,000 top and 2,000 QCD jets at detector level and at truth level
  (``detector=None``), plus a small dark sample: the top-mass peak, the QCD mass shape,
  the tau32 rank AUC and jets/s per process; a PNG of mass and tau32 to docs/img.
- ``detectors``: the tau32 AUC and top-mass peak for calorimeter variants on the same events
  (why the default calorimeter is ATLAS-card-like; docs/data.md, "Detector model").

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validation/jets.py --part scan
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validation/jets.py --part samples --n 2000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validation/jets.py --part detectors --n-study 600
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta, rankdata

from training.config import DetectorConfig, JetSampleConfig
from training.data.jets import BATCH_SIZE, features_from_constituents, generate_jets, leading_jets
from training.data.pythia import JET_PTHAT_MIN_FRACTION, PythiaRun, jet_process_settings

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "validation_jets.json"
FIGURE = ROOT / "docs" / "img" / "jets_validation.png"
SCAN_PTHAT_MIN_GEV = 300.0
SCAN_FRACTIONS = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
SEEDS = {
    "top": 1001,
    "qcd": 1002,
    "dark": 1005,
    "qcd_scan": 1006,
    "top_scan": 1007,
    "top_detector_study": 1008,
    "qcd_detector_study": 1009,
    "detector_study_rng": 1010,
}
TOP_MASS_WINDOW_GEV = (165.0, 185.0)
AUC_WINDOW_DETECTOR = (0.75, 0.92)


def scan(process: str, n_jets: int, seed: int) -> dict:
    """Selected jets of a low-pTHatMin run with their event's pTHat; see the module doc."""
    config = JetSampleConfig(process=process)
    settings = [
        line for line in jet_process_settings(config) if not line.startswith("PhaseSpace:pTHatMin")
    ]
    run = PythiaRun([*settings, f"PhaseSpace:pTHatMin = {SCAN_PTHAT_MIN_GEV}"], seed)
    rng = np.random.default_rng(seed)
    event_pthat, jet_pthat, jet_pt = [], [], []
    for batch in run.batches(100):
        pthat = np.sqrt(batch.record.info.pT2Hat.to_numpy())
        selected = leading_jets(batch, config, rng)
        event_pthat.append(pthat)
        jet_pthat.append(pthat[selected.event])
        jet_pt.append(selected.jet[:, 0])
        if sum(len(j) for j in jet_pthat) >= n_jets:
            break
    event_pthat, jet_pthat, jet_pt = map(np.concatenate, (event_pthat, jet_pthat, jet_pt))
    edges = np.linspace(config.pt_min_gev, config.pt_max_gev, 6)
    rows = []
    for fraction in SCAN_FRACTIONS:
        cut = fraction * config.pt_min_gev
        lost = int((jet_pthat < cut).sum())
        kept = len(jet_pthat) - lost
        rows.append(
            {
                "pthat_min_fraction": fraction,
                "pthat_min_gev": cut,
                "jets_lost": lost,
                "fraction_lost": lost / len(jet_pthat),
                "fraction_lost_upper95": float(beta.ppf(0.95, lost + 1, len(jet_pthat) - lost)),
                "events_per_jet": float((event_pthat >= cut).sum() / max(kept, 1)),
                "pt_counts_kept": np.histogram(jet_pt[jet_pthat >= cut], edges)[0].tolist(),
            }
        )
    chosen = JET_PTHAT_MIN_FRACTION[process] * config.pt_min_gev
    all_counts = np.histogram(jet_pt, edges)[0]
    kept_counts = np.histogram(jet_pt[jet_pthat >= chosen], edges)[0]
    return {
        "seed": seed,
        "scan_pthat_min_gev": SCAN_PTHAT_MIN_GEV,
        "n_events": len(event_pthat),
        "n_jets": len(jet_pthat),
        "chosen_pthat_min_gev": chosen,
        "rows": rows,
        "pt_edges_gev": edges.tolist(),
        "pt_counts_scan": all_counts.tolist(),
        "pt_counts_above_chosen": kept_counts.tolist(),
        "min_pthat_of_selected_gev": float(jet_pthat.min()),
    }


def paired_sample(process: str, n_jets: int, seed: int) -> tuple[dict, dict]:
    """``n_jets`` detector-level and truth-level jets from the same Pythia events.

    Production settings (``jet_process_settings``); the detector rng is seeded as in
    ``generate_jets``. Sharing events halves the cost of the truth-level comparison. The CPU
    time of the extra truth-level pass is measured and left out of the jets/s figure.
    """
    detector_config = JetSampleConfig(process=process)
    truth_config = JetSampleConfig(process=process, detector=None)
    run = PythiaRun(jet_process_settings(detector_config), seed)
    rng = np.random.default_rng(seed)
    found: dict[str, list] = {"detector": [], "truth": []}
    pthats, n_events, truth_cpu = [], 0, 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in run.batches(BATCH_SIZE):
        n_events += batch.final.n_events
        detector = leading_jets(batch, detector_config, rng)
        found["detector"].append(detector.constituents)
        pthats.append(np.sqrt(batch.record.info.pT2Hat.to_numpy())[detector.event])
        start = time.process_time()
        found["truth"].append(leading_jets(batch, truth_config, rng).constituents)
        truth_cpu += time.process_time() - start
        if min(sum(map(len, parts)) for parts in found.values()) >= n_jets:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    data = {}
    for level, parts in found.items():
        constituents = np.concatenate(parts)[:n_jets]
        features = features_from_constituents(constituents)
        data[level] = {name: features[name] for name in ("mass", "msd", "tau32")}
    data["detector"]["pthat"] = np.concatenate(pthats)[:n_jets]
    n_detector = sum(map(len, found["detector"]))
    info = {
        "n_jets": n_jets,
        "seed": seed,
        "n_events": n_events,
        "pthat_min_gev": JET_PTHAT_MIN_FRACTION[process] * detector_config.pt_min_gev,
        "events_per_detector_jet": n_events / n_detector,
        "cross_section_pb": run.cross_section_pb,
        "wall_s": wall,
        "cpu_s": cpu,
        "detector_jets_per_cpu_s": n_detector / (cpu - truth_cpu),
    }
    return data, info


def dark_sample(n_jets: int, seed: int) -> tuple[dict, dict]:
    """A detector-level dark sample through ``generate_jets``, timed."""
    wall, cpu = time.perf_counter(), time.process_time()
    shard = generate_jets(JetSampleConfig(process="dark"), n_jets=n_jets, seed=seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    data = {name: shard.arrays[f"features/{name}"] for name in ("mass", "msd", "tau32")}
    info = {
        "n_jets": n_jets,
        "seed": seed,
        "n_events": shard.attrs["n_events_generated"],
        "events_per_detector_jet": 1 / shard.attrs["selection_efficiency"],
        "cross_section_pb": shard.attrs["cross_section_pb"],
        "wall_s": wall,
        "cpu_s": cpu,
        "detector_jets_per_cpu_s": n_jets / cpu,
        "label_mean": float(shard.arrays["label"].mean()),
    }
    return data, info


DETECTOR_VARIANTS = {
    "cms_like_towers": {
        "ecal_cell_eta": 0.0174,
        "ecal_cell_phi": 0.0174,
        "hcal_cell_eta": 0.087,
        "hcal_cell_phi": 0.087,
        "hcal_stochastic": 1.0,
        "hcal_constant": 0.05,
    },
    "atlas_hcal_fine_ecal": {"ecal_cell_eta": 0.0174, "ecal_cell_phi": 0.0174},
    "default": {},
}


def detector_study(n_jets: int) -> dict:
    """tau32 AUC and top-mass peak for calorimeter variants, on the same Pythia events.

    pTHatMin = 440 GeV for speed (a small sculpting of the window, the same for every variant).
    """
    batches = {}
    for process, seed in (
        ("top", SEEDS["top_detector_study"]),
        ("qcd", SEEDS["qcd_detector_study"]),
    ):
        truth = JetSampleConfig(process=process, pthat_min_gev=440.0, detector=None)
        run = PythiaRun(jet_process_settings(truth), seed)
        batches[process], n = [], 0
        for batch in run.batches(BATCH_SIZE):
            batches[process].append(batch)
            n += len(leading_jets(batch, truth, None).label)
            if n >= n_jets:
                break
    result = {}
    for name, overrides in {"truth": None, **DETECTOR_VARIANTS}.items():
        tau32, mass = {}, {}
        for process, process_batches in batches.items():
            detector = None if overrides is None else DetectorConfig(**overrides)
            config = JetSampleConfig(process=process, pthat_min_gev=440.0, detector=detector)
            rng = np.random.default_rng(SEEDS["detector_study_rng"])
            constituents = np.concatenate(
                [leading_jets(b, config, rng).constituents for b in process_batches]
            )
            features = features_from_constituents(constituents)
            tau32[process], mass[process] = features["tau32"], features["mass"]
        result[name] = {
            "overrides": overrides,
            "n_top": len(tau32["top"]),
            "n_qcd": len(tau32["qcd"]),
            "tau32_auc": rank_auc(tau32["top"], tau32["qcd"]),
            "top_mass_peak": mass_peak(mass["top"]),
        }
        print(name, json.dumps(result[name]), flush=True)
    return result


def rank_auc(signal: np.ndarray, background: np.ndarray) -> float:
    """P(signal < background): the AUC of a cut 'x below threshold' (top has low tau32)."""
    ranks = rankdata(np.concatenate([signal, background]))
    n_s, n_b = len(signal), len(background)
    greater = ranks[:n_s].sum() - n_s * (n_s + 1) / 2  # pairs with signal above background
    return float(1.0 - greater / (n_s * n_b))


def mass_peak(mass: np.ndarray) -> dict:
    """The 5-GeV-bin mode of the mass in 100-250 GeV and the mean within +-15 GeV of it."""
    edges = np.arange(100.0, 255.0, 5.0)
    counts = np.histogram(mass, edges)[0]
    mode = float(edges[np.argmax(counts)] + 2.5)
    near = mass[np.abs(mass - mode) < 15.0]
    return {"mode_5gev_bins": mode, "mean_within_15gev_of_mode": float(near.mean())}


def qcd_mass_shape(mass: np.ndarray) -> dict:
    """Counts in 25-GeV bins from 0 to 300 GeV, the peak bin, and whether it falls after."""
    edges = np.arange(0.0, 325.0, 25.0)
    counts = np.histogram(mass, edges)[0]
    peak = int(np.argmax(counts))
    return {
        "edges_gev": edges.tolist(),
        "counts": counts.tolist(),
        "peak_bin_gev": [float(edges[peak]), float(edges[peak + 1])],
        "falls_above_peak": bool(np.all(np.diff(counts[peak:]) <= 0)),
    }


def pthat_tail(pthat: np.ndarray, cut: float) -> dict:
    """Window jets with pTHat just above the cut: how fast the tail below it must be falling."""
    edges = cut + np.array([0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
    return {
        "edges_gev": edges.tolist(),
        "counts": np.histogram(pthat, edges)[0].tolist(),
        "n_jets": len(pthat),
        "min_pthat_gev": float(pthat.min()),
    }


def run_samples(n_jets: int, n_dark: int) -> dict:
    data, info = {}, {}
    for process in ("qcd", "top"):
        data[process], info[process] = paired_sample(process, n_jets, SEEDS[process])
        print(process, json.dumps(info[process]), flush=True)
        merge({"validation_progress": info})
    data["dark"], info["dark"] = dark_sample(n_dark, SEEDS["dark"])
    print("dark", json.dumps(info["dark"]), flush=True)
    result: dict = {"samples": info}
    for level in ("detector", "truth"):
        top, qcd = data["top"][level], data["qcd"][level]
        result[level] = {
            "top_mass_peak": mass_peak(top["mass"]),
            "top_msd_peak": mass_peak(top["msd"]),
            "qcd_mass_shape": qcd_mass_shape(qcd["mass"]),
            "tau32_auc": rank_auc(top["tau32"], qcd["tau32"]),
            "median_tau32_top": float(np.median(top["tau32"])),
            "median_tau32_qcd": float(np.median(qcd["tau32"])),
        }
    result["pthat_tail"] = {
        p: pthat_tail(data[p]["detector"]["pthat"], info[p]["pthat_min_gev"])
        for p in ("qcd", "top")
    }
    result["dark_detector"] = {
        "median_mass": float(np.median(data["dark"]["mass"])),
        "tau32_auc_vs_qcd": rank_auc(data["dark"]["tau32"], data["qcd"]["detector"]["tau32"]),
    }
    peak = result["detector"]["top_mass_peak"]["mode_5gev_bins"]
    auc = result["detector"]["tau32_auc"]
    result["checks"] = {
        "top_mass_peak_in_165_185": TOP_MASS_WINDOW_GEV[0] <= peak <= TOP_MASS_WINDOW_GEV[1],
        "qcd_mass_falls": result["detector"]["qcd_mass_shape"]["falls_above_peak"],
        "tau32_auc_in_0.75_0.92": AUC_WINDOW_DETECTOR[0] <= auc <= AUC_WINDOW_DETECTOR[1],
    }
    plot(data)
    return result


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(9, 3.6))
    styles = {
        ("top", "detector"): ("tab:red", "-", "top, detector"),
        ("qcd", "detector"): ("tab:blue", "-", "QCD, detector"),
        ("top", "truth"): ("tab:red", ":", "top, truth"),
        ("qcd", "truth"): ("tab:blue", ":", "QCD, truth"),
        ("dark", None): ("tab:green", "-", "dark, detector"),
    }
    for (process, level), (color, line, label) in styles.items():
        values = data[process] if level is None else data[process][level]
        for ax, feature, bins in (
            (ax_m, "mass", np.arange(0, 302, 6)),
            (ax_t, "tau32", np.linspace(0, 1, 41)),
        ):
            style = {"color": color, "linestyle": line, "label": label}
            ax.hist(values[feature], bins, histtype="step", density=True, **style)
    ax_m.set_xlabel("jet mass [GeV]")
    ax_t.set_xlabel(r"$\tau_{32}$ ($\beta=1$, one-pass WTA $k_T$ axes)")
    for ax in (ax_m, ax_t):
        ax.set_ylabel("normalised")
    ax_m.legend(fontsize=7)
    fig.suptitle(
        "anti-kT R=0.8 leading jets, pT 550-650 GeV, |eta|<2 (Pythia 8.317, 13 TeV)", fontsize=9
    )
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)


def merge(result: dict) -> None:
    current = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    current.update(result)
    current["machine"] = {"platform": platform.platform(), "processor": platform.processor()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(current, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["scan", "samples", "detectors"], required=True)
    parser.add_argument("--n", type=int, default=2000, help="jets per top/QCD sample")
    parser.add_argument("--n-dark", type=int, default=300, help="jets in the dark sample")
    parser.add_argument("--n-scan", type=int, default=400, help="jets per pTHat scan")
    parser.add_argument("--n-study", type=int, default=600, help="jets per detector variant")
    args = parser.parse_args()
    if args.part == "scan":
        result = {
            "pthat_scan": {p: scan(p, args.n_scan, SEEDS[f"{p}_scan"]) for p in ("qcd", "top")}
        }
    elif args.part == "detectors":
        result = {"detector_study": detector_study(args.n_study)}
    else:
        result = {"validation": run_samples(args.n, args.n_dark)}
    merge(result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
