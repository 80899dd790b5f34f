"""Every model family: raw input in, (N,) score out, the published CNN's size, the latent on
the sphere, PCA's subspace, the VAE's three scores, and the conv NAE through ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from training.models.autoencoder import Autoencoder
from training.models.families import build_model, fit_preprocessing
from training.models.pca import PCA
from training.models.vae import VariationalAutoencoder

torch.set_num_threads(1)  # as training runs (TrainConfig.threads)

PREPROCESSING = {"images": "none", "features": "quantile", "events": "event_scaling"}


def _config(kind: str, family: str, architecture: str = "dense", **model) -> RunConfig:
    return RunConfig(
        name="test",
        data=DataConfig(input=kind, train=("unused",)),
        model=ModelConfig(
            family=family,
            architecture=architecture,
            **{"preprocessing": PREPROCESSING[kind], **model},
        ),
        train=TrainConfig(nae_iterations=1),
    )


def _raw(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if kind == "images":
        x = rng.exponential(size=(n, 40, 40)) * (rng.random((n, 40, 40)) < 0.05) + 1e-6
        return torch.from_numpy((x / x.sum(axis=(1, 2), keepdims=True)).astype(np.float32))
    if kind == "features":
        return torch.from_numpy(rng.gamma(2.0, size=(n, 8)).astype(np.float32))
    x = np.zeros((n, 19, 3), np.float32)
    x[:, :6, 0] = rng.exponential(30.0, size=(n, 6))
    x[:, :6, 1:] = rng.normal(size=(n, 6, 2))
    return torch.from_numpy(x)


CASES = [
    ("images", "nae", "conv"),
    ("images", "ae", "conv20"),
    ("images", "ae", "dense"),
    ("features", "nae", "dense"),
    ("features", "vae", "dense"),
    ("features", "pca", "dense"),
    ("events", "nae", "dense"),
    ("events", "vae", "dense"),
    ("events", "pca", "dense"),
]


@pytest.mark.parametrize(("kind", "family", "architecture"), CASES)
def test_forward_takes_raw_inputs_and_returns_one_score_per_row(kind, family, architecture):
    config = _config(kind, family, architecture, latent_dim=3)
    model = fit_preprocessing(build_model(config), _raw(kind, 64).numpy())
    if isinstance(model, PCA):
        model.fit(model.preprocess(_raw(kind, 64)))
    x = _raw(kind, 5, seed=1)
    scores = model.eval()(x)
    assert scores.shape == (5,) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all() and (scores >= 0).all()
    named = model.scores(x)
    assert torch.equal(named[model.default_score], scores)
    expected = {"reconstruction", "kl", "mu2"} if family == "vae" else {"reconstruction"}
    assert set(named) == expected


def test_the_published_cnn_has_about_85k_parameters_and_a_spherical_latent():
    model = build_model(
        _config("images", "nae", "conv", latent_dim=3, spherical=True, spectral_norm=True)
    )
    assert isinstance(model, Autoencoder)
    n_parameters = sum(p.numel() for p in model.parameters())
    assert 84_000 <= n_parameters <= 86_000
    z = model.encode(_raw("images", 4))
    assert torch.allclose(z.norm(dim=1), torch.ones(4))
    images = model.decode(z)
    assert images.shape == (4, 40, 40) and ((images > 0) & (images < 1)).all()


def test_pca_reconstructs_its_subspace_exactly_and_scores_what_lies_off_it():
    model = build_model(_config("features", "pca", latent_dim=2, preprocessing="none"))
    basis = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    inside = torch.randn(500, 2, generator=torch.Generator().manual_seed(1)) @ basis + 3.0
    model.fit(inside)
    assert model(inside).max() < 1e-8
    off = inside[:5] + torch.linalg.svd(basis, full_matrices=True).Vh[-1]  # orthogonal to it
    assert model(off).min() > 0.1


def test_vae_scores_are_deterministic_and_its_training_terms_sample():
    model = build_model(_config("features", "vae", latent_dim=3))
    assert isinstance(model, VariationalAutoencoder)
    x = _raw("features", 16)
    assert torch.equal(model(x), model(x))
    u = model.preprocess(x)
    first = model.loss_terms(u, torch.Generator().manual_seed(0))[0]
    second = model.loss_terms(u, torch.Generator().manual_seed(1))[0]
    assert not torch.equal(first, second)
    mu, _ = model.encode_distribution(u)
    assert torch.allclose(model.scores(x)["mu2"], mu.square().sum(dim=1))


def test_event_energy_ignores_angles_of_empty_slots():
    model = build_model(_config("events", "ae", latent_dim=3))
    x = _raw("events", 4)
    moved = x.clone()
    moved[:, 10:, 1:] = 2.0  # eta, phi of empty slots (pT 0): not an object
    with torch.no_grad():
        assert torch.allclose(model(x), model(moved))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preprocessing": "quantile"}, "does not apply to images"),
        ({"family": "pca", "architecture": "conv"}, "takes model.architecture='dense'"),
        ({"family": "vae", "spherical": True}, "spherical applies to ae and nae"),
    ],
)
def test_run_config_refuses_combinations_that_cannot_work(change, message):
    base = {"family": "ae", "architecture": "conv", "preprocessing": "none"}
    with pytest.raises(ValueError, match=message):
        RunConfig(
            name="x",
            data=DataConfig(input="images", train=("a",)),
            model=ModelConfig(**{**base, **change}),
        )


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_the_conv_nae_exports_to_onnx_and_scores_the_same(tmp_path):
    import onnxruntime

    model = build_model(
        _config(
            "images",
            "nae",
            "conv",
            latent_dim=3,
            spherical=True,
            spectral_norm=True,
            pt_power=0.5,
            image_smoothing=1.0,
        )
    ).eval()
    x = _raw("images", 8)
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model, (x[:2],), path, dynamo=True, dynamic_shapes=({0: "batch"},), verbose=False
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    scores = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert scores == pytest.approx(model(x).numpy(), rel=1e-4)


def _cored_images(n: int) -> torch.Tensor:
    """Sparse unit-sum images with a hard 2 x 2 core holding 30-60% of the sum, as QCD jets."""
    core = torch.from_numpy(np.random.default_rng(1).uniform(0.3, 0.6, n).astype(np.float32))
    x = _raw("images", n) * (1 - core[:, None, None])
    x[:, 19:21, 19:21] += core[:, None, None] / 4
    return x


@pytest.mark.parametrize("architecture", ["conv", "conv20", "dense"])
def test_an_image_decoder_starts_at_the_mean_pixel(architecture):
    model = build_model(_config("images", "ae", architecture, latent_dim=3, spherical=True))
    u = model.preprocess(_cored_images(16))
    with torch.no_grad():
        start = model.decode(model.encode(u))
    assert start.mean().item() == pytest.approx(1 / u[0].numel(), rel=0.5)


@pytest.mark.parametrize("architecture", ["conv20", "dense"])
def test_an_image_ae_learns_more_than_the_mean_image(architecture):
    """Two ways the image AE learned nothing, both measured on QCD images: a sigmoid started at
    0.5 collapsed to an all-zero output, and an encoder fed unit-sum pixels (~1e-3) gave nearly
    the same latent point for every image, so the decoder learned only the mean image. With the
    decoder started at 1 / n_pixels and the encoder's input in units of the mean pixel it must
    beat the mean image (smoothed images, as the image recipes use)."""
    torch.manual_seed(0)
    config = _config(
        "images", "ae", architecture, latent_dim=3, spherical=True, image_smoothing=1.0
    )
    model = build_model(config)
    x = _cored_images(256)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(200):
        loss = model(x).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    u = model.preprocess(x)
    mean_image_loss = (u - u.mean(dim=0)).square().mean().item()
    assert model(x).mean().item() < 0.85 * mean_image_loss
