"""Langevin chains, Metropolis-Hastings, the replay buffer and the three negative samplers,
on energies whose answers are known, and the 2-D toy where an AE fails and an NAE does not."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training.config import LangevinConfig, SamplerConfig
from training.errors import NaeError
from training.losses import nae_loss
from training.models.autoencoder import Autoencoder
from training.models.dense import DenseDecoder, DenseEncoder
from training.sampling import (
    NegativeSampler,
    ReplayBuffer,
    frozen,
    langevin_chain,
    project_to_simplex,
    slot_floors,
)

torch.set_num_threads(1)  # as training runs (TrainConfig.threads)


def _quadratic(x: torch.Tensor) -> torch.Tensor:
    """E = |x|^2 / 2: exp(-E) is a standard normal."""
    return 0.5 * x.square().flatten(1).sum(dim=1)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mala_samples_a_standard_normal():
    config = LangevinConfig(steps=200, step_size=0.5, noise_std=1.0, metropolis=True)
    x0 = torch.full((2000, 2), 3.0)
    result = langevin_chain(_quadratic, x0, config, generator=_generator())
    assert result.samples.mean().abs() < 0.1
    assert result.samples.var().item() == pytest.approx(1.0, abs=0.1)
    assert 0.3 < result.acceptance < 1.0
    assert torch.allclose(result.energies, _quadratic(result.samples))


def test_noiseless_chain_descends_to_the_minimum():
    config = LangevinConfig(steps=50, step_size=0.2, noise_std=0.0)
    result = langevin_chain(_quadratic, torch.full((4, 3), 2.0), config, generator=_generator())
    assert result.samples.abs().max() < 1e-3
    assert math.isnan(result.acceptance)


def test_metropolis_rejects_the_steps_of_a_noisy_descent():
    """Noise far below sqrt(2 step) (the published NAE settings' regime) is not a sampler of
    exp(-E): a correct MH test rejects almost every step, and the acceptance shows it."""
    config = LangevinConfig(steps=20, step_size=0.5, noise_std=1e-3, metropolis=True)
    result = langevin_chain(_quadratic, torch.full((100, 2), 2.0), config, generator=_generator())
    assert result.acceptance < 0.05


def test_bounds_sphere_and_gradient_clipping():
    config = LangevinConfig(steps=5, step_size=10.0, noise_std=0.5)
    low, high = torch.tensor([0.0, -1.0]), torch.tensor([1.0, 1.0])
    clamped = langevin_chain(
        _quadratic,
        torch.randn(50, 2, generator=_generator()),
        config,
        generator=_generator(1),
        low=low,
        high=high,
    )
    assert (clamped.samples >= low).all() and (clamped.samples <= high).all()
    on_sphere = langevin_chain(
        _quadratic,
        torch.randn(50, 3, generator=_generator()),
        config,
        generator=_generator(1),
        sphere=True,
    )
    assert torch.allclose(on_sphere.samples.norm(dim=1), torch.ones(50))
    clipped = LangevinConfig(steps=1, step_size=1.0, noise_std=0.0, grad_clip=0.01)
    start = torch.full((3, 2), 5.0)
    moved = langevin_chain(_quadratic, start, clipped, generator=_generator()).samples - start
    assert torch.allclose(moved.norm(dim=1), torch.full((3,), 0.01))


def test_the_simplex_projection_is_the_closest_point_with_the_sum():
    """Checked against the definition: non-negative, summing to the total, unchanged on the
    simplex, and no farther from x than any of 2,000 other points of the simplex."""
    assert torch.allclose(
        project_to_simplex(torch.tensor([[0.5, 0.5, 0.5], [-1.0, 0.2, 0.3]]), 1.0),
        torch.tensor([[1 / 3, 1 / 3, 1 / 3], [0.0, 0.45, 0.55]]),
    )
    x = torch.randn(20, 4, 4, generator=_generator(), dtype=torch.float64)
    projected = project_to_simplex(x, 2.0)
    assert projected.shape == x.shape and (projected >= 0).all()
    assert torch.allclose(projected.sum(dim=(1, 2)), torch.full((20,), 2.0, dtype=torch.float64))
    assert torch.allclose(project_to_simplex(projected, 2.0), projected)
    weights = torch.rand(2000, 16, generator=_generator(1), dtype=torch.float64).pow(6)
    others = 2.0 * weights / weights.sum(dim=1, keepdim=True)  # many near the faces
    nearest = (x.flatten(1)[:, None] - others[None]).norm(dim=2).min(dim=1).values
    assert ((x - projected).flatten(1).norm(dim=1) <= nearest + 1e-12).all()


def test_chains_on_the_simplex_keep_a_unit_sum_and_refuse_other_domains():
    config = LangevinConfig(steps=5, step_size=10.0, noise_std=0.5)
    x0 = torch.rand(30, 9, generator=_generator())
    chain = langevin_chain(
        _quadratic, x0, config, generator=_generator(1), high=torch.ones(9), total=1.0
    )
    assert (chain.samples >= 0).all()
    assert torch.allclose(chain.samples.sum(dim=1), torch.ones(30))
    with pytest.raises(NaeError, match="input_total"):
        NegativeSampler(SamplerConfig(mode="cd", input_total=1.0), _toy_autoencoder())
    images = _toy_autoencoder(domain=(torch.zeros(2), torch.ones(2)))  # as pixels in [0, 1]
    NegativeSampler(SamplerConfig(mode="cd", input_total=1.0), images)
    with pytest.raises(NaeError, match="upper bounds"):
        NegativeSampler(SamplerConfig(mode="cd", input_total=2.0), images)


PT_ONLY_LOW = torch.tensor([0.0, -math.inf, -math.inf])  # events: pT >= 0, angles free


def test_event_chains_keep_slots_empty_or_above_their_rows_floor():
    u = torch.zeros(4, 3, 3)  # scaled events: 3 rows of (pT, eta, phi)
    u[:, 0, 0] = torch.tensor([0.5, 0.2, 0.9, 0.3])  # always filled
    u[:2, 1] = torch.tensor([[0.8, 0.1, -0.2], [1.1, -0.3, 0.4]])  # filled twice
    floor = slot_floors(u)
    assert floor.tolist() == pytest.approx([0.2, 0.8, math.inf])
    config = LangevinConfig(steps=5, step_size=0.01, noise_std=0.5)
    chain = langevin_chain(
        _quadratic, u, config, generator=_generator(), low=PT_ONLY_LOW, slot_floor=floor
    )
    pt = chain.samples[..., 0]
    assert ((pt == 0) | (pt >= floor)).all() and (pt > 0).any()
    emptied = chain.samples[..., :1] == 0
    assert (chain.samples * emptied == 0).all()  # an empty slot has no angles
    assert (chain.samples[:, 2] == 0).all()  # a row the data never fills stays empty
    free = langevin_chain(_quadratic, u, config, generator=_generator(), low=PT_ONLY_LOW)
    assert ((free.samples[..., 0] > 0) & (free.samples[..., 0] < floor)).any()


def test_chains_are_reproducible_from_the_generator_and_chunked():
    config = LangevinConfig(steps=5, step_size=0.1, noise_std=0.3, metropolis=True)
    x0 = torch.randn(10, 2, generator=_generator())
    a = langevin_chain(_quadratic, x0, config, generator=_generator(7), chunk_size=4)
    b = langevin_chain(_quadratic, x0, config, generator=_generator(7), chunk_size=4)
    assert torch.equal(a.samples, b.samples) and a.acceptance == b.acceptance
    assert a.samples.shape == x0.shape


def test_metropolis_needs_noise():
    with pytest.raises(NaeError, match="noise_std"):
        langevin_chain(
            _quadratic,
            torch.zeros(2, 2),
            LangevinConfig(noise_std=0.0, metropolis=True),
            generator=_generator(),
        )


def test_replay_buffer_keeps_the_newest_and_replays_at_its_ratio():
    buffer = ReplayBuffer(4, (1,))
    buffer.push(torch.arange(6.0).view(6, 1))
    assert len(buffer) == 4
    assert sorted(buffer.storage.view(-1).tolist()) == [2.0, 3.0, 4.0, 5.0]
    starts = buffer.draw(
        2000, ratio=0.9, fresh=lambda k: torch.full((k, 1), -1.0), generator=_generator()
    )
    replayed = (starts >= 2).float().mean().item()
    assert replayed == pytest.approx(0.9, abs=0.03)
    assert set(starts.view(-1).tolist()) <= {-1.0, 2.0, 3.0, 4.0, 5.0}
    copy = ReplayBuffer(4, (1,))
    copy.load_state_dict(buffer.state_dict())
    assert torch.equal(copy.storage, buffer.storage) and copy.position == buffer.position


def _toy_autoencoder(
    latent_dim: int = 1,
    *,
    spherical: bool = False,
    domain: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Autoencoder:
    torch.manual_seed(0)
    domain = domain or (torch.full((2,), -math.inf), torch.full((2,), math.inf))
    return Autoencoder(
        nn.Identity(),
        DenseEncoder((2,), (32, 32), latent_dim, activation="leaky_relu", spectral_norm=False),
        DenseDecoder(
            (2,), (32, 32), latent_dim, activation="leaky_relu", spectral_norm=False, sigmoid=False
        ),
        input_shape=(2,),
        latent_dim=latent_dim,
        spherical=spherical,
        masked=False,
        domain=domain,
    )


@pytest.mark.parametrize("mode", ["on_manifold", "pcd", "cd"])
def test_negative_sampler_modes(mode):
    model = _toy_autoencoder(2, spherical=mode == "on_manifold")
    chain = LangevinConfig(steps=3, step_size=0.05, noise_std=0.1, metropolis=True)
    config = SamplerConfig(mode=mode, n_negatives=16, latent=chain, input=chain, box=(-1.0, 1.0))
    sampler = NegativeSampler(config, model)
    positives = torch.rand(8, 2)
    negatives = sampler.sample(model, positives, generator=_generator())
    assert negatives.samples.shape == (16, 2)
    assert negatives.samples.abs().max() <= 1.0
    assert 0.0 <= negatives.input_acceptance <= 1.0
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again
    expected = {"on_manifold": 16, "pcd": 16, "cd": 0}[mode]
    assert len(sampler.buffer) == expected
    if mode == "on_manifold":
        assert torch.allclose(sampler.buffer.storage[:16].norm(dim=1), torch.ones(16))
        assert len(negatives.latent_energies) == 16
    sampler.sample(model, positives, generator=_generator(), n=4, push=False)
    assert len(sampler.buffer) == expected


def test_frozen_restores_flags_and_mode():
    model = _toy_autoencoder()
    model.train()
    next(model.parameters()).requires_grad_(False)
    with frozen(model):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
    assert model.training
    flags = [p.requires_grad for p in model.parameters()]
    assert flags[0] is False and all(flags[1:])


def test_a_plain_ae_reconstructs_the_gap_between_two_clusters_and_the_nae_does_not():
    """Data on two segments of the x axis, a 1-d latent: the AE's decoder is a continuous
    curve through both, so it reconstructs the empty gap at the origin as well as data. The
    NAE's on-manifold negatives (latent chains, decoded) land in that gap, and training raises
    its energy above that of nearly all data."""
    g = _generator()
    x = (0.25 + 0.75 * torch.rand(2000, generator=g)) * torch.where(
        torch.rand(2000, generator=g) < 0.5, -1.0, 1.0
    )
    data = torch.stack([x, 0.02 * torch.randn(2000, generator=g)], dim=1)  # (2000, 2)
    gap = torch.zeros(1, 2)
    model = _toy_autoencoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(400):
        loss = model.energy(data[torch.randint(2000, (128,), generator=g)]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def fraction_of_data_above_gap() -> float:
        with torch.no_grad():
            return (model.energy(data) > model.energy(gap)).float().mean().item()

    assert fraction_of_data_above_gap() > 0.2  # the AE scores the gap like data
    config = SamplerConfig(
        mode="on_manifold",
        n_negatives=128,
        latent=LangevinConfig(steps=10, step_size=0.1, noise_std=0.1),
        input=LangevinConfig(steps=5, step_size=0.01, noise_std=0.02),
    )
    sampler = NegativeSampler(config, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(250):
        positives = data[torch.randint(2000, (128,), generator=g)]
        negatives = sampler.sample(model, positives, generator=g)
        energies = model.energy(torch.cat([positives, negatives.samples]))
        loss = nae_loss(energies[:128], energies[128:], gamma=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert fraction_of_data_above_gap() < 0.02  # the NAE flags it
