"""Energies and NAE losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from training.losses import (
    kl_divergence,
    logcosh_nae_loss,
    masked_reconstruction_energy,
    nae_loss,
    reconstruction_energy,
    relative_gamma,
    weight_norm,
)


def test_reconstruction_energy_is_the_mean_square_per_sample():
    x = torch.zeros(2, 2, 2)
    x_hat = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 0.0]]])
    assert reconstruction_energy(x, x_hat).tolist() == [1.0, 1.0]


def test_masked_energy_ignores_masked_entries_but_keeps_the_scale():
    x, x_hat = torch.zeros(1, 4), torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert masked_reconstruction_energy(x, x_hat, mask).item() == pytest.approx(0.5)


def test_nae_loss_by_hand():
    e_pos, e_neg = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0])
    # 2 - 3 + 0.5 * (4 + 16) / 2
    assert nae_loss(e_pos, e_neg, gamma=0.5).item() == pytest.approx(4.0)


def test_the_relative_gamma_puts_the_negatives_optimum_at_ratio_times_e_pos():
    e_pos = torch.tensor([1e-6, 3e-6], requires_grad=True)
    gamma = relative_gamma(e_pos, 4.0)
    assert gamma.item() == pytest.approx(1 / (2 * 4 * 2e-6)) and not gamma.requires_grad
    e_neg = torch.tensor([8e-6], requires_grad=True)  # 4 x mean(E+): d loss / d E- = 0
    nae_loss(e_pos, e_neg, gamma=gamma).backward()
    assert e_neg.grad.item() == pytest.approx(0.0, abs=1e-6)
    assert e_pos.grad.tolist() == pytest.approx([0.5, 0.5])  # the scale is not differentiated


@pytest.mark.parametrize("difference", [0.3, -2.0, 200.0])
def test_logcosh_loss_matches_log_cosh_and_stays_finite(difference):
    e_pos, e_neg = torch.tensor([1.0 + difference]), torch.tensor([1.0])
    loss = logcosh_nae_loss(e_pos, e_neg, alpha=0.1).item()
    log_cosh = abs(difference) + math.log1p(math.exp(-2 * abs(difference))) - math.log(2)
    assert loss == pytest.approx(log_cosh + 0.1 * (1.0 + difference), rel=1e-5)
    if abs(difference) < 50:
        assert loss == pytest.approx(math.log(math.cosh(difference)) + 0.1 * (1 + difference))


def test_kl_divergence_is_zero_at_the_prior_and_positive_elsewhere():
    assert kl_divergence(torch.zeros(3, 2), torch.zeros(3, 2)).tolist() == [0.0, 0.0, 0.0]
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension
    assert kl_divergence(torch.ones(1, 2), torch.zeros(1, 2)).item() == pytest.approx(1.0)


def test_weight_norm_counts_trainable_parameters_only():
    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.bias.fill_(1.0)
    assert weight_norm(layer).item() == pytest.approx(9.0)
    layer.bias.requires_grad_(False)
    assert weight_norm(layer).item() == pytest.approx(8.0)
