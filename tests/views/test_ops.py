"""Batched view ops against torchvision's per-image functions, NumPy/colorsys references and invariants."""

from __future__ import annotations

import colorsys
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF

from selfsup.views import ops


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, height, width, generator=_gen(seed))


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |ECDF_a - ECDF_b|."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


# ---------------------------------------------------------------------------------------
# Crop boxes


@pytest.mark.parametrize(("height", "width"), [(256, 256), (120, 300), (300, 90)])
def test_crop_boxes_inside_image_and_within_scale_and_ratio(height: int, width: int) -> None:
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    boxes = ops.sample_crop_boxes(20000, height, width, scale, ratio, _gen(1))
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
    ours = ops.sample_crop_boxes(n, height, width, scale, ratio, _gen(2)).numpy()
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
        assert _ks_statistic(values, features(ref)[name]) < 0.05, name
    # Sanity check that the KS test has power: a different scale range is detected.
    other = ops.sample_crop_boxes(n, height, width, (0.2, 1.0), ratio, _gen(4)).numpy()
    assert _ks_statistic(features(other)["area"], features(ref)["area"]) > 0.1


def test_crop_area_uniform_in_scale_without_rejections() -> None:
    # On a square image with scale <= 0.5 and ratio <= 4/3 no candidate is ever rejected,
    # so the area fraction is U(scale) up to pixel rounding.
    n, side = 40000, 400
    boxes = ops.sample_crop_boxes(n, side, side, (0.1, 0.5), (3 / 4, 4 / 3), _gen(5))
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
    boxes = ops.sample_crop_boxes(n, 40, 40, (0.25, 0.25), (1.0, 1.0), _gen(6))
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
    boxes = ops.sample_crop_boxes(64, height, width, scale, ratio, _gen(7))
    i, j, h, w = T.RandomResizedCrop.get_params(torch.zeros(1, height, width), scale, ratio)
    expected = torch.tensor([j, i, w, h], dtype=torch.float32)
    assert torch.equal(boxes, expected.expand(64, 4))


def test_crop_boxes_reproducible_and_validated() -> None:
    a = ops.sample_crop_boxes(16, 32, 32, generator=_gen(8))
    b = ops.sample_crop_boxes(16, 32, 32, generator=_gen(8))
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
    x = _images(4, 3, 12, 12)
    flip = torch.ones(4, dtype=torch.bool)
    out = ops.resized_crop(x, _full_boxes(4, 12, 12), 12, flip)
    # Exact up to float32 rounding of the sampling grid (bilinear weights of ~1e-7).
    torch.testing.assert_close(out, torch.flip(x, dims=[-1]), rtol=0, atol=1e-6)
    same = ops.resized_crop(x, _full_boxes(4, 12, 12), 12, ~flip)
    torch.testing.assert_close(same, x, rtol=0, atol=1e-6)


def test_flip_applies_per_sample() -> None:
    x = _images(6, 1, 8, 8)
    flip = torch.tensor([True, False, True, True, False, False])
    out = ops.resized_crop(x, _full_boxes(6, 8, 8), 8, flip)
    expected = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_integer_crops_at_scale_one_are_slices() -> None:
    x = _images(3, 2, 20, 24)
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
    x = _images(2, 3, 32, 32)
    boxes = torch.tensor([[4.0, 6.0, 16.0, 16.0], [10.0, 0.0, 16.0, 16.0]])
    out = ops.resized_crop(x, boxes, 8)
    for i, (x0, y0, w, h) in enumerate(boxes.long().tolist()):
        expected = F.avg_pool2d(x[i : i + 1, :, y0 : y0 + h, x0 : x0 + w], 2)[0]
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-5)


def test_whole_image_resize_matches_torchvision_bilinear() -> None:
    x = _images(2, 3, 12, 12)
    out = ops.resized_crop(x, _full_boxes(2, 12, 12), 20)
    ref = TF.resize(x, [20, 20], interpolation=T.InterpolationMode.BILINEAR, antialias=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_resized_crop_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError, match="boxes"):
        ops.resized_crop(_images(2, 1, 8, 8), torch.zeros(3, 4), 4)
    with pytest.raises(ValueError, match="floating point"):
        ops.resized_crop(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, 4), 4)


# ---------------------------------------------------------------------------------------
# Colour ops vs torchvision, per sample

# torchvision weights red by 0.2989 where we use ITU-R 601's 0.299: luma differs by at most
# 1e-4 (red <= 1), and contrast and saturation by 1e-4 * |1 - f| (a blend with the luma).
_LUMA_TOL = 1.05e-4


def _per_sample_reference(fn, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(x[i], float(values[i])) for i in range(x.shape[0])])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    ("name", "tv_fn", "atol"),
    [
        ("adjust_brightness", TF.adjust_brightness, 1e-6),
        ("adjust_contrast", TF.adjust_contrast, 1.5 * _LUMA_TOL),  # |1 - f| <= 1.5 below
        ("adjust_saturation", TF.adjust_saturation, 1.5 * _LUMA_TOL),
    ],
)
def test_blend_ops_match_torchvision(name: str, tv_fn, atol: float, channels: int) -> None:
    x = _images(8, channels, 10, 14, seed=11)
    factor = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0, 1.3, 1.8, 2.5])
    out = getattr(ops, name)(x, factor)
    torch.testing.assert_close(out, _per_sample_reference(tv_fn, x, factor), rtol=0, atol=atol)


def test_contrast_and_saturation_match_numpy_601_reference() -> None:
    x = _images(5, 3, 6, 7, seed=12)
    factor = torch.tensor([0.0, 0.4, 1.0, 1.5, 2.0])
    xn, fn = x.double().numpy(), factor.double().numpy()[:, None, None, None]
    luma = np.einsum("bchw,c->bhw", xn, np.array([0.299, 0.587, 0.114]))[:, None]
    mean = luma.mean(axis=(1, 2, 3), keepdims=True)
    contrast = np.clip(fn * xn + (1 - fn) * mean, 0, 1)
    saturation = np.clip(fn * xn + (1 - fn) * luma, 0, 1)
    atol = 1e-6
    np.testing.assert_allclose(ops.adjust_contrast(x, factor).numpy(), contrast, atol=atol)
    np.testing.assert_allclose(ops.adjust_saturation(x, factor).numpy(), saturation, atol=atol)


def _hue_test_images() -> torch.Tensor:
    x = _images(6, 3, 9, 9, seed=13)
    x[0] = x[0, :1]  # grey image: hue is undefined, must come back unchanged
    x[1, :, 0, :6] = torch.eye(3).repeat(1, 2)  # pure primaries: hue boundaries
    x[1, :, 1, 0] = torch.tensor([1.0, 1.0, 0.0])  # ties between channels
    x[1, :, 1, 1] = torch.tensor([0.0, 1.0, 1.0])
    x[1, :, 1, 2] = 0.0  # black
    return x


def test_hue_matches_torchvision() -> None:
    x = _hue_test_images()
    shift = torch.tensor([0.3, -0.5, 0.5, -0.17, 0.0, 0.41])
    ref = _per_sample_reference(TF.adjust_hue, x, shift)
    torch.testing.assert_close(ops.adjust_hue(x, shift), ref, rtol=0, atol=1e-5)


def test_hue_matches_colorsys_per_pixel() -> None:
    x = _hue_test_images()
    shift = torch.tensor([0.25, -0.4, 0.1, 0.5, -0.05, 0.33])
    out = ops.adjust_hue(x, shift)
    for b in range(x.shape[0]):
        pixels = x[b].reshape(3, -1).T.double().tolist()
        for p, (r, g, bl) in enumerate(pixels):
            h, s, v = colorsys.rgb_to_hsv(r, g, bl)
            expected = colorsys.hsv_to_rgb((h + float(shift[b])) % 1.0, s, v)
            got = out[b].reshape(3, -1)[:, p].tolist()
            assert np.allclose(got, expected, atol=2e-6), (b, p, got, expected)


def test_rgb_hsv_conversions_match_colorsys_and_invert() -> None:
    x = _hue_test_images()
    hsv = ops.rgb_to_hsv(x)
    ref = [colorsys.rgb_to_hsv(*px) for px in x.permute(0, 2, 3, 1).reshape(-1, 3).tolist()]
    ours = hsv.permute(0, 2, 3, 1).reshape(-1, 3)
    np.testing.assert_allclose(ours.numpy(), np.array(ref), atol=2e-6)
    torch.testing.assert_close(ops.hsv_to_rgb(hsv), x, rtol=0, atol=2e-6)


def test_saturation_and_hue_are_identity_on_grey_channel() -> None:
    x = _images(4, 1, 5, 5, seed=14)
    assert torch.equal(ops.adjust_saturation(x, torch.full((4,), 1.7)), x)
    assert torch.equal(ops.adjust_hue(x, torch.full((4,), 0.3)), x)


def test_colour_ops_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="one value per sample"):
        ops.adjust_brightness(_images(4, 3, 5, 5), torch.ones(3))
    with pytest.raises(ValueError, match="channels"):
        ops.adjust_contrast(_images(4, 2, 5, 5), torch.ones(4))


# ---------------------------------------------------------------------------------------
# Colour jitter


def test_sample_jitter_params_distribution() -> None:
    n = 24000
    p = ops.sample_jitter_params(n, 0.8, 0.4, 1.2, 0.1, 0.8, _gen(20))
    for factors, strength in ((p.brightness, 0.8), (p.contrast, 0.4), (p.saturation, 1.2)):
        low, high = max(0.0, 1 - strength), 1 + strength
        assert factors.shape == (n,)
        assert factors.min() >= low and factors.max() < high
        assert factors.min() < low + 0.01 and factors.max() > high - 0.01
        assert abs(float(factors.mean()) - (low + high) / 2) < 0.02
    assert p.hue.min() >= -0.1 and p.hue.max() <= 0.1 and abs(float(p.hue.mean())) < 0.005
    # Every row is a permutation, and all 24 orders are about equally frequent.
    assert p.order.dtype == torch.int64
    assert torch.equal(p.order.sort(dim=1).values, torch.arange(4).expand(n, 4))
    codes = (p.order * torch.tensor([64, 16, 4, 1])).sum(dim=1)
    counts = torch.unique(codes, return_counts=True)[1]
    assert counts.numel() == 24 and torch.all((counts - 1000).abs() < 150), counts
    assert abs(float(p.mask.float().mean()) - 0.8) < 0.01


def test_sample_jitter_params_probability_extremes_and_validation() -> None:
    assert not ops.sample_jitter_params(500, 0.4, 0.4, 0.4, 0.1, 0.0, _gen(21)).mask.any()
    assert ops.sample_jitter_params(500, 0.4, 0.4, 0.4, 0.1, 1.0, _gen(21)).mask.all()
    with pytest.raises(ValueError, match="hue"):
        ops.sample_jitter_params(4, 0.4, 0.4, 0.4, 0.6, 0.8)
    with pytest.raises(ValueError, match="contrast"):
        ops.sample_jitter_params(4, 0.4, -0.1, 0.4, 0.1, 0.8)
    with pytest.raises(ValueError, match="probability"):
        ops.sample_jitter_params(4, 0.4, 0.4, 0.4, 0.1, 1.5)


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_at_strength_zero_is_identity(channels: int) -> None:
    x = _images(16, channels, 8, 8, seed=22)
    params = ops.sample_jitter_params(16, 0.0, 0.0, 0.0, 0.0, 1.0, _gen(23))
    assert torch.equal(ops.color_jitter(x, params), x)
    if channels == 1:  # saturation and hue do nothing to grey images, exactly
        params = ops.sample_jitter_params(16, 0.0, 0.0, 0.9, 0.4, 1.0, _gen(23))
        assert torch.equal(ops.color_jitter(x, params), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_mask_false_leaves_samples_unchanged(channels: int) -> None:
    x = _images(16, channels, 8, 8, seed=24)
    params = ops.sample_jitter_params(16, 0.8, 0.8, 0.8, 0.2, 0.5, _gen(25))
    out = ops.color_jitter(x, params)
    keep = ~params.mask
    assert keep.any() and params.mask.any()
    assert torch.equal(out[keep], x[keep])
    assert not torch.allclose(out[params.mask], x[params.mask], atol=1e-3)


_TV_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _jitter_reference(x: torch.Tensor, params: ops.JitterParams, fns) -> torch.Tensor:
    """Per-sample loop applying the four ops in each sample's own order."""
    out = []
    for i in range(x.shape[0]):
        img = x[i]
        if params.mask[i]:
            values = (params.brightness, params.contrast, params.saturation, params.hue)
            for op in params.order[i].tolist():
                img = fns[op](img, float(values[op][i]))
        out.append(img)
    return torch.stack(out)


def _all_orders_params(batch: int, seed: int) -> ops.JitterParams:
    orders = torch.tensor(list(itertools.permutations(range(4))))  # [24, 4]
    params = ops.sample_jitter_params(batch, 0.8, 0.8, 0.8, 0.3, 0.8, _gen(seed))
    return ops.JitterParams(
        params.brightness,
        params.contrast,
        params.saturation,
        params.hue,
        orders.repeat(batch // 24 + 1, 1)[:batch],
        params.mask,
    )


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_matches_torchvision_in_each_samples_order(channels: int) -> None:
    x = _images(48, channels, 7, 9, seed=26)
    params = _all_orders_params(48, seed=27)
    out = ops.color_jitter(x, params)
    # Luma weight difference (<= 1e-4 per op) amplified by up to three later factors <= 1.8.
    ref = _jitter_reference(x, params, _TV_OPS)
    torch.testing.assert_close(out, ref, rtol=0, atol=6e-4)
    # Against our own single ops composed in a loop the match is tight.
    ours = (lambda img, v: ops.adjust_brightness(img[None], torch.tensor([v]))[0],
            lambda img, v: ops.adjust_contrast(img[None], torch.tensor([v]))[0],
            lambda img, v: ops.adjust_saturation(img[None], torch.tensor([v]))[0],
            lambda img, v: ops.adjust_hue(img[None], torch.tensor([v]))[0])  # fmt: skip
    torch.testing.assert_close(out, _jitter_reference(x, params, ours), rtol=0, atol=1e-5)


def test_jitter_order_changes_the_result() -> None:
    # One image, identical factors, all 24 orders: clipping and hue make the ops not commute.
    x = _images(1, 3, 8, 8, seed=28).expand(24, 3, 8, 8).contiguous()
    orders = torch.tensor(list(itertools.permutations(range(4))))

    def full(v: float) -> torch.Tensor:
        return torch.full((24,), v)

    params = ops.JitterParams(
        full(1.7), full(0.3), full(1.8), full(0.25), orders, torch.ones(24, dtype=torch.bool)
    )
    out = ops.color_jitter(x, params)
    torch.testing.assert_close(out, _jitter_reference(x, params, _TV_OPS), rtol=0, atol=6e-4)
    flat = out.reshape(24, -1)
    distances = torch.cdist(flat, flat)
    assert distances.max() > 0.5
    # Orders differing only where the result differs: brightness first vs brightness last.
    first, last = orders[:, 0] == 0, orders[:, 3] == 0
    assert (flat[first].mean(0) - flat[last].mean(0)).abs().max() > 0.05


def test_jitter_rejects_wrong_batch() -> None:
    params = ops.sample_jitter_params(4, 0.4, 0.4, 0.4, 0.1, 0.8, _gen(29))
    with pytest.raises(ValueError, match="one value per sample"):
        ops.color_jitter(_images(5, 3, 4, 4), params)


# ---------------------------------------------------------------------------------------
# Grayscale, blur, solarize, normalize


def test_grayscale_weights_and_mask() -> None:
    pixels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.2, 0.4, 0.6]])  # [4, 3]
    x = pixels.T.reshape(1, 3, 2, 2).repeat(2, 1, 1, 1)
    out = ops.to_grayscale(x, torch.tensor([True, False]))
    expected = torch.tensor([0.299, 0.587, 0.114, 0.2 * 0.299 + 0.4 * 0.587 + 0.6 * 0.114])
    for c in range(3):
        torch.testing.assert_close(out[0, c].reshape(-1), expected, rtol=0, atol=1e-7)
    assert torch.equal(out[1], x[1])
    assert out.shape == x.shape
    white = torch.ones(1, 3, 2, 2)
    assert torch.equal(ops.to_grayscale(white), white), "weights sum to 1"


def test_grayscale_close_to_torchvision_and_identity_on_grey() -> None:
    x = _images(3, 3, 5, 5, seed=30)
    ref = TF.rgb_to_grayscale(x, num_output_channels=3)
    torch.testing.assert_close(ops.to_grayscale(x), ref, rtol=0, atol=_LUMA_TOL)
    grey = _images(3, 1, 5, 5, seed=31)
    assert torch.equal(ops.to_grayscale(grey, torch.ones(3, dtype=torch.bool)), grey)


@pytest.mark.parametrize(("channels", "kernel_size"), [(3, 5), (1, 3), (3, 9)])
def test_gaussian_blur_matches_torchvision(channels: int, kernel_size: int) -> None:
    x = _images(5, channels, 11, 14, seed=32)
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.7, 3.0])
    out = ops.gaussian_blur(x, sigma, kernel_size)
    ref = torch.stack(
        [
            TF.gaussian_blur(x[i], [kernel_size, kernel_size], [float(sigma[i])] * 2)
            for i in range(5)
        ]
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_gaussian_blur_mask_constant_image_and_validation() -> None:
    x = _images(4, 3, 8, 8, seed=33)
    mask = torch.tensor([True, False, False, True])
    out = ops.gaussian_blur(x, torch.full((4,), 1.5), 5, mask)
    assert torch.equal(out[~mask], x[~mask])
    assert not torch.allclose(out[mask], x[mask], atol=1e-2)
    flat = torch.full((2, 3, 8, 8), 0.37)
    torch.testing.assert_close(ops.gaussian_blur(flat, torch.tensor([0.3, 2.0]), 7), flat)
    with pytest.raises(ValueError, match="odd"):
        ops.gaussian_blur(x, torch.ones(4), 4)
    with pytest.raises(ValueError, match="too large"):
        ops.gaussian_blur(x, torch.ones(4), 17)


@pytest.mark.parametrize(("side", "expected"), [(224, 23), (96, 9), (32, 3), (28, 3), (10, 3)])
def test_gaussian_kernel_size(side: int, expected: int) -> None:
    assert ops.gaussian_kernel_size(side, 0.1) == expected


def test_solarize_values_mask_and_torchvision() -> None:
    x = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0]).view(1, 1, 1, 5).repeat(2, 1, 1, 1)
    out = ops.solarize(x, 0.5, torch.tensor([True, False]))
    torch.testing.assert_close(out[0].reshape(-1), torch.tensor([0.0, 0.2, 0.5, 0.3, 0.0]))
    assert torch.equal(out[1], x[1])
    y = _images(3, 3, 6, 6, seed=34)
    assert torch.equal(ops.solarize(y, 0.6), TF.solarize(y, 0.6))
    with pytest.raises(ValueError, match="threshold"):
        ops.solarize(y, 128.0)


def test_normalize_values_and_validation() -> None:
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    out = ops.normalize(x, [0.5, 0.5, 0.0], [0.5, 0.25, 2.0])
    torch.testing.assert_close(out.reshape(-1), torch.tensor([-1.0, 0.0, 0.5]))
    one = ops.normalize(x, [0.5], [0.5])
    torch.testing.assert_close(one.reshape(-1), torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="entries"):
        ops.normalize(x, [0.5, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="std"):
        ops.normalize(x, [0.5], [0.0])


def test_sample_mask_and_uniform() -> None:
    assert not ops.sample_mask(1000, 0.0, _gen(35)).any()
    assert ops.sample_mask(1000, 1.0, _gen(35)).all()
    assert abs(float(ops.sample_mask(20000, 0.3, _gen(36)).float().mean()) - 0.3) < 0.015
    u = ops.sample_uniform(20000, 0.1, 2.0, _gen(37))
    assert u.min() >= 0.1 and u.max() < 2.0 and abs(float(u.mean()) - 1.05) < 0.02
    with pytest.raises(ValueError, match="probability"):
        ops.sample_mask(4, -0.1)
