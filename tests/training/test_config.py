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

ALL_RECIPES = sorted(p.stem for p in (Path("training") / "configs").glob("*.toml"))
GENERATOR_RECIPES = [name for name in ALL_RECIPES if name.startswith("zgamma-")]
RECIPES = [name for name in ALL_RECIPES if name not in GENERATOR_RECIPES]
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


def test_load_config_reads_generator_recipes_and_refuses_inconsistent_ones(tmp_path):
    from training.config import GeneratorRunConfig, RunConfig, load_config

    assert isinstance(load_config("zgamma-copula-vae"), GeneratorRunConfig)
    assert isinstance(load_config("events-sm-vae"), RunConfig)
    config = load_config("zgamma-cvae-d", ["model.latent_dim=3", "data.inject_fraction=0.01",
                                           "data.inject=data/zgamma/signal-train"])  # fmt: skip
    assert config.model.latent_dim == 3 and config.data.inject_fraction == 0.01
    for overrides, message in (
        (["data.inject_fraction=0.01"], "go together"),
        (["model.latent_dim=1"], "latent_dim >= 2"),
        (['data.discrete=["n_jets", "n_bjets"]'], "n_bjets"),
    ):
        with pytest.raises(NaeError, match=message):
            load_config("zgamma-vae-nf", overrides)
    with pytest.raises(NaeError, match="discriminator"):
        load_config("zgamma-vae", ["model.score=discriminator"])


@pytest.mark.parametrize("name", GENERATOR_RECIPES)
def test_each_generator_recipe_loads_and_round_trips(name):
    from training.config import GeneratorRunConfig, load_config

    config = load_config(name)
    assert config.name == name and config.data.input == "table"
    assert config.data.train[0].startswith("data/zgamma/") and config.data.signals
    assert GeneratorRunConfig.model_validate(tomllib.loads(config_to_toml(config))) == config


def test_all_six_generator_families_have_a_recipe():
    from training.config import load_config

    families = {load_config(name).model.family for name in GENERATOR_RECIPES}
    assert families == {"vae", "vae_d", "vae_nf", "vae_nf_d", "copula_vae", "cvae_d"}
