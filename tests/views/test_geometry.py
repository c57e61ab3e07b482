"""Crop boxes (torchvision's distribution) and resized crop + flip, against references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF

from selfsup.views import ops
from tests.views.helpers import ks_statistic, rand_images, seeded

# ---------------------------------------------------------------------------------------
# Crop boxes


@pytest.mark.parametrize(("height", "width"), [(256, 256), (120, 300), (300, 90)])
def test_crop_boxes_inside_image_and_within_scale_and_ratio(height: int, width: int) -> None:
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = ops.sample_crop_boxes(20000, height, width, scale, ratio, seeded(1))
    assert boxes.shape == (20000, 4) and boxes.dtype == torch.float32
    x0, y0, w, h = boxes.double().unbind(1)
    assert torch.equal(boxes, boxes.round()), "boxes are whole pixels, as torchvision's"
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= width).all() and (y0 + h <= height).all()
    assert (w >= 1).all() and (h >= 1).all()
    # w and h are rounded: some real (w', h') within 0.5 of them satisfies the ranges.
    area = height * width
    assert ((w + 0.5) * (h + 0.5) / area >= scale[0]).all()
    assert ((w - 0.5) * (h - 0.5) / area <= scale[1]).all()
    assert ((w + 0.5) / (h - 0.5) >= ratio[0]).all()
    assert ((w - 0.5) / (h + 0.5) <= ratio[1]).all()


def test_crop_boxes_match_torchvision_distribution() -> None:
    """Same distribution as torchvision's sampler (rejections included) on a wide image."""
    height, width, n = 60, 100, 3000
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    ours = ops.sample_crop_boxes(n, height, width, scale, ratio, seeded(2)).numpy()
    torch.manual_seed(3)
    img = torch.zeros(1, height, width)
    ref = np.array(
        [
            [j, i, w, h]
            for i, j, h, w in (T.RandomResizedCrop.get_params(img, scale, ratio) for _ in range(n))
        ],
        dtype=np.float64,
    )

    def features(b: np.ndarray) -> dict[str, np.ndarray]:
        x0, y0, w, h = b.T
        return {
            "area": w * h / (height * width),
            "log_ratio": np.log(w / h),
            "centre_x": x0 + w / 2,
            "centre_y": y0 + h / 2,
        }

    # KS critical value for n = m = 3000 at alpha = 0.001 is 1.95 * sqrt(2 / 3000) = 0.050.
    for name, values in features(ours).items():
        assert ks_statistic(values, features(ref)[name]) < 0.05, name
    # Sanity check that the KS test has power: a different scale range is detected.
    other = ops.sample_crop_boxes(n, height, width, (0.2, 1.0), ratio, seeded(4)).numpy()
    assert ks_statistic(features(other)["area"], features(ref)["area"]) > 0.1


def test_crop_area_uniform_in_scale_without_rejections() -> None:
    # On a square image with scale <= 0.5 and ratio <= 4/3 no candidate is ever rejected,
    # so the area fraction is U(scale) up to pixel rounding.
    n, side = 40000, 400
    boxes = ops.sample_crop_boxes(n, side, side, (0.1, 0.5), (3 / 4, 4 / 3), seeded(5))
    area = (boxes[:, 2] * boxes[:, 3] / side**2).numpy()
    counts, _ = np.histogram(area, bins=8, range=(0.1, 0.5))
    expected = n / 8
    assert counts.sum() >= 0.995 * n  # rounding pushes a few a hair outside the range
    assert np.all(np.abs(counts - expected) < 0.1 * expected), counts
    log_r = np.log((boxes[:, 2] / boxes[:, 3]).numpy())
    counts_r, _ = np.histogram(log_r, bins=6, range=(math.log(3 / 4), math.log(4 / 3)))
    assert np.all(np.abs(counts_r - n / 6) < 0.1 * n / 6), counts_r


def test_crop_positions_uniform() -> None:
    # Fixed 20x20 crops in a 40x40 image: x0 and y0 uniform over the 21 positions 0..20.
    n = 21000
    boxes = ops.sample_crop_boxes(n, 40, 40, (0.25, 0.25), (1.0, 1.0), seeded(6))
    assert torch.all(boxes[:, 2:] == 20)
    for column in (0, 1):
        counts = torch.bincount(boxes[:, column].long(), minlength=21)
        assert counts.numel() == 21, "positions beyond 40 - 20 occurred"
        assert torch.all((counts - 1000).abs() < 150), counts


@pytest.mark.parametrize(("height", "width"), [(10, 1000), (1000, 10), (50, 55)])
def test_crop_fallback_is_torchvision_central_crop(height: int, width: int) -> None:
    # Scale (0.9, 1) with a ratio range the image shape cannot satisfy: every draw fails for
    # the first two shapes and torchvision falls back to a deterministic central crop.
    scale, ratio = (0.99, 1.0), (3 / 4, 4 / 3)
    if height == 50:
        ratio = (2.0, 3.0)  # 55/50 is outside, candidates need w > W
    boxes = ops.sample_crop_boxes(64, height, width, scale, ratio, seeded(7))
    i, j, h, w = T.RandomResizedCrop.get_params(torch.zeros(1, height, width), scale, ratio)
    expected = torch.tensor([j, i, w, h], dtype=torch.float32)
    assert torch.equal(boxes, expected.expand(64, 4))


def test_crop_boxes_reproducible_and_validated() -> None:
    a = ops.sample_crop_boxes(16, 32, 32, generator=seeded(8))
    b = ops.sample_crop_boxes(16, 32, 32, generator=seeded(8))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="scale"):
        ops.sample_crop_boxes(4, 32, 32, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="ratio"):
        ops.sample_crop_boxes(4, 32, 32, ratio=(0.0, 1.0))


# ---------------------------------------------------------------------------------------
# Resized crop + flip


def _full_boxes(batch: int, height: int, width: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0, width, height]]).expand(batch, 4)


def test_flip_of_whole_image_is_exact_mirror() -> None:
    x = rand_images(4, 3, 12, 12)
    flip = torch.ones(4, dtype=torch.bool)
    out = ops.resized_crop(x, _full_boxes(4, 12, 12), 12, flip)
    # Exact up to float32 rounding of the sampling grid (bilinear weights of ~1e-7).
    torch.testing.assert_close(out, torch.flip(x, dims=[-1]), rtol=0, atol=1e-6)
    same = ops.resized_crop(x, _full_boxes(4, 12, 12), 12, ~flip)
    torch.testing.assert_close(same, x, rtol=0, atol=1e-6)


def test_flip_applies_per_sample() -> None:
    x = rand_images(6, 1, 8, 8)
    flip = torch.tensor([True, False, True, True, False, False])
    out = ops.resized_crop(x, _full_boxes(6, 8, 8), 8, flip)
    expected = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_integer_crops_at_scale_one_are_slices() -> None:
    x = rand_images(3, 2, 20, 24)
    boxes = torch.tensor([[3.0, 5.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0], [16.0, 12.0, 8.0, 8.0]])
    flip = torch.tensor([False, True, False])
    out = ops.resized_crop(x, boxes, 8, flip)
    for i, (x0, y0, w, h) in enumerate(boxes.long().tolist()):
        expected = x[i, :, y0 : y0 + h, x0 : x0 + w]
        if flip[i]:
            expected = expected.flip(-1)
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)


def test_half_size_crop_averages_pixel_pairs() -> None:
    # Shrinking a 16x16 crop to 8x8: each output pixel centre falls between 2x2 inputs.
    x = rand_images(2, 3, 32, 32)
    boxes = torch.tensor([[4.0, 6.0, 16.0, 16.0], [10.0, 0.0, 16.0, 16.0]])
    out = ops.resized_crop(x, boxes, 8)
    for i, (x0, y0, w, h) in enumerate(boxes.long().tolist()):
        expected = F.avg_pool2d(x[i : i + 1, :, y0 : y0 + h, x0 : x0 + w], 2)[0]
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)


def test_whole_image_resize_matches_torchvision_bilinear() -> None:
    x = rand_images(2, 3, 12, 12)
    out = ops.resized_crop(x, _full_boxes(2, 12, 12), 20)
    ref = TF.resize(x, [20, 20], interpolation=T.InterpolationMode.BILINEAR, antialias=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_resized_crop_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError, match="boxes"):
        ops.resized_crop(rand_images(2, 1, 8, 8), torch.zeros(3, 4), 4)
    with pytest.raises(ValueError, match="floating point"):
        ops.resized_crop(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, 4), 4)
