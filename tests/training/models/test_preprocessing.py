"""In-graph preprocessing: what each module computes, and that it exports to ONNX and gives
the same numbers in ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

from training.models.preprocessing import (
    EventScaling,
    ImageReweighting,
    QuantileToNormal,
    Standardise,
    event_mask,
    inverse_normal_cdf,
)

torch.set_num_threads(1)  # as training runs (TrainConfig.threads)


def test_inverse_normal_cdf_matches_scipy():
    p = torch.tensor(np.concatenate([np.linspace(1e-7, 1 - 1e-7, 2001), [0.02425, 0.97575]]))
    assert torch.allclose(
        inverse_normal_cdf(p), torch.from_numpy(special.ndtri(p.numpy())), atol=1e-8
    )


def test_standardise_fits_mean_and_std_and_survives_a_constant_feature():
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    module = Standardise(2).fit(x)
    assert module(torch.tensor(x, dtype=torch.float32)).tolist() == [[-1.0, 0.0], [1.0, 0.0]]


def test_quantile_to_normal_is_the_normal_score_of_the_empirical_cdf():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=(20_000, 1))
    module = QuantileToNormal(1, 101).fit(x)
    probe = np.quantile(x, [0.1, 0.5, 0.9])  # at stored quantiles: exact
    out = module(torch.tensor(probe, dtype=torch.float32).view(-1, 1)).view(-1)
    assert out.numpy() == pytest.approx(special.ndtri([0.1, 0.5, 0.9]), abs=1e-4)
    z = module(torch.tensor(x[:5000], dtype=torch.float32)).numpy()
    assert z.mean() == pytest.approx(0.0, abs=0.05) and z.std() == pytest.approx(1.0, abs=0.05)
    outside = module(torch.tensor([[-1.0], [1e6]])).view(-1).tolist()
    assert outside == pytest.approx([special.ndtri(1e-7), special.ndtri(1 - 1e-7)], abs=1e-2)


def test_quantile_ties_map_to_the_middle_of_their_step():
    x = np.concatenate([np.zeros(500), np.linspace(1.0, 2.0, 500)]).reshape(-1, 1)
    module = QuantileToNormal(1, 201).fit(x)
    tied = module(torch.zeros(1, 1)).item()
    assert tied == pytest.approx(special.ndtri(0.25), abs=0.02)


def test_event_scaling_keeps_empty_slots_at_zero_and_masks_their_angles():
    x = np.zeros((3, 19, 3), np.float32)
    x[:, 0] = [50.0, 0.0, 1.0]  # MET: eta is 0 by convention
    x[:, 1] = [[30.0, 1.2, -2.0], [20.0, -0.4, 0.5], [10.0, 0.8, 3.0]]
    module = EventScaling().fit(x)
    u = module(torch.from_numpy(x))
    assert (u[:, 2:] == 0).all()  # empty slots
    assert (u[:, :2, 0] > 0).all()
    assert u[0, 1, 2].item() == pytest.approx(-2.0 / math.pi)
    rms = math.sqrt((math.log1p(30) ** 2 + math.log1p(20) ** 2 + math.log1p(10) ** 2) / 3)
    assert u[0, 1, 0].item() == pytest.approx(math.log1p(30) / rms, rel=1e-5)
    mask = event_mask(u)
    assert mask[:, :2].eq(1).all() and mask[:, 2:, 0].eq(1).all() and mask[:, 2:, 1:].eq(0).all()


def _events(n: int, seed: int) -> np.ndarray:
    """Random 19 x 3 events: MET, 0-4 muons, 0-6 jets, each kind pT-ordered."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 19, 3), np.float32)
    x[:, 0] = np.stack([rng.exponential(30, n), np.zeros(n), rng.uniform(-np.pi, np.pi, n)], 1)
    for first, count in ((5, 4), (9, 6)):
        rows = first + np.arange(count)
        filled = np.arange(count) < rng.integers(0, count + 1, (n, 1))
        pt = -np.sort(-(rng.exponential(30, (n, count)) + 1), axis=1)
        angles = rng.normal(0, 1.5, (n, count)), rng.uniform(-np.pi, np.pi, (n, count))
        x[:, rows] = np.stack([pt, *angles], -1) * filled[..., None]
    return x


def test_leading_lepton_frame_forgets_azimuth_and_beam_direction():
    x = _events(200, 3)
    module = EventScaling(frame="leading_lepton").fit(x)
    u = module(torch.from_numpy(x))
    rng = np.random.default_rng(4)
    turned = x.copy()
    filled = turned[..., 0] > 0
    turned[..., 2] = np.where(
        filled, np.angle(np.exp(1j * (x[..., 2] + rng.uniform(0, 6, (200, 1))))), 0
    )
    turned[..., 1] *= rng.choice([-1.0, 1.0], size=(200, 1))  # z -> -z per event
    assert module(torch.from_numpy(turned)) == pytest.approx(u, abs=2e-5)
    has_muon = x[:, 5, 0] > 0  # leading muon (no electrons here): the reference
    assert (u[has_muon, 5, 2] == pytest.approx(-1.0, abs=1e-6)) and (u[has_muon, 5, 1] >= 0).all()
    dphi = np.mod(x[has_muon, 0, 2] - x[has_muon, 5, 2], 2 * np.pi)  # MET against it
    assert u[has_muon, 0, 2].numpy() == pytest.approx(dphi / np.pi - 1, abs=1e-5)
    assert (u[~filled] == 0).all()
    jet_only = ~has_muon & (x[:, 9, 0] > 0)  # the leading jet is the reference
    assert (u[jet_only, 9, 2].numpy() == pytest.approx(-1.0, abs=1e-6)) and (
        u[jet_only, 9, 1] >= 0
    ).all()
    met_only = ~has_muon & ~jet_only
    assert met_only.any() and u[met_only, 0, 2].numpy() == pytest.approx(-1.0, abs=1e-6)
    lab = EventScaling().fit(x)(torch.from_numpy(x))
    assert torch.equal(u[..., 0], lab[..., 0])  # pT untouched


def test_image_reweighting_renormalises_and_pools():
    image = torch.zeros(1, 40, 40)
    image[0, 0, 0], image[0, 1, 1] = 0.75, 0.25
    soft = ImageReweighting(pt_power=0.5, pool=False)(image)
    assert soft.sum().item() == pytest.approx(1.0)
    assert soft[0, 0, 0].item() == pytest.approx(math.sqrt(0.75) / (math.sqrt(0.75) + 0.5))
    pooled = ImageReweighting(pt_power=1.0, pool=True)(image)
    assert pooled.shape == (1, 20, 20) and pooled[0, 0, 0].item() == pytest.approx(1.0)
    assert ImageReweighting(pt_power=0.5, pool=False)(torch.zeros(2, 40, 40)).eq(0).all()


def test_image_smoothing_is_scipys_gaussian_filter_with_zero_padding():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    image = rng.exponential(size=(2, 40, 40)) * (rng.random((2, 40, 40)) < 0.05)
    image /= image.sum(axis=(1, 2), keepdims=True)
    smoothed = ImageReweighting(pt_power=1.0, pool=False, smoothing=1.5)(
        torch.from_numpy(image.astype(np.float32))
    )
    expected = gaussian_filter(image, (0, 1.5, 1.5), mode="constant", truncate=4.0)
    assert smoothed.numpy() == pytest.approx(expected, abs=1e-7)
    centre = torch.zeros(1, 40, 40)
    centre[0, 20, 20] = 1.0
    spread = ImageReweighting(pt_power=1.0, pool=False, smoothing=1.0)(centre)
    assert spread.sum().item() == pytest.approx(1.0, rel=1e-6)  # nothing reaches the edge
    assert spread[0, 20, 20].item() == pytest.approx(spread.max().item())


def _export_and_run(module: torch.nn.Module, x: np.ndarray, tmp_path) -> np.ndarray:
    import onnxruntime

    path = tmp_path / "module.onnx"
    example = (torch.from_numpy(x[:4]),)
    torch.onnx.export(
        module.eval(), example, path, dynamo=True, dynamic_shapes=({0: "batch"},), verbose=False
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_preprocessing_exports_to_onnx_and_matches(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.gamma(2.0, size=(300, 3)).astype(np.float32)
    features[:50, 1] = 0.0  # ties
    events = np.zeros((300, 19, 3), np.float32)
    events[:, :5, 0] = rng.exponential(30.0, size=(300, 5))
    events[:, :5, 1:] = rng.normal(size=(300, 5, 2))
    events[:100, 1:5] = 0.0  # no lepton: MET is the reference

    class Both(torch.nn.Module):  # one export for both modules keeps the test quick
        def __init__(self) -> None:
            super().__init__()
            self.quantile = QuantileToNormal(3, 64).fit(features)
            self.events = EventScaling().fit(events)
            self.turned = EventScaling(frame="leading_lepton").fit(events)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3 + 57)
            q = self.quantile(x[:, :3])
            e = x[:, 3:].reshape(-1, 19, 3)
            return torch.cat([q, self.events(e).flatten(1), self.turned(e).flatten(1)], dim=1)

    x = np.concatenate([features, events.reshape(300, -1)], axis=1)
    module = Both()
    expected = module(torch.from_numpy(x)).detach().numpy()
    # float32 sums over the quantile segments run in another order in ONNX Runtime
    assert _export_and_run(module, x, tmp_path) == pytest.approx(expected, rel=1e-4, abs=1e-4)
