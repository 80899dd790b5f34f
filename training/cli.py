"""The ``nae`` command line. Each command parses arguments, calls one library function and
prints a summary; heavy imports happen inside the commands so ``nae serve`` needs no torch."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from training.config import (  # pydantic only: cheap for `nae serve`
    EventProcess,
    JetProcess,
    ZgammaProcess,
)
from training.errors import NaeError, require

if TYPE_CHECKING:
    from training.config import EventSampleConfig, JetSampleConfig, ZgammaSampleConfig
    from training.data.generation import ShardSlice

app = typer.Typer(
    help="Normalized-autoencoder anomaly trigger: generate data, train, export and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Generate, convert and inspect data shards.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def serve(
    models: Annotated[
        Path | None,
        typer.Option(
            "--models",
            help="Directory of bundles: models/<name>/<version>/ (default: $NAE_MODELS_DIR "
            "or ./models).",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log every request (uvicorn's access log). Off by default: it costs ~15% of "
            "a small request's CPU, and nae_requests_total already counts every request.",
        ),
    ] = False,
) -> None:
    """Start the scoring service (FastAPI + ONNX Runtime) on the bundles under --models.

    Other settings come from NAE_* environment variables (service/settings.py); SIGHUP reloads
    the bundles."""
    import logging

    require("uvicorn", "serve")
    require("onnxruntime", "serve")
    from service.server import serve as serve_bundles
    from service.settings import Settings

    settings = Settings(**({"models_dir": models} if models is not None else {}))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    serve_bundles(settings, host=host, port=port, access_log=access_log)


_Detector = Literal["default", "none"]
_SET_HELP = (
    "Override any setting of the sample config as key=value, repeatable, e.g. "
    "--set detector.hcal_cell_eta=0.1 --set detector.track_efficiency=0.9 "
    "(all keys: training/config.py and docs/data.md, 'Detector model')."
)
_Seed = Annotated[
    int,
    typer.Option(
        "--seed", help="Run seed; each shard's Pythia seed is derived from it and its index."
    ),
]
_Workers = Annotated[
    int,
    typer.Option(
        "--workers", min=1, help="Processes generating shards in parallel (one per core)."
    ),
]
_ShardSize = Annotated[
    int,
    typer.Option(
        "--shard-size", min=1, help="Rows per shard file; also the unit of resume and workers."
    ),
]
_Out = Annotated[
    Path,
    typer.Option("--out", help="Output directory; a re-run skips its complete shards (resume)."),
]
_DetectorOption = Annotated[
    _Detector,
    typer.Option("--detector", help="'default': tracker + calorimeter model; 'none': truth."),
]
_Sets = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=_SET_HELP)]
_Dask = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="ADDRESS",
        help="Run the shards on the Dask cluster at this scheduler address (tcp://host:8786) "
        "instead of local processes; --out must be on a filesystem the workers share.",
    ),
]
_ShardIndex = Annotated[
    int | None,
    typer.Option(
        "--shard-index",
        metavar="I",
        help="Make only the shards i with i % K == I (one job of a batch array; with --n-shards).",
    ),
]
_NShards = Annotated[
    int | None,
    typer.Option("--n-shards", metavar="K", help="Number of slices the run is split into."),
]


@data_app.command("jets")
def data_jets(
    process: Annotated[JetProcess, typer.Option("--process", help="Jet sample to generate.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of jets.")],
    out: _Out,
    seed: _Seed = 1,
    workers: _Workers = 1,
    shard_size: _ShardSize = 10_000,
    detector: _DetectorOption = "default",
    pt_power: Annotated[
        float | None, typer.Option("--pt-power", help="Image pixel intensity ~ pT^P (default 1).")
    ] = None,
    r_inv: Annotated[
        float | None, typer.Option("--r-inv", help="dark: invisible fraction (default 0.3).")
    ] = None,
    dark_mass: Annotated[
        float | None,
        typer.Option("--dark-mass", help="dark: dark-hadron mass in GeV (default 10)."),
    ] = None,
    veto: Annotated[
        bool | None,
        typer.Option(
            "--veto/--no-veto",
            help="Stop events that cannot give a window jet inside Pythia's evolution "
            "(default: on for qcd and top, off for dark, where --veto takes the qcd setting; "
            "tune with --set veto.pt_fraction=...). "
            "Kept jets are unchanged in distribution: docs/data.md, 'The in-evolution veto'.",
        ),
    ] = None,
    overrides: _Sets = None,
    dask: _Dask = None,
    shard_index: _ShardIndex = None,
    n_shards: _NShards = None,
) -> None:
    """Generate jets with Pythia 8 + FastJet into HDF5 shards.

    Anti-kT R=0.8, leading jet pT 550-650 GeV, |eta| < 2 (the top-tagging landscape selection),
    stored as constituents, 40x40 image, jet 4-vector and substructure features
    (HDF5 shards <process>_seed<S>_<index>.h5)."""
    from training.config import (
        DetectorConfig,
        ImageConfig,
        JetSampleConfig,
        JetVetoConfig,
        with_overrides,
    )

    options = {"r_inv": r_inv, "dark_hadron_mass_gev": dark_mass}
    if veto is False:
        options["veto"] = "off"
    elif veto and JetSampleConfig(process=process).veto is None:  # dark: the qcd setting
        options["veto"] = JetVetoConfig()
    config = JetSampleConfig(
        process=process,
        detector=DetectorConfig() if detector == "default" else None,
        image=ImageConfig() if pt_power is None else ImageConfig(pt_power=pt_power),
        **{
            key: None if value == "off" else value
            for key, value in options.items()
            if value is not None
        },
    )
    _generate(
        "jets",
        with_overrides(config, overrides or []),
        n,
        out,
        seed=seed,
        workers=workers,
        shard_size=shard_size,
        dask=dask,
        shard_slice=_shard_slice(shard_index, n_shards),
    )


@data_app.command("events")
def data_events(
    process: Annotated[
        EventProcess,
        typer.Option("--process", help="Background (w, z, tt, sm, qcd) or signal sample."),
    ],
    n: Annotated[
        int, typer.Option("--n", min=1, help="Number of events (after the lepton filter).")
    ],
    out: _Out,
    seed: _Seed = 1,
    workers: _Workers = 1,
    shard_size: _ShardSize = 10_000,
    detector: _DetectorOption = "default",
    no_lepton_filter: Annotated[
        bool,
        typer.Option("--no-lepton-filter", help="Keep every event, not only those with a lepton."),
    ] = False,
    overrides: _Sets = None,
    dask: _Dask = None,
    shard_index: _ShardIndex = None,
    n_shards: _NShards = None,
) -> None:
    """Generate events in the ADC2021 trigger format into HDF5 shards.

    19 rows (MET, 4 electrons, 4 muons, 10 jets) of pT, eta, phi, class id; by default with a
    single-lepton pT > 23 GeV filter."""
    from training.config import DetectorConfig, EventSampleConfig, with_overrides

    config = EventSampleConfig(
        process=process,
        detector=DetectorConfig() if detector == "default" else None,
        **({"lepton_filter_pt_gev": None} if no_lepton_filter else {}),
    )
    _generate(
        "events",
        with_overrides(config, overrides or []),
        n,
        out,
        seed=seed,
        workers=workers,
        shard_size=shard_size,
        dask=dask,
        shard_slice=_shard_slice(shard_index, n_shards),
    )


@data_app.command("zgamma")
def data_zgamma(
    process: Annotated[
        ZgammaProcess,
        typer.Option(
            "--process",
            help="'zgamma': background pp -> Z/gamma* gamma, Z -> ee, mumu; 'h_zgamma': a "
            "heavy scalar -> Z gamma signal (mass: --mass).",
        ),
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of selected events.")],
    out: _Out,
    seed: _Seed = 1,
    workers: _Workers = 1,
    shard_size: _ShardSize = 10_000,
    detector: _DetectorOption = "default",
    mass: Annotated[
        float | None,
        typer.Option("--mass", help="h_zgamma: scalar mass in GeV (default 300)."),
    ] = None,
    overrides: _Sets = None,
    dask: _Dask = None,
    shard_index: _ShardIndex = None,
    n_shards: _NShards = None,
) -> None:
    """Generate Z-gamma events (two isolated opposite-sign same-flavour leptons and an
    isolated photon) as a table of the 18 features of the VAE-family study.

    Features m, pT, eta, phi, E of the Z-gamma and dilepton systems, m_ll, Delta R_ll, MET,
    MET phi, jet counts, Delta phi_ll, Delta phi(MET, Z-gamma), pT_ll / m_llg, stored as
    features/<name> in HDF5 shards (docs/data.md, "Z-gamma"); cuts via --set, e.g.
    --set photon_pt_min_gev=30 (keys: ZgammaSampleConfig in training/config.py)."""
    from training.config import DetectorConfig, ZgammaSampleConfig, with_overrides

    config = ZgammaSampleConfig(
        process=process,
        detector=DetectorConfig() if detector == "default" else None,
        **({"scalar_mass_gev": mass} if mass is not None else {}),
    )
    _generate(
        "zgamma",
        with_overrides(config, overrides or []),
        n,
        out,
        seed=seed,
        workers=workers,
        shard_size=shard_size,
        dask=dask,
        shard_slice=_shard_slice(shard_index, n_shards),
    )


def _shard_slice(index: int | None, count: int | None) -> ShardSlice | None:
    """``--shard-index`` and ``--n-shards`` come together or not at all."""
    from training.data.generation import ShardSlice

    if (index is None) != (count is None):
        raise NaeError("--shard-index I and --n-shards K go together: give both or neither")
    return None if index is None or count is None else ShardSlice(index, count)


def _generate(
    kind: Literal["jets", "events", "zgamma"],
    config: JetSampleConfig | EventSampleConfig | ZgammaSampleConfig,
    n: int,
    out: Path,
    *,
    seed: int,
    workers: int,
    shard_size: int,
    dask: str | None,
    shard_slice: ShardSlice | None,
) -> None:
    """Generate with one progress bar and print where the shards went."""
    from training.data.generation import count_rows, generate_shards

    total = count_rows(n, shard_size=shard_size, shard_slice=shard_slice)
    with _progress_bar(total, f"{config.process} {kind}") as progress:
        paths = generate_shards(
            kind,
            config,
            n=n,
            out_dir=out,
            seed=seed,
            workers=workers,
            shard_size=shard_size,
            dask=dask,
            shard_slice=shard_slice,
            progress=progress,
        )
    part = "" if shard_slice is None else f" (slice {shard_slice.index} of {shard_slice.count})"
    typer.echo(f"{total} {config.process} {kind} in {len(paths)} shards{part} under {out}")


@data_app.command("convert")
def data_convert(
    file_format: Annotated[
        Literal["landscape", "adc2021"],
        typer.Argument(
            metavar="FORMAT",
            help="'landscape': top-tagging landscape HDF5 (pandas key 'table', E_i, PX_i, PY_i, "
            "PZ_i, is_signal_new); 'adc2021': ADC2021 HDF5 (dataset 'Particles', N x 19 x 4).",
        ),
    ],
    in_path: Annotated[Path, typer.Argument(metavar="IN", help="Input HDF5 file.")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output directory for shards.")],
    process: Annotated[
        str | None,
        typer.Option("--process", help="Process name stored in the shards (default: FORMAT)."),
    ] = None,
    label: Annotated[
        int, typer.Option("--label", help="adc2021: label of every event (1 for a signal file).")
    ] = 0,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", help="Rows read at a time; one output shard each.")
    ] = 10_000,
) -> None:
    """Convert a public file (top-tagging landscape, ADC2021) into shards.

    Images and features are computed for landscape jets; large files are streamed chunk by chunk."""
    from training.data.convert import convert_adc2021, convert_landscape

    with _progress_bar(None, f"converting {in_path.name}") as progress:
        if file_format == "landscape":
            if label:
                raise NaeError("--label is for adc2021; landscape files carry is_signal_new")
            paths = convert_landscape(
                in_path,
                out,
                process=process or file_format,
                chunk_size=chunk_size,
                progress=progress,
            )
        else:
            paths = convert_adc2021(
                in_path,
                out,
                process=process or file_format,
                label=label,
                chunk_size=chunk_size,
                progress=progress,
            )
    typer.echo(f"{in_path} -> {len(paths)} shards under {out}")


@data_app.command("report")
def data_report(
    directories: Annotated[
        list[Path],
        typer.Argument(
            metavar="DIR...", help="Shard directories; each process in each is a curve."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="PNG to write (default report.png in the directories' common parent)."
        ),
    ] = None,
) -> None:
    """Summarise one or more shard directories as tables and one PNG of overlaid histograms.

    Sample sizes, selection (filter) efficiency, cross section and sigma x efficiency from the
    shard attributes, distribution summaries, and each directory's content hash (as
    'nae data hash'); the PNG shows 1/N dN/dx with statistical errors (jets: pT, mass,
    soft-drop mass, tau32, constituents, image pixels; events: MET, leading-lepton and
    leading-jet pT, object multiplicities)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from training.data.report import make_report

    report = make_report(directories, png_path=out)
    console = Console(width=None if sys.stdout.isatty() else 120)  # a pipe has no width: 80
    for title, (header, rows) in (
        (f"{report.kind} samples", report.sample_rows()),
        ("distributions", report.distribution_rows()),
    ):
        table = Table(*map(escape, header), title=escape(title))  # units are in [brackets]
        for row in rows:
            table.add_row(*map(escape, row))
        console.print(table)
    for directory, digest in report.hashes.items():  # plain lines: a table would fold them
        typer.echo(f"sha256 {digest}  {directory}")
    typer.echo(f"histograms saved to {report.png_path}")


@data_app.command("hash")
def data_hash(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Directory of shards.")],
) -> None:
    """Print the sha256 of a sample's arrays, for provenance (stable across HDF5 chunking,
    compression and the split into files; attributes are not hashed; docs/data.md)."""
    from training.data.shards import hash_sample

    typer.echo(f"{hash_sample(directory)}  {directory}")


_TRAIN_SET_HELP = (
    "Override any setting of the run config as key=value, repeatable, e.g. "
    "--set sampler.input.steps=20 --set train.nae_iterations=500 (keys: training/config.py)."
)


@app.command("train")
def train_command(
    config: Annotated[
        str,
        typer.Argument(
            metavar="CONFIG",
            help="A TOML file, or a recipe of training/configs/ by name (jets-qcd-image-nae).",
        ),
    ],
    overrides: Annotated[
        list[str] | None, typer.Option("--set", metavar="KEY=VALUE", help=_TRAIN_SET_HELP)
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Run directory (default runs/<name>).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run from its last checkpoint, with the same config; an NAE run "
            "at a constant learning rate may raise train.nae_iterations to train longer.",
        ),
    ] = False,
) -> None:
    """Train one model (AE, NAE, VAE or PCA; or a VAE-family generator on a feature table:
    vae, vae_d, vae_nf, vae_nf_d, copula_vae, cvae_d) as CONFIG says.

    Writes config.toml, metrics.jsonl and checkpoints/ (last.pt to resume, best.pt selected
    without signal labels) to the run directory; --resume continues bit-identically, and
    an NAE run resumed with a larger train.nae_iterations equals one that was that long."""
    require("torch", "train")
    from training.config import GeneratorRunConfig, load_config

    run_config = load_config(config, overrides or [])
    directory = run_dir or Path("runs") / run_config.name
    if isinstance(run_config, GeneratorRunConfig):
        from training.generator_training import train_generator as run_training

        steps = run_config.train.epochs
    else:
        from training.train import train as run_training
        from training.train import training_steps

        steps = training_steps(run_config)
    with _progress_bar(steps, f"training {run_config.name}") as progress:
        summary = run_training(run_config, directory, progress=progress, resume=resume)
    typer.echo(
        f"{summary.family} run in {summary.run_dir}: selected {summary.selected.name} "
        f"(step {summary.selected_step}, {summary.selection} {summary.selection_value:.4g}); "
        f"{summary.cpu_seconds:.0f} CPU s"
    )


@app.command("evaluate")
def evaluate_command(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", exists=True, file_okay=False, help="Run directory.")
    ],
    background: Annotated[
        Path | None,
        typer.Option("--background", help="Background shards (default: the config's)."),
    ] = None,
    signals: Annotated[
        list[str] | None,
        typer.Option("--signal", metavar="NAME=DATA", help="A signal sample, repeatable."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output directory (RUN/evaluation/CKPT).")
    ] = None,
    checkpoint: Annotated[
        str,
        typer.Option(
            "--checkpoint", help="best (default), last, epoch-0003, iteration-000500 or a .pt."
        ),
    ] = "best",
    all_checkpoints: Annotated[
        bool,
        typer.Option(
            "--all-checkpoints",
            help="Also score every saved checkpoint: selected vs best signal-aware AUC.",
        ),
    ] = False,
    max_events: Annotated[
        int, typer.Option("--max-events", min=0, help="Events per sample; 0: all.")
    ] = 0,
    n_bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap", min=0, help="Generator runs: bootstrap replicas per fidelity metric."
        ),
    ] = 100,
) -> None:
    """Score a run's checkpoint: AUC, 1/eps_B at eps_S 0.2 and 0.3, TPR at FPR 1e-3..1e-5 with
    uncertainties (metrics.json) and plots (ROC, scores, negative samples, training curves).

    A generator run (data.input = "table") is also judged as a generator against --background
    (held-out Monte Carlo): per-feature KS and 1-Wasserstein, Spearman matrices, a classifier
    two-sample test, each with a bootstrap error; generation speed against Pythia + detector;
    plots of the overlays, correlations and latent space."""
    require("torch", "train")
    import tomllib

    named = dict(_name_value(item) for item in signals or [])
    options = {"background": background, "signals": named, "max_events": max_events}
    if tomllib.loads((run / "config.toml").read_text())["data"].get("input") == "table":
        from training.generator_evaluation import evaluate_generator

        if all_checkpoints:
            raise NaeError(
                "--all-checkpoints compares NAE/AE checkpoints; for a generator run, evaluate "
                "one with --checkpoint epoch-NNNN"
            )

        summary = evaluate_generator(
            run, out_dir=out, checkpoint=checkpoint, n_bootstrap=n_bootstrap, **options
        )
        report = json.loads((summary.out_dir / "metrics.json").read_text())
        fidelity, speed = report["fidelity"], report["speed"]
        continuous = [f for f, m in fidelity["features"].items() if not m["discrete"]]
        worst = max(continuous, key=lambda f: fidelity["features"][f]["ks"]["value"])
        typer.echo(
            f"fidelity on {report['background']['n']} events: max KS "
            f"{fidelity['features'][worst]['ks']['value']:.4f} ({worst}), Spearman max |Δ| "
            f"{fidelity['spearman']['max_abs_difference']['value']:.4f}, classifier AUC "
            f"{fidelity['classifier_two_sample']['auc']['value']:.4f}; "
            f"{speed['generated_per_cpu_second']:.4g} events/CPU s"
            + (f" (x{speed['speedup']:.4g} Pythia + detector)" if speed["speedup"] else "")
        )
    else:
        from training.evaluate import evaluate_run

        summary = evaluate_run(run, out_dir=out, checkpoint=checkpoint, **options)
    for name, aucs in summary.auc.items():
        typer.echo(f"{name}: " + ", ".join(f"AUC({s}) {a:.4f}" for s, a in aucs.items()))
    typer.echo(f"metrics and plots in {summary.out_dir}")
    if all_checkpoints:
        from training.evaluate import evaluate_checkpoints

        table = evaluate_checkpoints(run, **options)
        for name, best in table["best_auc"].items():
            typer.echo(
                f"{name}: selected AUC {table['selected']['auc'][name]:.4f}, best "
                f"{best['auc']:.4f} at {best['checkpoint']}"
            )
        for rule, chosen in table.get("rules", {}).items():
            typer.echo(
                f"rule {rule} would select {chosen['checkpoint']}: "
                + ", ".join(f"{s} {d:+.4f} vs best" for s, d in chosen["minus_best"].items())
            )


@app.command("generate")
def generate_command(
    run: Annotated[
        Path,
        typer.Argument(
            metavar="RUN", exists=True, file_okay=False, help="Run directory of a generator."
        ),
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of events to generate.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for the shards.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated sample.")] = 1,
    shard_size: Annotated[
        int, typer.Option("--shard-size", min=1, help="Events per shard file.")
    ] = 100_000,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="best (default), last, epoch-0003 or a .pt.")
    ] = "best",
) -> None:
    """Generate events with a trained VAE-family generator (a zgamma-* run) into shards of the
    Monte Carlo's layout (features/<name>, label 0), readable wherever simulated shards are."""
    require("torch", "train")
    from training.synthesis import generate_sample

    with _progress_bar(n, f"generating with {run.name}") as progress:
        paths = generate_sample(
            run, n=n, out_dir=out, seed=seed, shard_size=shard_size, checkpoint=checkpoint,
            progress=progress,
        )  # fmt: skip
    typer.echo(f"{n} generated events in {len(paths)} shards under {out}")


def _name_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        raise NaeError(f"--signal {item!r}: expected NAME=DATA, e.g. top=data/test/top")
    return name, value


@app.command("export")
def export_command(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", exists=True, file_okay=False, help="Run directory.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory models/NAME/VERSION.")],
    calibrate: Annotated[
        Path,
        typer.Option(
            "--calibrate",
            exists=True,
            help="Background sample for the thresholds, apart from training and validation.",
        ),
    ],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also quantize (static QDQ and dynamic) and gate it.")
    ] = False,
    bkg_eff: Annotated[
        str, typer.Option("--bkg-eff", help="Target background efficiencies, comma-separated.")
    ] = "1e-2,1e-3,1e-4",
    prescale: Annotated[
        str | None,
        typer.Option("--prescale", help="One prescale per --bkg-eff, comma-separated (all 1)."),
    ] = None,
    input_rate_hz: Annotated[
        float | None,
        typer.Option(
            "--input-rate-hz", help="Reference input rate (default 2544 x 11245.6 Hz = 28.61e6)."
        ),
    ] = None,
    signals: Annotated[
        list[str] | None,
        typer.Option(
            "--signal", metavar="NAME=DATA", help="A signal sample for metrics and the int8 gate."
        ),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="best (default), last, epoch-0003 or a .pt.")
    ] = "best",
    score: Annotated[
        str | None,
        typer.Option(
            "--score",
            help="Generator runs: the score the bundle returns (reconstruction, kl, mu2, "
            "latent_nll, discriminator; default: the run config's model.score).",
        ),
    ] = None,
) -> None:
    """Export a run's checkpoint as a calibrated bundle: ONNX fp32 (+ int8 where it passes its
    gate), thresholds with Clopper-Pearson intervals, provenance."""
    require("torch", "train")
    from service.bundle import REFERENCE_RATE_HZ
    from training.export import export_run

    efficiencies = _numbers("--bkg-eff", bkg_eff, float)
    bundle = export_run(
        run,
        out,
        background=calibrate,
        signals=dict(_name_value(item) for item in signals or []),
        checkpoint=checkpoint,
        score=score,
        int8=int8,
        target_efficiencies=efficiencies,
        prescales=_numbers("--prescale", prescale, int) if prescale else None,
        reference_rate_hz=input_rate_hz or REFERENCE_RATE_HZ,
        progress=lambda stage: typer.echo(f"{stage} ...", err=True),
    )
    typer.echo(
        f"{bundle.name} v{bundle.version} ({bundle.kind}) in {out}: {', '.join(bundle.files)}"
    )
    for point in bundle.working_points:
        low, high = point.background_efficiency_ci95
        typer.echo(
            f"  {point.name}: score > {point.threshold:.6g}, background efficiency "
            f"{point.background_efficiency:.3g} [{low:.3g}, {high:.3g}] of {point.n_background}, "
            f"{point.expected_rate_hz:.4g} Hz"
        )
    if int8:
        record = (bundle.model_extra or {})["int8"]
        gates = record["gates"].values()
        why = "; ".join(reason for gate in gates for reason in gate["reasons"])
        typer.echo(f"  int8: shipped {record['shipped'] or 'none'}" + (f" ({why})" if why else ""))
    typer.echo(f"  recommended: {bundle.recommended}")


bundle_app = typer.Typer(
    help="Check and run bundles offline, with the service's own code.", no_args_is_help=True
)
app.add_typer(bundle_app, name="bundle")
_BundleDir = Annotated[
    Path, typer.Argument(metavar="DIR", help="Bundle directory models/NAME/VERSION.")
]


@bundle_app.command("verify")
def bundle_verify(directory: _BundleDir) -> None:
    """Check a bundle as the service loads it: schema, sha256 of every file, each ONNX
    graph's interface and a test run. Exits 1 with one line on any mismatch."""
    from training.bundles import verify_bundle

    bundle = verify_bundle(directory)
    names = ", ".join(point.name for point in bundle.working_points)
    typer.echo(
        f"ok: {bundle.name} v{bundle.version} ({bundle.kind}), files {', '.join(bundle.files)} "
        f"match their sha256; working points {names}; recommended {bundle.recommended}"
    )


@bundle_app.command("score")
def bundle_score(
    directory: _BundleDir,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="Shard directory or file, .npy, landscape or ADC2021 file."
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Write the scores (.npy).")] = None,
    model_file: Annotated[
        str,
        typer.Option("--model-file", help="recommended (default), model.onnx or model.int8.onnx."),
    ] = "recommended",
) -> None:
    """Score INPUT offline through the service's runtime and summarise the fraction passing
    each working point."""
    from service.bundle import load_bundle
    from training.bundles import score_bundle

    if model_file not in ("recommended", "model.onnx", "model.int8.onnx"):
        raise NaeError(
            f"--model-file {model_file!r}: use recommended, model.onnx or model.int8.onnx"
        )
    with _progress_bar(None, f"scoring {source.name}") as progress:
        summary = score_bundle(directory, source, out=out, model_file=model_file, progress=progress)
    typer.echo(f"{summary.n_events} events scored with {summary.model_file}")
    calibrated = {point.name: point for point in load_bundle(directory).working_points}
    for name, passing in summary.passing.items():
        low, high = calibrated[name].background_efficiency_ci95
        typer.echo(
            f"  {name}: {passing.n_passing} pass ({passing.value:.3g}, 95% CI "
            f"[{passing.ci95.low:.3g}, {passing.ci95.high:.3g}]); calibrated background "
            f"[{low:.3g}, {high:.3g}]"
        )
    if summary.scores_path is not None:
        typer.echo(f"scores saved to {summary.scores_path}")


@bundle_app.command("drop-int8")
def bundle_drop_int8(
    directory: _BundleDir,
    why: Annotated[
        str, typer.Option("--why", help="Why it is withdrawn; recorded in bundle.json.")
    ],
) -> None:
    """Withdraw a shipped model.int8.onnx in place: bundle.json drops it, recommends
    model.onnx and records why; the fp32 model and thresholds stay as they are. Rewrite the
    bundle's card afterwards (make cards)."""
    from training.bundles import drop_int8

    bundle = drop_int8(directory, why)
    typer.echo(
        f"ok: {bundle.name} v{bundle.version} ships {', '.join(bundle.files)}; int8 withdrawn: "
        f"{why}"
    )


_Root = Annotated[
    Path,
    typer.Option(
        "--root",
        exists=True,
        file_okay=False,
        help="Where the bundle's relative provenance paths (runs/..., data/...) start: the "
        "directory nae export ran in (default: here).",
    ),
]


@bundle_app.command("card")
def bundle_card_command(
    directory: _BundleDir,
    metrics: Annotated[
        Path | None,
        typer.Option(
            "--metrics",
            help="The run's metrics.json of nae evaluate (default: "
            "RUN/evaluation/CHECKPOINT/metrics.json of the bundle's run, where it exists).",
        ),
    ] = None,
    fresh: Annotated[
        Path | None,
        typer.Option(
            "--fresh",
            help="A background sample of the calibration process with other seeds, to check "
            "the working points on (default: data/fresh/PROCESS, where it exists).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Markdown file to write (default: stdout).")
    ] = None,
    root: _Root = Path("."),
) -> None:
    """Write a bundle's model card (markdown): samples and their hashes, metrics per signal
    with uncertainties, working points with Clopper-Pearson intervals and their check on a
    fresh background, the int8 gate, files and sizes, and the commands that rebuild it. The
    bundle is verified first."""
    from training.cards import bundle_card

    card = bundle_card(directory, metrics=metrics, fresh=fresh, root=root)
    if out is None:
        typer.echo(card.markdown, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(card.markdown)
    quoted = card.metrics_path or "none found: export metrics only"
    typer.echo(
        f"{card.bundle.name} v{card.bundle.version}: card {out} (metrics {quoted}; fresh "
        f"background {card.fresh_path or 'none found'}: {card.row['fresh check']})"
    )


@bundle_app.command("cards")
def bundle_cards_command(
    models: Annotated[
        Path, typer.Argument(metavar="MODELS", help="Directory of bundles NAME/VERSION/.")
    ] = Path("models"),
    out_dir: Annotated[
        Path, typer.Option("--out-dir", help="Where NAME.md goes for each bundle.")
    ] = Path("docs/models"),
    readme: Annotated[
        Path | None,
        typer.Option(
            "--readme",
            help="Also rewrite the bundle table (between its marker comments) of this file, "
            "e.g. models/README.md.",
        ),
    ] = None,
    root: _Root = Path("."),
) -> None:
    """Write the model card of the highest version of every bundle under MODELS (the one the
    service serves by default), and optionally the table of bundles in a README. New bundles
    are picked up as they appear; each is verified first."""
    from training.cards import write_cards

    written = write_cards(
        models, out_dir, readme=readme, root=root, progress=lambda line: typer.echo(line)
    )
    typer.echo(f"{len(written)} cards in {out_dir}" + (f"; table in {readme}" if readme else ""))


def _numbers(option: str, text: str, kind: type) -> list:
    try:
        return [kind(item) for item in text.split(",")]
    except ValueError:
        raise NaeError(
            f"{option} {text!r}: expected comma-separated numbers, e.g. 1e-2,1e-3"
        ) from None


@contextmanager
def _progress_bar(total: int | None, description: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stdout; yields the ``progress(k)`` callback the library takes."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(TextColumn("{task.description}"), *columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda k: bar.advance(task, k)


def main() -> None:
    """Entry point: a ``NaeError`` becomes one line on stderr and exit code 1 (``--debug``
    keeps the traceback); a usage error becomes one line naming ``--help`` and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's own click: usage errors and bad values
        ctx = getattr(exc, "ctx", None)
        message = " ".join(exc.format_message().split())  # one line
        if message:  # empty when typer already printed the help of a bare group
            hint = f" (see '{ctx.command_path} --help')" if ctx else ""
            typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except NaeError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # python -m training.cli, as the nae script
    main()
