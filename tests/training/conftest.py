"""Tiny real torch models of each family, their seeded backgrounds, and one exported bundle.

The models follow the export interface: ``forward(x)`` takes raw inputs float32 (N, *shape),
standardises them in the graph (buffers fitted on the background) and returns (N,) scores.
The backgrounds are seeded synthetic samples, labelled as such: fine for unit tests of the
export machinery, never for calibrating a shipped model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

N_BACKGROUND = 12_000
N_FEATURES = 6
FEATURES = tuple(f"f{i}" for i in range(N_FEATURES))


def feature_background(n: int, seed: int) -> np.ndarray:
    """Seeded test background (N, 6): correlated positive features (a gamma x a rotation)."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(3.0, 1.0, size=(n, N_FEATURES))
    return (base + 0.5 * base[:, [1, 2, 3, 4, 5, 0]]).astype(np.float32)


def feature_signal(n: int, seed: int) -> np.ndarray:
    """Seeded test signal (N, 6): the background with two features shifted and widened."""
    x = feature_background(n, seed)
    x[:, :2] = x[:, :2] * 1.6 + 2.0
    return x


def image_background(n: int, seed: int) -> np.ndarray:
    """Seeded test background (N, 40, 40): sparse non-negative unit-sum images, brighter at
    the centre like a centred jet image."""
    rng = np.random.default_rng(seed)
    r2 = ((np.arange(40) - 19.5)[:, None] ** 2 + (np.arange(40) - 19.5)[None, :] ** 2) / 40
    images = rng.exponential(size=(n, 40, 40)) ** 4 * np.exp(-r2)
    return (images / images.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


class Standardise(nn.Module):
    """(x - mean) / std with buffers fitted on the background: preprocessing in the graph."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        flat = x.reshape(len(x), -1)
        self.register_buffer("mean", torch.from_numpy(flat.mean(0)).reshape(x.shape[1:]))
        self.register_buffer("std", torch.from_numpy(flat.std(0) + 1e-6).reshape(x.shape[1:]))

    def forward(self, x):
        return (x - self.mean) / self.std


class DenseAE(nn.Module):
    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        k = x.shape[1]
        self.standardise = Standardise(x)
        self.net = nn.Sequential(
            nn.Linear(k, 16), nn.PReLU(), nn.Linear(16, 3), nn.PReLU(), nn.Linear(3, 16),
            nn.PReLU(), nn.Linear(16, k),
        )  # fmt: skip

    def forward(self, x):
        z = self.standardise(x)
        return ((self.net(z) - z) ** 2).mean(dim=1)


class ConvAE(nn.Module):
    """Conv encoder, max-pool, spherical 3-d latent, bilinear-upsampling decoder, sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.PReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * 20 * 20, 3),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(3, 2 * 20 * 20), nn.Unflatten(1, (2, 20, 20)),
            nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(2, 1, 3, padding=1),
            nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x):
        u = x.unsqueeze(1) * 40.0  # pixel intensities of order 1
        z = nn.functional.normalize(self.encoder(u), dim=1)
        return ((self.decoder(z) - u) ** 2).flatten(1).sum(dim=1)


class VAELike(nn.Module):
    """Encoder to (mu, log var); score = reconstruction of the mean + KL, as one VAE score."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        k = x.shape[1]
        self.standardise = Standardise(x)
        self.encoder = nn.Sequential(nn.Linear(k, 16), nn.ReLU(), nn.Linear(16, 4))
        self.decoder = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, k))

    def forward(self, x):
        z = self.standardise(x)
        mu, log_var = self.encoder(z).chunk(2, dim=1)
        kl = 0.5 * (mu**2 + log_var.exp() - 1 - log_var).sum(dim=1)
        return ((self.decoder(mu) - z) ** 2).sum(dim=1) + kl


class PCAModule(nn.Module):
    """PCA fitted on the background: score = squared residual off the leading components."""

    def __init__(self, x: np.ndarray, n_components: int = 2) -> None:
        super().__init__()
        self.standardise = Standardise(x)
        z = (x - x.mean(0)) / (x.std(0) + 1e-6)
        _, _, vt = np.linalg.svd(z.astype(np.float64), full_matrices=False)
        self.register_buffer("components", torch.from_numpy(vt[:n_components].T.astype(np.float32)))

    def forward(self, x):
        z = self.standardise(x)
        residual = z - (z @ self.components) @ self.components.T
        return (residual**2).sum(dim=1)


def make_family(family: str) -> tuple[nn.Module, np.ndarray]:
    """A seeded tiny model of ``family`` and its seeded background of N_BACKGROUND inputs;
    the dense AE and the VAE get 300 Adam steps on it (weights of trained scale for int8)."""
    torch.manual_seed(0)
    if family == "conv":
        return ConvAE().eval(), image_background(N_BACKGROUND, seed=1)
    x = feature_background(N_BACKGROUND, seed=1)
    model = {"dense": DenseAE, "vae": VAELike, "pca": PCAModule}[family](x)
    if family != "pca":
        _fit(model, x)
    return model.eval(), x


def _fit(model: nn.Module, x: np.ndarray, steps: int = 300, batch_size: int = 256) -> None:
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs = torch.from_numpy(x)
    for _ in range(steps):
        batch = inputs[torch.randint(len(x), (batch_size,), generator=generator)]
        loss = model(batch).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle exported with int8 and a signal: ``<tmp>/models/test-features-ae/1``, with
    its samples as ``<tmp>/background.npy`` and ``<tmp>/signal.npy``. Read-only: copy it."""
    from training.data.inputs import Inputs
    from training.export import export_bundle

    root = tmp_path_factory.mktemp("exported")
    model, _ = make_family("dense")  # trained on seed 1
    np.save(root / "background.npy", feature_background(30_000, seed=2))  # held out: seed 2
    np.save(root / "signal.npy", feature_signal(5_000, seed=3))
    export_bundle(
        model,
        root / "models" / "test-features-ae" / "1",
        name="test-features-ae",
        version=1,
        kind="jet-features",
        background=Inputs(root / "background.npy", "jet-features", FEATURES),
        signals={"shifted": Inputs(root / "signal.npy", "jet-features", FEATURES)},
        target_efficiencies=[1e-2, 1e-3],
        int8=True,
        description={"model": {"family": "dense-ae", "hyperparameters": {"latent_dim": 3}}},
        timing_budget_s=0.3,
    )
    return root / "models" / "test-features-ae" / "1"


@pytest.fixture(name="make_family", scope="session")
def make_family_fixture() -> Callable[[str], tuple[nn.Module, np.ndarray]]:
    """``make_family(family)`` -> (model, background) for "dense", "conv", "vae", "pca"; the
    "dense" model is the one ``exported_bundle`` holds."""
    return make_family


FEATURE_DATASETS = ("msd", "tau21", "tau32", "c2_b1", "d2_b1", "ptd", "major_axis", "minor_axis")


def write_feature_shards(directory: Path, n: int, seed: int, shift: float = 0.0) -> Path:
    """One jet shard under ``directory`` whose eight substructure features (the datasets of
    the jets-qcd-features recipes) are seeded test values (gamma-distributed, positive, plus
    ``shift``); the other datasets are zeros. For the machinery of training runs, exports and
    cards, never for physics."""
    from training.data.shards import Shard, write_shard

    x = np.random.default_rng(seed).gamma(3.0, 1.0, size=(n, 8)).astype(np.float32) + shift
    arrays = {
        "constituents": np.zeros((n, 200, 4), np.float32),
        "images": np.zeros((n, 40, 40), np.float32),
        "jet": np.zeros((n, 4), np.float32),
        "label": np.zeros(n, np.int8),
        **{f"features/{name}": x[:, i] for i, name in enumerate(FEATURE_DATASETS)},
    }
    write_shard(directory / "test_00000.h5", Shard(arrays, {"process": "test", "seed": seed}))
    return directory


@pytest.fixture(name="feature_shards", scope="session")
def feature_shards_fixture() -> Callable[..., Path]:
    """``feature_shards(directory, n, seed, shift=0.0)``: one seeded test shard of the eight
    jet features; returns ``directory``."""
    return write_feature_shards


@pytest.fixture(scope="session")
def zgamma_samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny real Z-gamma samples (Pythia + the detector): 150 background events for training,
    50 held out, 30 signal events; shard directories keyed train / test / signal."""
    from training.config import ZgammaSampleConfig
    from training.data.generation import generate_shards

    root = tmp_path_factory.mktemp("zgamma")
    samples = {
        "train": ("zgamma", 150, 31),
        "test": ("zgamma", 50, 32),
        "signal": ("h_zgamma", 30, 33),
    }
    for name, (process, n, seed) in samples.items():
        generate_shards(
            "zgamma", ZgammaSampleConfig(process=process), n=n, out_dir=root / name, seed=seed,
            shard_size=n,
        )  # fmt: skip
    return {name: root / name for name in samples}
