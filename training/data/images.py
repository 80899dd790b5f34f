"""Jet images from constituents: centre, rotate, flip, pixelate (numpy only).

The preprocessing of the top-tagging image literature (de Oliveira et al. arXiv:1511.05190,
Kasieczka et al. arXiv:1701.08784) as used by the NAE paper (arXiv:2206.14225):

1. ``center``: shift to the pT-weighted centroid in (eta, phi);
2. ``rotate``: turn the principal axis of the pT-weighted (eta, phi) covariance to vertical;
3. ``flip``: mirror so that the harder half lies at positive x and positive y (the harder
   quadrant is the upper right, in the image's ``[y, x]`` indexing with y increasing);
4. ``pixelate``: histogram x, y in +-half_width with intensity pT^n, normalised to unit sum.

Coordinates after step 1: x = Delta eta, y = Delta phi. Images are indexed ``[i_y, i_x]``.
Constituents outside the image are dropped before normalising.
"""

from __future__ import annotations

import numpy as np

from training.config import ImageConfig
from training.data.particles import pseudorapidity, wrap_phi

__all__ = ["center", "flip", "images_from_constituents", "pixelate", "rotate"]


def images_from_constituents(constituents: np.ndarray, config: ImageConfig) -> np.ndarray:
    """constituents: (N, C, 4) E, px, py, pz [GeV], zero-padded -> (N, n, n) float32, unit sum
    (all-zero for a jet with nothing inside the image)."""
    four = constituents.astype(np.float64)
    pt = np.hypot(four[..., 1], four[..., 2])  # (N, C) [GeV], 0 for padding
    eta = pseudorapidity(four[..., 1], four[..., 2], four[..., 3])
    phi = np.arctan2(four[..., 2], four[..., 1])
    x, y = center(pt, eta, phi)
    x, y = rotate(pt, x, y)
    x, y = flip(pt, x, y)
    return pixelate(pt, x, y, config)


def center(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delta eta, Delta phi to the pT-weighted centroid; all (N, C). Angles are taken relative
    to the hardest constituent (column 0) first, so jets across phi = +-pi stay whole."""
    d_phi = wrap_phi(phi - phi[:, :1])
    weight = pt / np.maximum(pt.sum(axis=1, keepdims=True), 1e-12)
    x = eta - (weight * eta).sum(axis=1, keepdims=True)
    y = d_phi - (weight * d_phi).sum(axis=1, keepdims=True)
    return x, y


def rotate(pt: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate centred (N, C) coordinates so the principal axis of the pT-weighted covariance
    (the direction of largest spread) points along y."""
    c_xx = (pt * x * x).sum(axis=1, keepdims=True)
    c_yy = (pt * y * y).sum(axis=1, keepdims=True)
    c_xy = (pt * x * y).sum(axis=1, keepdims=True)
    theta = 0.5 * np.arctan2(2 * c_xy, c_xx - c_yy)  # principal-axis angle to the x axis
    alpha = 0.5 * np.pi - theta
    cos, sin = np.cos(alpha), np.sin(alpha)
    return x * cos - y * sin, x * sin + y * cos


def flip(pt: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror x (and y) so that more pT lies at x > 0 (y > 0) than at x < 0 (y < 0)."""
    sign_x = np.where((pt * (x > 0)).sum(axis=1) >= (pt * (x < 0)).sum(axis=1), 1.0, -1.0)
    sign_y = np.where((pt * (y > 0)).sum(axis=1) >= (pt * (y < 0)).sum(axis=1), 1.0, -1.0)
    return x * sign_x[:, None], y * sign_y[:, None]


def pixelate(pt: np.ndarray, x: np.ndarray, y: np.ndarray, config: ImageConfig) -> np.ndarray:
    """Histogram (N, C) constituents into (N, n, n) float32 ``[i_y, i_x]`` images with pixel
    intensity sum pT^n (n = config.pt_power), normalised to unit sum. Padding (pT = 0) is
    ignored even for n = 0."""
    n, width = config.n_pixels, config.half_width
    i_x = np.floor((x + width) / (2 * width) * n).astype(np.int64)
    i_y = np.floor((y + width) / (2 * width) * n).astype(np.int64)
    inside = (pt > 0) & (i_x >= 0) & (i_x < n) & (i_y >= 0) & (i_y < n)
    jet = np.broadcast_to(np.arange(len(pt))[:, None], pt.shape)
    pixel = (jet * n + i_y) * n + i_x
    images = np.bincount(
        pixel[inside], weights=pt[inside] ** config.pt_power, minlength=len(pt) * n * n
    ).reshape(len(pt), n, n)
    total = images.sum(axis=(1, 2), keepdims=True)
    return (images / np.where(total > 0, total, 1.0)).astype(np.float32)
