"""In-graph preprocessing: ``nn.Module``s fitted from arrays, holding what they learned as
buffers, so a model exported to ONNX carries its own preprocessing (docs/contracts.md, contract
2: the bundle takes raw physics quantities).

- ``Standardise``: (x - mean) / std per feature.
- ``QuantileToNormal``: each feature through its empirical CDF (piecewise-linear between stored
  quantiles) and the inverse normal CDF, as the CMS semi-visible-jet NAE study prepares its
  inputs (sklearn's ``QuantileTransformer(output_distribution="normal")``). Neither
  ``searchsorted`` nor ``erfinv``/``ndtri`` exports with torch 2.13's ONNX exporter, so the CDF
  is a sum of clamped ramps and the inverse normal is Acklam's rational approximation
  (relative error 1.2e-9), both plain elementwise ops.
- ``EventScaling``: the 19 x 3 trigger format; log1p(pT / GeV), eta and phi scaled per row, empty
  (zero-padded) slots kept at exactly zero so ``event_mask`` finds them again.
- ``ImageReweighting``: pixel -> pixel^n renormalised to unit sum (the pT^n images of
  arXiv:2206.14225), optionally smoothed by a Gaussian filter and sum-pooled 2 x 2 to 20 x 20.

Every module maps ``(N, *input_shape)`` float32 to the tensor the network sees; ``fit`` takes a
numpy array of raw inputs and returns the module.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from training.config import EventFrame
from training.data.events import ELECTRON_ROW, JET_ROW, N_ROWS

__all__ = [
    "EventScaling",
    "ImageReweighting",
    "QuantileToNormal",
    "Standardise",
    "event_mask",
    "inverse_normal_cdf",
]

# Probabilities are kept inside [P_MIN, 1 - P_MIN] before the inverse CDF, as sklearn's
# QuantileTransformer does (BOUNDS_THRESHOLD): outputs stay within +-5.2.
P_MIN = 1e-7

LEPTON_ROWS = slice(ELECTRON_ROW, JET_ROW)  # electrons then muons
JET_ROWS = slice(JET_ROW, N_ROWS)


class Standardise(nn.Module):
    """(x - mean) / std per feature; x: (N, k)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    def fit(self, x: np.ndarray) -> Standardise:
        """Mean and standard deviation of ``x`` (N, k); a constant feature keeps std 1."""
        values = np.asarray(x, dtype=np.float64)
        std = values.std(axis=0)
        self.mean.copy_(torch.as_tensor(values.mean(axis=0)))
        self.std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0)))
        return self

    def forward(self, x: Tensor) -> Tensor:  # (N, k) -> (N, k)
        return (x - self.mean) / self.std

    def inverse(self, u: Tensor) -> Tensor:  # (N, k) -> (N, k): a generator's output back
        return u * self.std + self.mean


class QuantileToNormal(nn.Module):
    """Each feature to a standard normal through its empirical CDF; x: (N, k).

    The CDF is piecewise linear between ``n_quantiles`` stored quantiles at evenly spaced
    probabilities. A value that many events share (a tie, such as tau32 = 0 for jets with too
    few constituents) maps to the middle of its probability step, as sklearn does. Values
    outside the fitted range map to +-5.2 (probabilities clipped to [1e-7, 1 - 1e-7]).
    Memory: an (N, k, n_quantiles) intermediate.
    """

    def __init__(self, n_features: int, n_quantiles: int) -> None:
        super().__init__()
        levels = torch.linspace(0.0, 1.0, n_quantiles)
        self.register_buffer("quantiles", levels.repeat(n_features, 1))  # (k, K)
        self.register_buffer("probabilities", levels)  # (K,)

    def fit(self, x: np.ndarray) -> QuantileToNormal:
        values = np.asarray(x, dtype=np.float64)
        levels = self.probabilities.double().numpy()
        quantiles = np.quantile(values, levels, axis=0).T  # (k, K), non-decreasing
        self.quantiles.copy_(torch.as_tensor(quantiles))
        return self

    def forward(self, x: Tensor) -> Tensor:  # (N, k) -> (N, k)
        low = self.quantiles[:, :-1]  # (k, K-1) segment edges
        width = self.quantiles[:, 1:] - low
        offset = x.unsqueeze(-1) - low  # (N, k, K-1)
        ramp = torch.clamp(offset / torch.clamp(width, min=1e-30), 0.0, 1.0)
        # A zero-width segment is a tie: half its step at the tied value, all of it above.
        tie = 0.5 * ((offset > 0).to(x.dtype) + (offset >= 0).to(x.dtype))
        filled = torch.where(width > 0, ramp, tie)
        # The levels are evenly spaced, so p is a count of filled segments times one step.
        # Whole segments (0 or 1) and the fractions are summed apart: sums of integers and
        # halves are exact in float32, so torch and ONNX Runtime, which add in different
        # orders, agree to the last digits. Both tails come from their own sums: 1 - p in
        # float32 would lose the upper tail's digits.
        step = self.probabilities[1] - self.probabilities[0]
        whole = torch.floor(filled)
        fraction = (filled - whole).sum(dim=-1)
        p = self.probabilities[0] + (whole.sum(dim=-1) + fraction) * step
        q = (1.0 - self.probabilities[-1]) + ((1.0 - whole).sum(dim=-1) - fraction) * step
        lower = inverse_normal_cdf(torch.clamp(p, P_MIN, 0.5))
        upper = -inverse_normal_cdf(torch.clamp(q, P_MIN, 0.5))
        return torch.where(p <= q, lower, upper)

    def inverse(self, u: Tensor) -> Tensor:  # (N, k) normal scores -> (N, k) raw values
        """The raw value whose normal score is ``u``: Phi(u) through the piecewise-linear
        quantile function (the inverse of ``forward`` inside the fitted range; a tie's whole
        probability step maps back to the tied value). For generators, not for export."""
        n_levels = self.probabilities.numel()
        position = 0.5 * (1.0 + torch.erf(u / math.sqrt(2.0))) * (n_levels - 1)  # (N, k)
        segment = torch.clamp(torch.floor(position), 0, n_levels - 2).long()
        fraction = torch.clamp(position - segment, 0.0, 1.0)
        quantiles = self.quantiles.T.unsqueeze(0).expand(len(u), -1, -1)  # (N, K, k)
        low = torch.gather(quantiles, 1, segment.unsqueeze(1)).squeeze(1)
        high = torch.gather(quantiles, 1, (segment + 1).unsqueeze(1)).squeeze(1)
        return low + fraction * (high - low)


class EventScaling(nn.Module):
    """The 19 x 3 trigger format (pT [GeV], eta, phi per row) to the network's scale.

    u_pT = log1p(pT / GeV) / s_pT[row], u_eta = eta / s_eta[row], u_phi = phi / pi, with the
    s the root mean square over the training events where the row is filled. log1p tames pT's
    long tail; no shift is applied, so an empty slot (pT = 0) stays exactly 0 in all three
    columns and ``event_mask`` recognises it (filled slots have u_pT > 0).

    ``frame = "leading_lepton"`` first uses the two symmetries of an unpolarised pp collision:
    every phi is taken relative to the leading lepton's (rows 1-8; without one the leading
    jet's, without jets MET's), and every eta is flipped when that object's is negative.
    Absolute phi carries no physics, yet in the lab frame it is a third of every filled slot's
    coordinates, which the autoencoder must spend latent capacity and reconstruction error on.
    The relative angle dphi in [0, 2 pi) becomes u_phi = dphi / pi - 1 in [-1, 1):
    back-to-back objects (W -> l nu, Z -> ll) sit at 0, away from the wrap, the reference at -1.
    """

    def __init__(self, n_rows: int = 19, frame: EventFrame = "lab") -> None:
        super().__init__()
        self.frame = frame
        self.register_buffer("pt_scale", torch.ones(n_rows, 1))
        self.register_buffer("eta_scale", torch.ones(n_rows, 1))

    def fit(self, x: np.ndarray) -> EventScaling:
        values = np.asarray(x, dtype=np.float64)  # (N, 19, 3)
        filled = values[..., 0] > 0  # (N, 19)
        counts = np.maximum(filled.sum(axis=0), 1)
        columns = ((self.pt_scale, np.log1p(np.clip(values[..., 0], 0, None))),
                   (self.eta_scale, values[..., 1]))  # fmt: skip
        for buffer, column in columns:
            rms = np.sqrt((np.where(filled, column, 0.0) ** 2).sum(axis=0) / counts)  # (19,)
            buffer.copy_(torch.as_tensor(np.where(rms > 0, rms, 1.0)).unsqueeze(-1))
        return self

    def forward(self, x: Tensor) -> Tensor:  # (N, 19, 3) -> (N, 19, 3)
        pt, eta, phi = x[..., 0:1], x[..., 1:2], x[..., 2:3]
        filled = (pt > 0).to(x.dtype)
        u_pt = torch.log1p(torch.clamp(pt, min=0.0)) / self.pt_scale
        if self.frame == "leading_lepton":
            eta, u_phi = _leading_lepton_frame(pt, eta, phi)
        else:
            u_phi = phi / math.pi
        return torch.cat([u_pt, filled * eta / self.eta_scale, filled * u_phi], dim=-1)


def _leading_lepton_frame(pt: Tensor, eta: Tensor, phi: Tensor) -> tuple[Tensor, Tensor]:
    """eta flipped to the reference's hemisphere and dphi / pi - 1 to the reference, each
    (N, 19, 1): the reference is the leading lepton, else the leading jet, else MET."""
    reference = torch.zeros_like(pt[:, :1, 0], dtype=torch.long)  # (N, 1): MET
    for rows in (JET_ROWS, LEPTON_ROWS):  # the later, leptons, wins
        rows_pt = pt[:, rows, 0]
        leading = rows_pt.argmax(dim=1, keepdim=True) + rows.start
        reference = torch.where(rows_pt.amax(dim=1, keepdim=True) > 0, leading, reference)
    reference = reference.unsqueeze(-1)  # (N, 1, 1)
    eta_ref = torch.gather(eta, 1, reference)
    phi_ref = torch.gather(phi, 1, reference)
    flip = torch.where(eta_ref < 0, -torch.ones_like(eta_ref), torch.ones_like(eta_ref))
    dphi = phi - phi_ref
    dphi = dphi - 2.0 * math.pi * torch.floor(dphi / (2.0 * math.pi))  # [0, 2 pi)
    return flip * eta, dphi / math.pi - 1.0


def event_mask(u: Tensor) -> Tensor:
    """Which entries of scaled events (N, 19, 3) count in the energy: every pT, and eta, phi
    only where the slot is filled (u_pT > 0). Float (N, 19, 3) of 0 and 1."""
    filled = (u[..., 0:1] > 0).to(u.dtype)
    return torch.cat([torch.ones_like(filled), filled, filled], dim=-1)


class ImageReweighting(nn.Module):
    """Images (N, 40, 40), unit sum -> pixel^n / sum(pixel^n), optionally Gaussian-smoothed,
    optionally 2 x 2 sum-pooled.

    n < 1 lifts the soft periphery against the hard core, which arXiv:2206.14225 finds makes AEs
    less dominated by the leading subjet. Smoothing (``smoothing`` = sigma in pixels, the
    GaussianFilter of the paper's code) spreads each calorimeter-tower spike over its
    neighbours, so a squared reconstruction error measures how far energy is misplaced rather
    than only whether it hit the same pixel: on 20,000 QCD and 20,000 top test jets the top AUC
    of a 3-component PCA's error rises from 0.798 to 0.920 with sigma = 1 (docs/results.md).
    The kernel is cut at 4 sigma (as scipy's ``gaussian_filter``), normalised, zero-padded at
    the image edge, and held as a buffer so it exports with the model. An all-zero image stays
    zero.
    """

    def __init__(self, *, pt_power: float, pool: bool, smoothing: float = 0.0) -> None:
        super().__init__()
        self.pt_power = pt_power
        self.pool = pool
        self.smoothing = smoothing
        self.register_buffer("kernel", _gaussian_kernel(smoothing), persistent=False)

    def fit(self, x: np.ndarray) -> ImageReweighting:  # nothing to learn; kept for symmetry
        return self

    def forward(self, x: Tensor) -> Tensor:  # (N, 40, 40) -> (N, 40, 40) or (N, 20, 20)
        if self.pt_power != 1.0:
            x = torch.clamp(x, min=0.0) ** self.pt_power
            x = x / torch.clamp(x.sum(dim=(1, 2), keepdim=True), min=1e-30)
        if self.smoothing > 0.0:
            radius = self.kernel.shape[0] // 2
            image = x.unsqueeze(1)
            image = nn.functional.conv2d(image, self.kernel.view(1, 1, -1, 1), padding=(radius, 0))
            image = nn.functional.conv2d(image, self.kernel.view(1, 1, 1, -1), padding=(0, radius))
            x = image.squeeze(1)
        if self.pool:
            x = 4.0 * nn.functional.avg_pool2d(x.unsqueeze(1), 2).squeeze(1)
        return x


def _gaussian_kernel(sigma: float) -> Tensor:
    """The normalised 1-d Gaussian of ``sigma`` pixels cut at 4 sigma; [1.0] for sigma 0."""
    if sigma <= 0.0:
        return torch.ones(1)
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(torch.float32)


# Acklam's rational approximation of the inverse normal CDF (P. J. Acklam, 2003).
_A = (-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690,
      -30.66479806614716, 2.506628277459239)  # fmt: skip
_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972,
      -13.28068155288572)  # fmt: skip
_C = (-7.784894002430293e-03, -0.3223964580411365, -2.400758277161838, -2.549732539343734,
      4.374664141464968, 2.938163982698783)  # fmt: skip
_D = (7.784695709041462e-03, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
_P_LOW = 0.02425


def inverse_normal_cdf(p: Tensor) -> Tensor:
    """Phi^-1(p) for p in (0, 1), elementwise, from exportable ops (where, log, sqrt)."""
    q = p - 0.5
    r = q * q
    central = _horner(_A, r) * q / (_horner(_B, r) * r + 1.0)
    tail_p = torch.minimum(p, 1.0 - p)  # the nearer tail, by symmetry
    t = torch.sqrt(-2.0 * torch.log(tail_p))
    tail = _horner(_C, t) / (_horner(_D, t) * t + 1.0)  # negative: the lower tail's value
    tail = torch.where(p > 0.5, -tail, tail)
    return torch.where(tail_p < _P_LOW, tail, central)


def _horner(coefficients: tuple[float, ...], x: Tensor) -> Tensor:
    result = torch.full_like(x, coefficients[0])
    for c in coefficients[1:]:
        result = result * x + c
    return result
