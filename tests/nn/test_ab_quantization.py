"""Colorization's ab quantisation, soft encoding, prior and rebalancing weights against
hand-worked cases, and the in-gamut bins against the whole sRGB cube."""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.nn.ab_quantization import (
    ab_histogram,
    annealed_mean,
    cells_of_colours,
    gamut_bins,
    nearest_bins,
    rebalancing_weights,
    smooth_prior,
    soft_encode,
)
from selfsup.nn.losses import rebalanced_soft_cross_entropy


def test_261_in_gamut_bins_on_a_10_unit_grid():
    bins = gamut_bins(10.0)
    assert bins.shape == (261, 2)  # the paper reports 313: see the module docstring
    assert bool((bins.remainder(10) == 0).all())  # centres on multiples of 10
    assert bins.unique(dim=0).shape == bins.shape
    assert bins[:, 0].min() == -90 and bins[:, 0].max() == 100
    assert bins[:, 1].min() == -110 and bins[:, 1].max() == 90
    assert [0.0, 0.0] in bins.tolist()  # grey
    assert [90.0, 90.0] not in bins.tolist()  # no sRGB colour is that red and yellow at once
    assert gamut_bins(5.0).shape[0] > 261  # finer cells, more bins


def test_the_cube_faces_reach_every_cell_the_whole_cube_reaches():
    """The bins come from the 6 faces of the RGB cube; colours inside it add no cell (checked
    here on every 3rd level of each channel, faces included; all 2^24 colours give 261 too)."""
    levels = torch.arange(0, 256, 3, dtype=torch.float64) / 255  # 0 .. 255, 86 levels
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    inside = {tuple(c) for c in cells_of_colours(cube, 10.0).tolist()}
    faces = {tuple(round(v / 10) for v in b) for b in gamut_bins(10.0).tolist()}
    assert inside <= faces and len(faces) - len(inside) <= 3  # the grid misses a few corners


def test_nearest_bins_of_hand_picked_ab_values():
    bins = gamut_bins(10.0)
    # (-86, 83) rounds to the cell (-90, 80), in gamut; (-86, 63) to (-90, 60), out of gamut:
    # its nearest bin is (-80, 60) at sqrt(36 + 9), not (-90, 80) at sqrt(16 + 289).
    ab = torch.tensor([[0.0, 0.0], [4.9, -4.9], [33.0, 18.0], [-86.0, 83.0], [-86.0, 63.0]])
    distance, index = nearest_bins(ab, bins, k=1)
    assert bins[index[:, 0]].tolist() == [[0, 0], [0, 0], [30, 20], [-90, 80], [-80, 60]]
    expected = [0.0, math.hypot(4.9, 4.9), math.hypot(3, 2), 5.0, math.hypot(6, 3)]
    torch.testing.assert_close(distance[:, 0], torch.tensor(expected))
    # the 5 nearest of a bin centre: itself and its 4 neighbours at distance 10
    distance, index = nearest_bins(torch.tensor([[0.0, 0.0]]), bins, k=5)
    assert distance[0].tolist() == [0.0, 10.0, 10.0, 10.0, 10.0]
    assert sorted(map(tuple, bins[index[0]].tolist())) == [
        (-10, 0),
        (0, -10),
        (0, 0),
        (0, 10),
        (10, 0),
    ]


def test_soft_encoding_is_a_normalised_gaussian_over_the_k_nearest_bins():
    bins = gamut_bins(10.0)
    index, weight = soft_encode(torch.tensor([[0.0, 0.0], [5.0, 0.0]]), bins, k=5, sigma=5.0)
    # at a centre: e^0 for itself, e^(-100/50) = e^-2 for each of the 4 neighbours
    z = 1 + 4 * math.exp(-2)
    torch.testing.assert_close(weight[0], torch.tensor([1, *[math.exp(-2)] * 4]) / z)
    assert bins[index[0, 0]].tolist() == [0.0, 0.0]
    # half way between (0, 0) and (10, 0): both at 5, then (0, +-10) and (10, +-10) at sqrt(125)
    d2 = torch.tensor([25.0, 25.0, 125.0, 125.0, 125.0])
    torch.testing.assert_close(weight[1], torch.softmax(-d2 / 50, dim=0))
    assert {tuple(b) for b in bins[index[1, :2]].tolist()} == {(0.0, 0.0), (10.0, 0.0)}
    assert torch.allclose(weight.sum(dim=1), torch.ones(2))
    one_hot = soft_encode(torch.tensor([[33.0, 18.0]]), bins, k=1)[1]
    assert one_hot.tolist() == [[1.0]]


def test_histogram_counts_the_nearest_bin():
    bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    ab = torch.tensor([[1.0, 1.0], [9.0, -2.0], [2.0, 8.0], [-3.0, 0.0], [30.0, 0.0]])
    assert ab_histogram(ab, bins).tolist() == [2, 2, 1]


def test_prior_smoothing_on_a_three_bin_line():
    bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    p = torch.tensor([3.0, 1.0, 0.0])  # counts; smoothing normalises
    k = torch.tensor(
        [
            [1, math.exp(-2), math.exp(-8)],
            [math.exp(-2), 1, math.exp(-2)],
            [math.exp(-8), math.exp(-2), 1],
        ]
    )
    expected = k @ (p / p.sum())
    torch.testing.assert_close(smooth_prior(p, bins, sigma=5.0), expected / expected.sum())
    # a wide kernel flattens the prior, a narrow one keeps it
    assert smooth_prior(p, bins, sigma=100.0).std() < 0.01
    torch.testing.assert_close(smooth_prior(p, bins, sigma=0.1), p / p.sum())


def test_rebalancing_weights_on_a_two_bin_prior():
    p = torch.tensor([0.75, 0.25])
    # lambda 0.5: 1/(0.5 * 0.75 + 0.25) = 1.6, 1/(0.5 * 0.25 + 0.25) = 8/3; E_p = 1.2 + 2/3
    w = rebalancing_weights(p, 0.5)
    norm = 0.75 * 1.6 + 0.25 * 8 / 3
    torch.testing.assert_close(w, torch.tensor([1.6, 8 / 3]) / norm)
    assert float((p * w).sum()) == pytest.approx(1.0)
    # lambda 1: no rebalancing; lambda 0: inverse frequency, normalised
    torch.testing.assert_close(rebalancing_weights(p, 1.0), torch.ones(2))
    torch.testing.assert_close(rebalancing_weights(p, 0.0), torch.tensor([1 / 0.75, 4.0]) / 2)
    with pytest.raises(ValueError, match="probability 0"):
        rebalancing_weights(torch.tensor([1.0, 0.0]), 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rebalancing_weights(p, 1.5)


def test_annealed_mean_between_the_mean_and_the_mode():
    bins = torch.tensor([[0.0, 0.0], [10.0, 20.0], [-30.0, 10.0]])
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3]))[:, None, None].expand(3, 2, 2)[None]
    mean = annealed_mean(logits, bins, temperature=1.0)  # [1, 2, 2, 2]
    expected_mean = torch.tensor([0.2, 0.5, 0.3]) @ bins
    torch.testing.assert_close(mean[0, :, 0, 0], expected_mean)
    mode = annealed_mean(logits, bins, temperature=0.01)[0, :, 1, 1]
    torch.testing.assert_close(mode, bins[1], atol=1e-3, rtol=0)
    t = 0.38  # softmax(log z / T) = z^(1/T) / sum z^(1/T)
    z = torch.tensor([0.2, 0.5, 0.3]) ** (1 / t)
    torch.testing.assert_close(annealed_mean(logits, bins, t)[0, :, 0, 1], (z / z.sum()) @ bins)


def test_rebalanced_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    index = torch.tensor([[0, 1], [2, 0]])
    weight = torch.tensor([[0.8, 0.2], [0.6, 0.4]])
    w = torch.tensor([0.5, 1.0, 3.0])
    log_p = torch.log_softmax(logits, dim=1)
    row0 = -(0.8 * log_p[0, 0] + 0.2 * log_p[0, 1]) * 0.5  # weight of its nearest bin, 0
    row1 = -(0.6 * log_p[1, 2] + 0.4 * log_p[1, 0]) * 3.0  # nearest bin 2
    expected = (row0 + row1) / 2
    assert rebalanced_soft_cross_entropy(logits, index, weight, w).item() == pytest.approx(
        expected.item()
    )
