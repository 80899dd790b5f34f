"""examples/: the committed inputs are what examples/make_examples.py makes from its seeds, and
each file's three forms hold the same float32 values in the shape its bundle kind takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.config import load_config
from training.models.families import input_shape

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RECIPES = {"jet-image": "jets-qcd-image-nae", "jet-features": "jets-qcd-features-nae"}
RECIPES |= {"event": "events-sm-nae", "event-features": "zgamma-vae-nf-d"}


def _manifest() -> list[dict[str, Any]]:
    return json.loads((EXAMPLES / "examples.json").read_text())


@pytest.mark.parametrize("entry", _manifest(), ids=lambda entry: entry["stem"])
def test_the_three_forms_hold_the_same_inputs(entry: dict[str, Any]) -> None:
    stem = EXAMPLES / entry["stem"]
    x = np.load(stem.with_suffix(".npy"))
    assert x.dtype == np.float32 and x.shape == (entry["n"], *entry["shape"])
    assert np.isfinite(x).all()
    data = load_config(RECIPES[entry["kind"]]).data
    if entry["kind"] == "event-features":  # a generator recipe: one row of named features
        assert x.shape[1:] == (len(data.features),)
    else:
        assert x.shape[1:] == input_shape(data), "the shape the kind's recipe (bundle) takes"
    if entry["kind"] in ("jet-features", "event-features"):
        assert entry["features"] == list(data.features)
    score = json.loads(stem.with_suffix(".score.json").read_text())
    assert score["model"] == entry["score_bundle"]
    np.testing.assert_array_equal(np.array(score["inputs"], np.float32), x)
    (tensor,) = json.loads(stem.with_suffix(".v2.json").read_text())["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("x", "FP32", list(x.shape))
    np.testing.assert_array_equal(np.array(tensor["data"], np.float32).reshape(x.shape), x)
    assert entry["files"] == {
        path.name: path.stat().st_size for path in sorted(EXAMPLES.glob(f"{entry['stem']}.*"))
    }


@pytest.mark.pythia
def test_the_script_remakes_the_committed_files_from_their_seeds(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "make_examples.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    made = sorted(path.name for path in tmp_path.iterdir())
    committed = sorted(path.name for path in EXAMPLES.iterdir() if path.suffix in (".npy", ".json"))
    assert made == committed
    for name in made:
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
