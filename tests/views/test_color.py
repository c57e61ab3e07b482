"""Colour ops and jitter against torchvision's per-image functions and NumPy/colorsys references."""

from __future__ import annotations

import colorsys
import itertools

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from selfsup.views import ops
from tests.views.helpers import rand_images, seeded

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
    x = rand_images(8, channels, 10, 14, seed=11)
    factor = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0, 1.3, 1.8, 2.5])
    out = getattr(ops, name)(x, factor)
    torch.testing.assert_close(out, _per_sample_reference(tv_fn, x, factor), rtol=0, atol=atol)


def test_contrast_and_saturation_match_numpy_601_reference() -> None:
    x = rand_images(5, 3, 6, 7, seed=12)
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
    x = rand_images(6, 3, 9, 9, seed=13)
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
    x = rand_images(4, 1, 5, 5, seed=14)
    assert torch.equal(ops.adjust_saturation(x, torch.full((4,), 1.7)), x)
    assert torch.equal(ops.adjust_hue(x, torch.full((4,), 0.3)), x)


def test_colour_ops_reject_bad_inputs() -> None:
    with pytest.raises(ValueError, match="one value per sample"):
        ops.adjust_brightness(rand_images(4, 3, 5, 5), torch.ones(3))
    with pytest.raises(ValueError, match="channels"):
        ops.adjust_contrast(rand_images(4, 2, 5, 5), torch.ones(4))


# ---------------------------------------------------------------------------------------
# Colour jitter


def test_sample_jitter_params_distribution() -> None:
    n = 24000
    p = ops.sample_jitter_params(n, 0.8, 0.4, 1.2, 0.1, 0.8, seeded(20))
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
    assert not ops.sample_jitter_params(500, 0.4, 0.4, 0.4, 0.1, 0.0, seeded(21)).mask.any()
    assert ops.sample_jitter_params(500, 0.4, 0.4, 0.4, 0.1, 1.0, seeded(21)).mask.all()
    with pytest.raises(ValueError, match="hue"):
        ops.sample_jitter_params(4, 0.4, 0.4, 0.4, 0.6, 0.8)
    with pytest.raises(ValueError, match="contrast"):
        ops.sample_jitter_params(4, 0.4, -0.1, 0.4, 0.1, 0.8)
    with pytest.raises(ValueError, match="probability"):
        ops.sample_jitter_params(4, 0.4, 0.4, 0.4, 0.1, 1.5)


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_at_strength_zero_is_identity(channels: int) -> None:
    x = rand_images(16, channels, 8, 8, seed=22)
    params = ops.sample_jitter_params(16, 0.0, 0.0, 0.0, 0.0, 1.0, seeded(23))
    assert torch.equal(ops.color_jitter(x, params), x)
    if channels == 1:  # saturation and hue do nothing to grey images, exactly
        params = ops.sample_jitter_params(16, 0.0, 0.0, 0.9, 0.4, 1.0, seeded(23))
        assert torch.equal(ops.color_jitter(x, params), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_mask_false_leaves_samples_unchanged(channels: int) -> None:
    x = rand_images(16, channels, 8, 8, seed=24)
    params = ops.sample_jitter_params(16, 0.8, 0.8, 0.8, 0.2, 0.5, seeded(25))
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
    params = ops.sample_jitter_params(batch, 0.8, 0.8, 0.8, 0.3, 0.8, seeded(seed))
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
    x = rand_images(48, channels, 7, 9, seed=26)
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
    x = rand_images(1, 3, 8, 8, seed=28).expand(24, 3, 8, 8).contiguous()
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
    params = ops.sample_jitter_params(4, 0.4, 0.4, 0.4, 0.1, 0.8, seeded(29))
    with pytest.raises(ValueError, match="one value per sample"):
        ops.color_jitter(rand_images(5, 3, 4, 4), params)


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
    x = rand_images(3, 3, 5, 5, seed=30)
    ref = TF.rgb_to_grayscale(x, num_output_channels=3)
    torch.testing.assert_close(ops.to_grayscale(x), ref, rtol=0, atol=_LUMA_TOL)
    grey = rand_images(3, 1, 5, 5, seed=31)
    assert torch.equal(ops.to_grayscale(grey, torch.ones(3, dtype=torch.bool)), grey)
