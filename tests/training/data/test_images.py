"""Jet images: centre, rotate, flip, pixelate; unit sum and the pT^n option."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import ImageConfig
from training.data.images import center, flip, images_from_constituents, pixelate, rotate


def _constituents(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(N, C) massless pT, eta, phi -> (N, C, 4) float32 E, px, py, pz."""
    return np.stack(
        [pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], axis=-1
    ).astype(np.float32)


def _random_jets(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pt = rng.exponential(20.0, (n, 30))
    eta = rng.normal(0.5, 0.2, (n, 30)) + rng.normal(0, 0.1, (n, 1)) * np.arange(30) / 30
    phi = rng.normal(1.0, 0.15, (n, 30))
    return pt, eta, phi


def _image_moments(images: np.ndarray, config: ImageConfig):
    centres = -config.half_width + (np.arange(config.n_pixels) + 0.5) * (
        2 * config.half_width / config.n_pixels
    )
    y, x = np.meshgrid(centres, centres, indexing="ij")
    mean_x = (images * x).sum(axis=(1, 2))
    mean_y = (images * y).sum(axis=(1, 2))
    var_x = (images * x**2).sum(axis=(1, 2)) - mean_x**2
    var_y = (images * y**2).sum(axis=(1, 2)) - mean_y**2
    return mean_x, mean_y, var_x, var_y


def test_center_rotate_flip_put_the_jet_in_the_standard_frame():
    pt, eta, phi = _random_jets(50, seed=1)
    x, y = center(pt, eta, phi)
    np.testing.assert_allclose((pt * x).sum(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose((pt * y).sum(axis=1), 0, atol=1e-9)
    x, y = rotate(pt, x, y)
    np.testing.assert_allclose((pt * x * y).sum(axis=1), 0, atol=1e-9)
    assert ((pt * y**2).sum(axis=1) >= (pt * x**2).sum(axis=1)).all()  # major axis vertical
    x, y = flip(pt, x, y)
    assert ((pt * (x > 0)).sum(axis=1) >= (pt * (x < 0)).sum(axis=1)).all()
    assert ((pt * (y > 0)).sum(axis=1) >= (pt * (y < 0)).sum(axis=1)).all()


def test_a_jet_across_phi_pi_gives_the_same_image():
    pt, eta, phi = _random_jets(5, seed=2)
    config = ImageConfig()
    here = images_from_constituents(_constituents(pt, eta, phi - 1.0), config)
    across = images_from_constituents(_constituents(pt, eta, phi - 1.0 + np.pi), config)
    np.testing.assert_allclose(here, across, atol=1e-5)


def test_pixelate_sums_pt_power_and_drops_what_is_outside():
    config = ImageConfig(pt_power=0.5)
    pt = np.array([[4.0, 9.0, 16.0, 0.0]])
    x = np.array([[0.01, 0.01, 5.0, 0.0]])  # the third lies outside, the fourth is padding
    y = np.array([[0.01, -0.5, 0.0, 0.0]])
    image = pixelate(pt, x, y, config)
    assert image.shape == (1, 40, 40) and image.dtype == np.float32
    assert image[0, 20, 20] == pytest.approx(2 / 5)
    assert image[0, 7, 20] == pytest.approx(3 / 5)
    assert image.sum() == pytest.approx(1.0)


@pytest.mark.pythia
def test_shard_images_are_unit_sum_and_centred(qcd_jets, top_jets):
    config = ImageConfig()
    for shard in (qcd_jets, top_jets):
        images = shard.arrays["images"]
        assert (images >= 0).all()
        np.testing.assert_allclose(images.sum(axis=(1, 2)), 1.0, rtol=1e-5)
        mean_x, mean_y, var_x, var_y = _image_moments(images, config)
        pixel = 2 * config.half_width / config.n_pixels
        # pT^1 images: the centroid is the origin up to constituents beyond +-0.8 and binning.
        assert np.median(np.abs(mean_x)) < pixel and np.median(np.abs(mean_y)) < pixel
        assert np.mean(var_y >= var_x) > 0.8  # the principal axis is vertical


@pytest.mark.pythia
def test_pt_power_changes_images(top_jets):
    constituents = top_jets.arrays["constituents"]
    linear = images_from_constituents(constituents, ImageConfig(pt_power=1.0))
    soft = images_from_constituents(constituents, ImageConfig(pt_power=0.5))
    np.testing.assert_array_equal(linear, top_jets.arrays["images"])
    np.testing.assert_allclose(soft.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    # n < 1 lifts soft pixels relative to the hard core.
    assert (soft.max(axis=(1, 2)) < linear.max(axis=(1, 2))).mean() > 0.9
    assert ((soft > 0) == (linear > 0)).all()
