"""MultiViewTransform and EvalTransform: shapes, exact plain views, per-op effects, seeding."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF

from selfsup.views import (
    EvalTransform,
    MultiViewTransform,
    ViewSpec,
    simclr_small_view,
    simclr_view,
)
from selfsup.views.ops import gaussian_blur

# A view that only converts and normalises: whole-image crop at the input size, no random op.
_PLAIN = dict(
    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0
)


def _uint8(batch: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, side, side), generator=g, dtype=torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------
# MultiViewTransform


def test_multiview_shapes_dtypes_and_different_sizes() -> None:
    specs = [simclr_view(32), simclr_view(32), simclr_view(16, crop_scale=(0.05, 0.4))]
    transform = MultiViewTransform(specs, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    assert transform.num_views == 3
    views = transform(_uint8(6, 3, 40), _gen(0))
    assert [tuple(v.shape) for v in views] == [(6, 3, 32, 32), (6, 3, 32, 32), (6, 3, 16, 16)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in views)


def test_plain_view_is_exactly_normalised_input() -> None:
    images = _uint8(4, 3, 12)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.125]
    (view,) = MultiViewTransform([ViewSpec(size=12, **_PLAIN)], mean, std)(images, _gen(1))
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std
    ).view(1, 3, 1, 1)
    torch.testing.assert_close(view, expected, rtol=0, atol=1e-5)
    flipped = MultiViewTransform([ViewSpec(size=12, **{**_PLAIN, "flip_p": 1.0})], mean, std)
    torch.testing.assert_close(flipped(images, _gen(1))[0], expected.flip(-1), rtol=0, atol=1e-5)


def test_probability_one_ops_reach_every_sample() -> None:
    images = _uint8(8, 3, 10)
    x = images.float() / 255
    solar = ViewSpec(size=10, **{**_PLAIN, "solarize_p": 1.0, "solarize_threshold": 0.0})
    (view,) = MultiViewTransform([solar], [0.0], [1.0])(images, _gen(2))
    torch.testing.assert_close(view, 1 - x, rtol=0, atol=1e-6)
    gray = ViewSpec(size=10, **{**_PLAIN, "gray_p": 1.0})
    (view,) = MultiViewTransform([gray], [0.0], [1.0])(images, _gen(3))
    assert torch.equal(view[:, 0], view[:, 1]) and torch.equal(view[:, 1], view[:, 2])
    # Blur with a fixed sigma: the view equals the blur op applied to every sample.
    blur = ViewSpec(size=10, **{**_PLAIN, "blur_p": 1.0, "blur_sigma": (1.3, 1.3)})
    (view,) = MultiViewTransform([blur], [0.0], [1.0])(images, _gen(4))
    expected = gaussian_blur(x, torch.full((8,), 1.3), blur.blur_kernel_size)
    torch.testing.assert_close(view, expected, rtol=0, atol=1e-5)


def test_jitter_probability_one_changes_every_sample() -> None:
    images = _uint8(32, 3, 10)
    x = images.float() / 255
    jitter_all = ViewSpec(size=10, **{**_PLAIN, "jitter_p": 1.0})
    (view,) = MultiViewTransform([jitter_all], [0.0], [1.0])(images, _gen(5))
    changed = (view - x).abs().flatten(1).amax(dim=1) > 1e-3
    assert changed.all()


def test_same_seed_reproduces_views_and_views_differ() -> None:
    transform = MultiViewTransform([simclr_view(24), simclr_view(24)], [0.5], [0.25])
    images = _uint8(8, 3, 28)
    a = transform(images, _gen(7))
    b = transform(images, _gen(7))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    c = transform(images, _gen(8))
    assert not torch.allclose(a[0], c[0])
    # Two views of the same image differ, sample by sample.
    per_sample = (a[0] - a[1]).abs().flatten(1).amax(dim=1)
    assert (per_sample > 0.1).all()


def test_grey_input_with_full_simclr_recipe() -> None:
    spec = dataclasses.replace(simclr_view(32), jitter_p=1.0, gray_p=1.0, blur_p=1.0)
    transform = MultiViewTransform([spec, simclr_view(32)], mean=[0.5], std=[0.25])
    views = transform(_uint8(16, 1, 28), _gen(9))
    for v in views:
        assert v.shape == (16, 1, 32, 32) and v.dtype == torch.float32
        assert torch.isfinite(v).all()
        # Normalised [0, 1] pixels: within [(0 - 0.5) / 0.25, (1 - 0.5) / 0.25] = [-2, 2].
        assert v.min() >= -2 - 1e-5 and v.max() <= 2 + 1e-5


def test_small_grey_batch_two_views() -> None:
    # The benchmark case: Fashion-MNIST-sized batch to two 32x32 views.
    transform = MultiViewTransform([simclr_small_view(32)] * 2, mean=[0.286], std=[0.353])
    views = transform(_uint8(256, 1, 28), _gen(10))
    assert [tuple(v.shape) for v in views] == [(256, 1, 32, 32)] * 2


def test_multiview_rejects_bad_inputs() -> None:
    transform = MultiViewTransform([simclr_small_view(16)], mean=[0.5, 0.5, 0.5], std=[0.2] * 3)
    with pytest.raises(ValueError, match="uint8"):
        transform(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="B, C, H, W"):
        transform(_uint8(2, 3, 16)[0])
    with pytest.raises(ValueError, match="channels"):
        transform(_uint8(2, 1, 16))
    with pytest.raises(ValueError, match="at least one"):
        MultiViewTransform([], [0.5], [0.5])
    with pytest.raises(ValueError, match="same number"):
        MultiViewTransform([ViewSpec()], [0.5, 0.5], [0.5])
    with pytest.raises(ValueError, match="std"):
        MultiViewTransform([ViewSpec()], [0.5], [0.0])


# ---------------------------------------------------------------------------------------
# EvalTransform


def test_eval_transform_same_size_only_normalises() -> None:
    images = _uint8(3, 1, 28)
    out = EvalTransform(28, [0.5], [0.5])(images)
    torch.testing.assert_close(out, images.float() / 255 * 2 - 1, rtol=0, atol=1e-6)


def test_eval_transform_resizes_like_torchvision_antialias() -> None:
    images = _uint8(3, 3, 64)
    out = EvalTransform(24, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])(images)
    ref = TF.resize(
        images.float() / 255, [24, 24], interpolation=T.InterpolationMode.BILINEAR, antialias=True
    )
    assert out.shape == (3, 3, 24, 24) and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="size"):
        EvalTransform(0, [0.5], [0.5])
    with pytest.raises(ValueError, match="uint8"):
        EvalTransform(24, [0.5], [0.5])(torch.rand(1, 1, 24, 24))
