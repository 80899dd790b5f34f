"""Training configs: every recipe loads and round-trips through TOML, overrides are typed,
every training setting says where its default comes from."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from training.config import (
    DataConfig,
    LangevinConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    SamplerConfig,
    TrainConfig,
    config_to_toml,
    load_run_config,
)
from training.errors import NaeError

RECIPES = sorted(p.stem for p in (Path("training") / "configs").glob("*.toml"))
REQUIRED = {
    f"jets-{process}-image-{family}" for process in ("qcd", "top") for family in ("nae", "ae")
} | {
    f"{stem}-{family}"
    for stem in ("jets-qcd-features", "events-sm")
    for family in ("nae", "ae", "vae", "pca")
}


def test_the_named_recipes_exist():
    assert set(RECIPES) >= REQUIRED


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_loads_and_round_trips(name):
    config = load_run_config(name)
    assert config.name == name
    assert config.data.train[0].startswith("data/train/")
    assert config.data.background.startswith("data/test/") and config.data.signals
    assert RunConfig.model_validate(tomllib.loads(config_to_toml(config))) == config


def test_overrides_are_typed_and_bad_ones_name_the_key():
    config = load_run_config(
        "jets-qcd-image-nae", ["sampler.latent.steps=20", "model.hidden=[64, 32]"]
    )
    assert config.sampler.latent.steps == 20 and config.model.hidden == (64, 32)
    with pytest.raises(NaeError, match=r"sampler\.latent\.steps"):
        load_run_config("jets-qcd-image-nae", ["sampler.latent.steps=many"])
    with pytest.raises(NaeError, match=r"recipes: .*jets-qcd-image-nae"):
        load_run_config("no-such-recipe")


@pytest.mark.parametrize(
    "model", [DataConfig, ModelConfig, LangevinConfig, SamplerConfig, LossConfig, TrainConfig]
)
def test_every_training_setting_is_described(model):
    undescribed = [name for name, field in model.model_fields.items() if not field.description]
    assert not undescribed or set(undescribed) <= {"input", "family", "latent"}
