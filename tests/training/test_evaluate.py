"""Separation metrics as evaluate writes them, on scores whose answers follow by counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.evaluate import score_inputs, separation_metrics


def test_metrics_of_separable_scores_by_counting():
    background = np.arange(20_000, dtype=float)  # scores 0 .. 19999
    signal = np.arange(10_000, 20_000, dtype=float) + 0.5  # above half the background
    metrics = separation_metrics(background, signal)
    # signal event i (score 10000.5 + i) beats 10001 + i background events
    assert metrics["auc"]["value"] == pytest.approx((10_000 * 10_001 + 49_995_000) / 2e8)
    # eps_S = 0.2: the threshold is the 8000th signal score, 17999.5; 2000 background above
    rejection = metrics["rejection_at_eff_0.2"]
    assert rejection["value"] == pytest.approx(20_000 / 2000, rel=1e-3)
    assert rejection["low"] < rejection["value"] < rejection["high"]
    # FPR 1e-3: the threshold is 19979, which the 20 highest background events pass, and the
    # 21 signal events from 19979.5 up
    tpr = metrics["tpr_at_fpr_0.001"]
    assert tpr["value"] == pytest.approx(21 / 10_000)
    assert metrics["tpr_at_fpr_1e-05"] == {"value": None, "needs_background": 1_000_000}


def test_a_rejection_without_passing_background_is_a_lower_limit():
    metrics = separation_metrics(np.zeros(1000), np.ones(1000))
    rejection = metrics["rejection_at_eff_0.3"]
    assert rejection["value"] is None and rejection["high"] is None
    assert rejection["low"] > 100


def test_score_inputs_batches_every_score():
    class TwoScores(torch.nn.Module):
        default_score = "sum"

        def scores(self, x):
            return {"sum": x.sum(dim=1), "max": x.max(dim=1).values}

    x = torch.arange(10_000.0).view(-1, 2)
    scores = score_inputs(TwoScores(), x)
    assert scores["sum"].shape == (5000,) and scores["max"][-1] == 9999.0
