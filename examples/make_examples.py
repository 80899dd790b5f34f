"""Make the example inputs of examples/: a few real Pythia jets and events, as each bundle kind
takes them, in the three forms a client sends.

    OMP_NUM_THREADS=1 .venv/bin/python examples/make_examples.py      # ~20 CPU s

For every sample of ``SAMPLES`` it runs ``nae data jets|events|zgamma --process P --n N --seed S``
(the installed command, next to this interpreter) into a temporary directory, reads the shards with
the reader ``nae bundle score`` uses (``training.data.inputs.Inputs``) and writes, per input kind
the sample feeds (jet images, jet features, 19x3 events, Z-gamma feature rows):

- ``<stem>.npy``: float32 ``(N, *input_shape)``, for ``Content-Type: application/x-npy``;
- ``<stem>.score.json``: the ``POST /score`` body ``{"model": NAME, "inputs": [...]}``, naming
  the bundle the README scores it with;
- ``<stem>.v2.json``: the ``POST /v2/models/NAME/infer`` body (one FP32 tensor ``x``), for any
  bundle of that kind;

and ``examples.json``, the manifest the tests and benchmarks read (file stems, sample, seed,
kind, shape, bundle). JSON numbers are float32's shortest repr, so the three forms hold the same
float32 values bit for bit. The same seeds give the same files (Pythia is seeded per shard).

Seeds 9101-9107 are apart from the training (101-103), test (201-208), fresh (301-304) and
calibration-check (90xx) samples, so an example is never an event a bundle was trained or
calibrated on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson

from training.config import load_config
from training.data.inputs import EVENT_FEATURES, Inputs, Kind
from training.models.families import input_shape

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MANIFEST = "examples.json"
N_EXAMPLES = 4
# The recipe whose inputs each kind follows (feature order, event columns), and the bundle
# whose name goes into that kind's /score body: the headline NAE bundle of the kind.
RECIPES: dict[Kind, str] = {
    "jet-image": "jets-qcd-image-nae",
    "jet-features": "jets-qcd-features-nae",
    "event": "events-sm-nae",
    "event-features": "zgamma-vae-nf-d",
}


class Sample(NamedTuple):
    """One small Pythia run: ``nae data VERB --process PROCESS --seed SEED``."""

    name: str
    verb: str  # jets | events | zgamma
    process: str
    seed: int
    kinds: tuple[Kind, ...]  # the input kinds it is written out for


SAMPLES = (
    Sample("qcd", "jets", "qcd", 9101, ("jet-image", "jet-features")),
    Sample("top", "jets", "top", 9102, ("jet-image", "jet-features")),
    Sample("sm", "events", "sm", 9104, ("event",)),
    Sample("zprime", "events", "zprime_mumu", 9105, ("event",)),
    Sample("zgamma", "zgamma", "zgamma", 9106, ("event-features",)),
    Sample("h-zgamma", "zgamma", "h_zgamma", 9107, ("event-features",)),
)
_SUFFIXES: dict[Kind, str] = {
    "jet-image": "images",
    "jet-features": "features",
    "event": "events",
    "event-features": "features",
}


def generate(sample: Sample, n: int, out_dir: Path) -> tuple[Path, str]:
    """Run ``nae data`` for ``sample`` into ``out_dir``; returns the directory and the command."""
    command = [
        "nae", "data", sample.verb, "--process", sample.process, "--n", str(n),
        "--seed", str(sample.seed), "--shard-size", str(n), "--out", str(out_dir),
    ]  # fmt: skip
    nae = Path(sys.executable).with_name("nae")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(nae), *command[1:]], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    return out_dir, " ".join([*command[:-1], f"DIR/{sample.name}"])


def inputs_of(kind: Kind) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The columns ``Inputs`` reads for ``kind`` and the per-event shape, as the kind's recipe
    (and so its bundle) takes them."""
    data = load_config(RECIPES[kind]).data
    if kind == "event-features":  # a generator recipe: one row of its named features
        return tuple(data.features), (len(data.features),)
    shape = input_shape(data)
    if kind == "jet-features":
        return tuple(data.features), shape
    if kind == "event":
        return EVENT_FEATURES[: shape[-1]], shape
    return (), shape


def write_forms(x: np.ndarray, stem: Path, bundle: str) -> list[Path]:
    """``stem``.npy, .score.json and .v2.json of the float32 inputs ``x`` (N, *shape)."""
    option = orjson.OPT_SERIALIZE_NUMPY  # float32 arrays as float32's shortest repr
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.reshape(-1)}
    paths = [stem.with_suffix(suffix) for suffix in (".npy", ".score.json", ".v2.json")]
    np.save(paths[0], x)
    paths[1].write_bytes(orjson.dumps({"model": bundle, "inputs": x}, option=option) + b"\n")
    paths[2].write_bytes(orjson.dumps({"inputs": [tensor]}, option=option) + b"\n")
    return paths


def make_examples(out: Path, n: int) -> list[dict[str, Any]]:
    """Every sample's files under ``out`` and the manifest; returns the manifest entries."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    with tempfile.TemporaryDirectory(prefix="nae-examples-") as scratch:
        for sample in SAMPLES:
            shards, command = generate(sample, n, Path(scratch) / sample.name)
            for kind in sample.kinds:
                columns, shape = inputs_of(kind)
                x = Inputs(shards, kind, columns).head(n)
                if x.shape[1:] != shape:
                    sys.exit(f"{sample.name}: {kind} inputs of shape {x.shape[1:]}, not {shape}")
                stem = f"{sample.name}-{_SUFFIXES[kind]}"
                bundle = RECIPES[kind]
                files = write_forms(np.ascontiguousarray(x, np.float32), out / stem, bundle)
                entries.append(
                    {
                        "stem": stem,
                        "process": sample.process,
                        "seed": sample.seed,
                        "n": len(x),
                        "kind": kind,
                        "shape": list(shape),
                        "features": list(columns),
                        "score_bundle": bundle,
                        "command": command,
                        "files": {path.name: path.stat().st_size for path in files},
                    }
                )
    (out / MANIFEST).write_text(json.dumps(entries, indent=2) + "\n")
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=N_EXAMPLES, help="events or jets per sample")
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="output directory")
    args = parser.parse_args()
    for entry in make_examples(args.out, args.n):
        sizes = ", ".join(f"{name} {size / 1024:.1f} KiB" for name, size in entry["files"].items())
        print(f"{entry['stem']}: {entry['n']} x {entry['shape']} ({entry['command']}): {sizes}")


if __name__ == "__main__":
    main()
