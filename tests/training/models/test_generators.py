"""The VAE-family generators: flow, copula, codec, each family's training and generation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from training.config import ZGAMMA_DERIVED, ZGAMMA_FEATURES, GeneratorRunConfig, TableDataConfig
from training.data.loaders import load_inputs
from training.data.zgamma import derive_features
from training.generator_training import (
    TableBatch,
    build_optimisers,
    generator_step,
    validation_loss,
)
from training.models.generators.copula import GaussianCopulaPrior, LogisticMixtureCDF
from training.models.generators.families import build_generator
from training.models.generators.flow import RealNVP

FAMILIES = ("vae", "vae_d", "vae_nf", "vae_nf_d", "copula_vae", "cvae_d")


def _config(family: str, train: str, **model: object) -> GeneratorRunConfig:
    return GeneratorRunConfig.model_validate(
        {
            "name": f"test-{family}",
            "data": {"input": "table", "train": [train]},
            "model": {"family": family, "hidden": [32, 32], "latent_dim": 4,
                      "n_quantiles": 64, **model},
            "train": {"batch_size": 64, "lr": 5e-3},
        }
    )  # fmt: skip


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Parameters drawn at random: a freshly built flow is the identity, which tests nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    return module


def test_realnvp_is_invertible_with_the_autograd_log_determinant():
    flow = _randomised(RealNVP(4, n_layers=4, hidden=16), seed=1).double()
    eps = torch.randn(50, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z, log_det = flow(eps)
    back, inverse_log_det = flow.inverse(z)
    assert not torch.allclose(z, eps, atol=1e-2)  # the flow does something
    torch.testing.assert_close(back, eps, atol=1e-10, rtol=0)
    torch.testing.assert_close(inverse_log_det, -log_det, atol=1e-10, rtol=0)
    for i in range(5):
        jacobian = torch.autograd.functional.jacobian(lambda e: flow(e.unsqueeze(0))[0][0], eps[i])
        assert log_det[i].item() == pytest.approx(
            torch.linalg.slogdet(jacobian)[1].item(), abs=1e-9
        )


def test_copula_marginals_are_monotone_cdfs_with_their_density_and_quantile():
    marginals = _randomised(LogisticMixtureCDF(3, 5), seed=3).double()
    grid = torch.linspace(-60, 60, 20001, dtype=torch.float64).unsqueeze(1).expand(-1, 3)
    with torch.no_grad():
        cdf = marginals.cdf(grid)
        density = marginals.log_density(grid).exp()
        assert (torch.diff(cdf, dim=0) >= 0).all()  # never decreasing (float64 saturates)
        inside = (cdf[1:] > 1e-12) & (cdf[1:] < 1 - 1e-12)
        assert (torch.diff(cdf, dim=0)[inside] > 0).all()  # and strictly increasing inside
        assert cdf[0].max() < 1e-6 and cdf[-1].min() > 1 - 1e-6
        area = torch.trapezoid(density, grid[:, 0], dim=0)
        torch.testing.assert_close(area, torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0)
        z = torch.randn(200, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        torch.testing.assert_close(marginals.quantile(marginals.cdf(z)), z, atol=1e-8, rtol=0)


def test_copula_prior_is_a_normalised_density_that_its_samples_follow():
    prior = _randomised(GaussianCopulaPrior(2, n_components=3), seed=5)
    axis = torch.linspace(-25, 25, 801)
    zz = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        density = prior.log_prob(zz).exp().reshape(801, 801)
        step = float(axis[1] - axis[0])
        assert float(density.sum()) * step**2 == pytest.approx(1.0, abs=0.01)
        samples = prior.sample(20000, torch.Generator().manual_seed(6))
    # the samples' fraction below the prior's marginal median is one half
    median = prior.marginals.quantile(torch.full((1, 2), 0.5))
    fraction = (samples < median).double().mean(dim=0)
    assert torch.all((fraction - 0.5).abs() < 4 * math.sqrt(0.25 / 20000))
    cholesky = prior.cholesky()
    torch.testing.assert_close(torch.diagonal(cholesky @ cholesky.T), torch.ones(2))


@pytest.mark.pythia
@pytest.mark.parametrize(
    ("relative_phi", "cartesian"),
    [
        ({}, {}),
        ({"phi_ll": "phi_llg", "met_phi": "phi_llg"}, {}),
        ({"phi_ll": "phi_llg", "met_phi": "phi_llg"}, {"met_phi": "met"}),
    ],
)
def test_codec_round_trips_real_events(zgamma_samples, relative_phi, cartesian):
    config = _config("vae", str(zgamma_samples["train"]))
    update = {"relative_phi": relative_phi, "cartesian": cartesian}
    config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    x = load_inputs([zgamma_samples["train"]], input="features", features=config.data.features)
    model = build_generator(config)
    model.codec.fit(x.numpy())
    u, onehot = model.codec(x)
    categories = model.codec.categories(x)
    back = model.codec.decode(u, categories)
    continuous = model.codec.continuous_index
    difference = back - x
    for angle in ("phi_ll", "met_phi"):  # -pi and pi are the same angle
        column = config.data.features.index(angle)
        difference[:, column] = torch.remainder(difference[:, column] + math.pi, 2 * math.pi)
        difference[:, column] -= math.pi
    tolerance = 2e-3 + 2e-3 * x.abs()
    assert (difference.abs() <= tolerance)[:, continuous].all()
    discrete = model.codec.discrete_index
    assert torch.equal(back[:, discrete], torch.clamp(x[:, discrete], max=7))
    assert onehot.sum(dim=1).eq(model.codec.n_discrete).all()
    joint = model.codec.combination_onehot_of(categories)  # the decoder's joint categorical
    assert torch.equal(joint @ model.codec.combination_onehot, onehot)


@pytest.mark.pythia
@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_its_losses_fall_and_it_generates_integer_counts(zgamma_samples, family):
    config = _config(family, str(zgamma_samples["train"]))
    x = load_inputs([zgamma_samples["train"]], input="features", features=config.data.features)
    torch.manual_seed(7)
    model = build_generator(config)
    model.codec.fit(x.numpy())
    with torch.no_grad():
        u, onehot = model.codec(x)
    batch = TableBatch(u, onehot, model.codec.categories(x))
    optimisers = build_optimisers(config, model)
    generator = torch.Generator().manual_seed(8)
    before = validation_loss(model, batch, beta=1.0, seed=0)
    steps = [
        generator_step(model, batch.rows(slice(i % 3 * 50, i % 3 * 50 + 50)), optimisers,
                       beta=1.0, adversarial_weight=0.05, generator=generator)
        for i in range(150)
    ]  # fmt: skip
    after = validation_loss(model, batch, beta=1.0, seed=0)
    assert after < before - 3.0, (before, after)  # nats per event: far beyond the noise
    if family.endswith("_d"):
        assert all(math.isfinite(s["discriminator"]) for s in steps)
    generated = model.generate(500, torch.Generator().manual_seed(9))
    assert generated.shape == (500, 18) and torch.isfinite(generated).all()
    counts = generated[:, model.codec.discrete_index]
    assert torch.equal(counts, counts.round()) and counts.min() >= 0
    scores = model.scores(x)
    assert set(scores) == set(model.score_names)
    assert all(v.shape == (len(x),) and torch.isfinite(v).all() for v in scores.values())


@pytest.mark.pythia
def test_conditional_generation_draws_the_jet_counts_with_their_frequencies(zgamma_samples):
    config = _config("cvae_d", str(zgamma_samples["train"]))
    x = load_inputs([zgamma_samples["train"]], input="features", features=config.data.features)
    model = build_generator(config)
    model.codec.fit(x.numpy())
    n = 20_000
    generated = model.generate(n, torch.Generator().manual_seed(10))
    column = config.data.features.index("n_jets")
    for value in np.unique(x[:, column].numpy()):
        expected = float((x[:, column] == value).double().mean())
        observed = float((generated[:, column] == value).double().mean())
        assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / n) + 1e-9


@pytest.mark.pythia
def test_identities_hold_on_real_events_and_on_every_generated_one(zgamma_samples):
    config = _config("vae_nf", str(zgamma_samples["train"]))
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"derived": ZGAMMA_DERIVED})}
    )
    features = config.data.features
    x = load_inputs([zgamma_samples["train"]], input="features", features=features).numpy()
    derived = [features.index(name) for name in ZGAMMA_DERIVED]
    recomputed = derive_features(x, features, ZGAMMA_DERIVED)  # the sample's own columns
    np.testing.assert_allclose(recomputed[:, derived], x[:, derived], rtol=1e-5, atol=1e-5)
    model = _randomised(build_generator(config), seed=11)
    model.codec.fit(x)
    assert model.codec.n_continuous == 16 - len(ZGAMMA_DERIVED)  # the networks never see them
    generated = model.generate(2_000, torch.Generator().manual_seed(12)).numpy()
    again = derive_features(generated, features, ZGAMMA_DERIVED)
    np.testing.assert_allclose(again[:, derived], generated[:, derived], rtol=1e-6, atol=1e-6)
    # without data.derived the same columns are free draws and break the identities
    free = _randomised(build_generator(_config("vae_nf", str(zgamma_samples["train"]))), 11)
    free.codec.fit(x)
    loose = free.generate(2_000, torch.Generator().manual_seed(12)).numpy()
    energy = features.index("e_ll")
    exact = derive_features(loose, features, ZGAMMA_DERIVED)[:, energy]
    assert np.median(np.abs(exact - loose[:, energy])) > 1.0  # GeV


@pytest.mark.parametrize(
    ("derived", "message"),
    [
        (["m_ll"], "no formula"),
        (["e_ll", "n_jets"], "no formula"),
        (["e_ll"], "needs 'm_ll' among the modelled"),
    ],
)
def test_derived_features_need_a_formula_and_modelled_inputs(derived, message):
    features = [name for name in ZGAMMA_FEATURES if name != "m_ll"] if "needs" in message else None
    data = {"input": "table", "train": ["x"], "derived": derived}
    if features is not None:
        data["features"] = features
    with pytest.raises(ValidationError, match=message):
        TableDataConfig.model_validate(data)


def test_a_relative_angle_needs_a_modelled_reference_that_is_not_relative_itself():
    chained = {"phi_ll": "phi_llg", "phi_llg": "met_phi"}
    with pytest.raises(ValidationError, match="the reference 'phi_llg' is relative"):
        TableDataConfig.model_validate({"input": "table", "train": ["x"], "relative_phi": chained})
    with pytest.raises(ValidationError, match="'n_jets' is not a modelled feature"):
        TableDataConfig.model_validate(
            {"input": "table", "train": ["x"], "relative_phi": {"phi_ll": "n_jets"}}
        )


def test_a_cartesian_pair_is_two_modelled_features_in_one_pair_only():
    def validate(**data: object) -> TableDataConfig:
        return TableDataConfig.model_validate({"input": "table", "train": ["x"], **data})

    with pytest.raises(ValidationError, match="'n_jets' is not a modelled feature"):
        validate(cartesian={"met_phi": "n_jets"})
    with pytest.raises(ValidationError, match="'met' is in two pairs"):
        validate(cartesian={"met_phi": "met", "phi_ll": "met"})
    with pytest.raises(ValidationError, match="'phi_llg' is in two pairs or a reference"):
        validate(relative_phi={"met_phi": "phi_llg"}, cartesian={"phi_llg": "met"})
    assert validate(cartesian={"met_phi": "met"}).cartesian == {"met_phi": "met"}


@pytest.mark.pythia
def test_the_cartesian_pair_is_encoded_as_the_components_in_the_reference_frame(zgamma_samples):
    config = _config("vae", str(zgamma_samples["train"]))
    update = {"relative_phi": {"met_phi": "phi_llg"}, "cartesian": {"met_phi": "met"}}
    config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    x = load_inputs([zgamma_samples["train"]], input="features", features=config.data.features)
    codec = build_generator(config).codec
    framed = codec._to_frame(x)
    names = config.data.features
    met, dphi = (
        x[:, names.index("met")],
        x[:, names.index("met_phi")] - x[:, names.index("phi_llg")],
    )
    torch.testing.assert_close(framed[:, names.index("met")], met * torch.cos(dphi))
    torch.testing.assert_close(framed[:, names.index("met_phi")], met * torch.sin(dphi))
    torch.testing.assert_close(framed[:, names.index("phi_llg")], x[:, names.index("phi_llg")])


@pytest.mark.pythia
def test_the_reflection_folds_the_relative_angles_and_decodes_an_event_or_its_mirror_image(
    zgamma_samples,
):
    config = _config("vae", str(zgamma_samples["train"]))
    update = {
        "relative_phi": {"phi_ll": "phi_llg", "met_phi": "phi_llg"},
        "uniform_phi": "phi_llg",
        "reflect": "phi_ll",
        "cartesian": {"met_phi": "met"},
    }
    config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    x = load_inputs([zgamma_samples["train"]], input="features", features=config.data.features)
    codec = build_generator(config).codec.fit(x.numpy())
    names = config.data.features
    ll, met_phi, reference = (names.index(n) for n in ("phi_ll", "met_phi", "phi_llg"))
    framed = codec._to_frame(x)
    dphi_ll = torch.remainder(x[:, ll] - x[:, reference] + math.pi, 2 * math.pi) - math.pi
    dphi_met = x[:, met_phi] - x[:, reference]
    sign = torch.where(dphi_ll < 0, -1.0, 1.0)
    torch.testing.assert_close(framed[:, ll], dphi_ll.abs())
    torch.testing.assert_close(
        framed[:, met_phi], x[:, names.index("met")] * torch.sin(dphi_met) * sign
    )
    u, _ = codec(x)
    back = codec.decode(u, codec.categories(x), torch.Generator().manual_seed(15))
    relative_back = torch.remainder(back[:, ll] - back[:, reference] + math.pi, 2 * math.pi)
    mirrored = (relative_back - math.pi) * dphi_ll < 0
    n = len(x)
    assert abs(float(mirrored.double().mean()) - 0.5) < 4 * math.sqrt(0.25 / n)
    expected = torch.where(mirrored, -dphi_ll, dphi_ll)
    assert torch.allclose(relative_back - math.pi, expected, atol=2e-3)
    for name in ("met", "dphi_met_llg", "pt_ll", "m_llg"):  # reflection leaves these alone
        column = names.index(name)
        assert torch.allclose(back[:, column], x[:, column], atol=2e-3, rtol=2e-3)
    with pytest.raises(ValidationError, match="reflect needs a relative_phi angle"):
        TableDataConfig.model_validate(
            {"input": "table", "train": ["x"], "relative_phi": {"phi_ll": "phi_llg"},
             "reflect": "phi_ll"}
        )  # fmt: skip


@pytest.mark.pythia
def test_the_uniform_angle_is_not_modelled_and_is_drawn_flat(zgamma_samples):
    config = _config("vae", str(zgamma_samples["train"]))
    update = {"relative_phi": {"phi_ll": "phi_llg", "met_phi": "phi_llg"}, "uniform_phi": "phi_llg"}
    config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    x = load_inputs([zgamma_samples["train"]], input="features", features=config.data.features)
    model = _randomised(build_generator(config), seed=13)
    model.codec.fit(x.numpy())
    assert model.codec.n_continuous == 15  # 16 continuous features less phi_llg
    n = 40_000
    generated = model.generate(n, torch.Generator().manual_seed(14))
    phi = generated[:, config.data.features.index("phi_llg")]
    counts = torch.histc(phi, bins=20, min=-math.pi, max=math.pi)
    assert phi.min() >= -math.pi and phi.max() < math.pi
    chi2 = float(((counts - n / 20) ** 2 / (n / 20)).sum())
    assert chi2 < 43.8  # chi2 with 19 degrees of freedom, p = 0.001
    u, _ = model.codec(x)
    with pytest.raises(ValueError, match="pass a generator"):
        model.codec.decode(u, model.codec.categories(x))
