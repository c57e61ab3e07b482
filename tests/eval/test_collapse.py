"""Collapse metrics against independent reference formulas and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.eval.collapse import (
    alignment,
    collapse_metrics,
    diagnose,
    rankme,
    std_ratio,
    uniformity,
)


def test_rankme_matches_a_numpy_reference():
    torch.manual_seed(0)
    x = torch.randn(50, 8) @ torch.diag(torch.tensor([5.0, 4, 3, 2, 1, 0.5, 0.1, 0.01]))
    s = np.linalg.svd(x.numpy().astype(np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    assert rankme(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-6)
    assert rankme(torch.eye(6)) == pytest.approx(6.0, rel=1e-5)  # equal singular values


def test_uniformity_and_alignment_match_their_definitions():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # on the circle already
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    naive = math.log(sum(math.exp(-2 * float((z[i] - z[j]).pow(2).sum())) for i, j in pairs) / 6)
    assert uniformity(z) == pytest.approx(naive, rel=1e-6)
    # |(1,0) - (0,1)|^2 = 2 for the first pair, 0 for the second: mean 1
    assert alignment(torch.tensor([[2.0, 0], [0, 3.0]]), torch.tensor([[0, 5.0], [0, 1.0]])) == 1.0


def test_std_ratio_is_one_for_isotropic_features_and_zero_for_a_constant():
    torch.manual_seed(0)
    assert std_ratio(torch.randn(4000, 64)) == pytest.approx(1.0, abs=0.02)
    assert std_ratio(torch.ones(100, 64)) == pytest.approx(0.0, abs=1e-6)


def test_diagnose_names_complete_and_dimensional_collapse():
    torch.manual_seed(0)
    constant = torch.ones(500, 128) + 1e-5 * torch.randn(500, 128)
    (complete,) = diagnose(collapse_metrics(constant))
    assert complete.startswith("complete collapse") and "Likely causes" in complete
    flat = torch.randn(500, 2) @ torch.randn(2, 128)  # two directions of 128
    (dimensional,) = diagnose(collapse_metrics(flat))
    assert dimensional.startswith("dimensional collapse")
    assert diagnose(collapse_metrics(torch.randn(500, 128))) == []
