"""Fixtures of the cross-cutting tests: the bundles shipped in the repository's models/, and small
real Pythia samples made once per session and shared by every test that asks for the same one."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The shipped bundles: the repository's models/. NAE_TEST_MODELS_DIR points the same checks at
# another checkout's models/ (bundles exported but not committed yet); relative provenance
# paths are then read from that directory's parent.
MODELS = Path(os.environ.get("NAE_TEST_MODELS_DIR", ROOT / "models"))


def shipped_bundle_dirs(models_dir: Path = MODELS) -> list[Path]:
    """Every ``NAME/VERSION/`` under ``models_dir`` (the shipped models/) holding a bundle.json
    (all versions: each one is served under its version), in a stable order."""
    return sorted(path.parent for path in models_dir.glob("*/*/bundle.json"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``shipped_bundle`` runs once per bundle of models/ (the directory), or is
    skipped once, saying why, while models/ holds none."""
    if "shipped_bundle" not in metafunc.fixturenames:
        return
    directories = shipped_bundle_dirs()
    if directories:
        ids = [f"{d.parent.name}-v{d.name}" for d in directories]
        metafunc.parametrize("shipped_bundle", directories, ids=ids)
    else:
        reason = "models/ holds no bundle yet: nothing shipped to check (models/README.md)"
        skip = pytest.param(None, id="no-bundle", marks=pytest.mark.skip(reason=reason))
        metafunc.parametrize("shipped_bundle", [skip])


@pytest.fixture(scope="session")
def shipped_bundles() -> list[Path]:
    """The bundle directories of the repository's models/ (``shipped_bundle_dirs``)."""
    return shipped_bundle_dirs()


@pytest.fixture(scope="session")
def pythia_sample(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``pythia_sample(verb, config, n, seed)``: a shard directory of ``n`` real Pythia jets
    (``verb="jets"``, a ``JetSampleConfig``), events (``"events"``, an
    ``EventSampleConfig``) or Z-gamma events (``"zgamma"``, a ``ZgammaSampleConfig``) made
    with ``training.data.generation.generate_shards``, one shard,
    on one core. Made once per session for each (verb, config, n, seed) and shared."""
    from training.data.generation import generate_shards

    made: dict[tuple[str, str, int, int], Path] = {}
    root = tmp_path_factory.mktemp("pythia")

    def sample(verb: str, config: object, n: int, seed: int) -> Path:
        key = (verb, json.dumps(config.model_dump(mode="json"), sort_keys=True), n, seed)
        if key not in made:
            out = root / f"{config.process}-{n}-seed{seed}-{len(made)}"
            generate_shards(verb, config, n=n, out_dir=out, seed=seed, shard_size=n)
            made[key] = out
        return made[key]

    return sample
