"""View presets: SimCLR's arguments; BYOL, MoCo v2 and MAE against REFERENCE.md, as sampled.

Expected values are written out by hand from REFERENCE.md (BYOL, MoCo v2, MAE), not derived
from the presets; the sampled checks run the presets through ``MultiViewTransform`` and observe
what reaches the pixels.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from selfsup.views import (
    MultiViewTransform,
    ViewSpec,
    byol_views,
    mae_view,
    moco_v2_view,
    ops,
    simclr_small_view,
    simclr_view,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noise(batch: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, channels, side, side), generator=_gen(seed)).to(
        torch.uint8
    )


def _run(spec: ViewSpec, images: torch.Tensor, seed: int) -> torch.Tensor:
    """One view with identity normalisation, so the output is the [0, 1] pixels."""
    (view,) = MultiViewTransform([spec], mean=[0.0], std=[1.0])(images, _gen(seed))
    return view


def _only_solarize(spec: ViewSpec) -> ViewSpec:
    """``spec`` with every op off except solarize (whole-image crop at the input size)."""
    return dataclasses.replace(
        spec,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        gray_p=0.0,
        blur_p=0.0,
    )


def _changed(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> torch.Tensor:
    """bool ``[B]``: samples whose pixels differ by more than ``atol`` somewhere."""
    return (a - b).abs().flatten(1).amax(dim=1) > atol


# ---------------------------------------------------------------------------------------
# Fields equal REFERENCE.md


def test_byol_views_fields_are_the_reference_values() -> None:
    first, second = byol_views()
    for spec in (first, second):
        assert spec.size == 224
        assert (spec.crop_scale, spec.crop_ratio, spec.flip_p) == ((0.08, 1.0), (3 / 4, 4 / 3), 0.5)
        assert spec.jitter_p == 0.8
        assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.4, 0.4, 0.2, 0.1)
        assert spec.gray_p == 0.2
        assert spec.blur_sigma == (0.1, 2.0)
        assert spec.blur_kernel_size == 23  # official: 224 // 10 = 22 -> odd 23
        assert spec.solarize_threshold == 0.5
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0)
    assert (second.blur_p, second.solarize_p) == (0.1, 0.2)


def test_byol_views_are_asymmetric_only_in_blur_and_solarize() -> None:
    first, second = byol_views(32, crop_scale=(0.2, 1.0))
    a, b = dataclasses.asdict(first), dataclasses.asdict(second)
    assert {k for k in a if a[k] != b[k]} == {"blur_p", "solarize_p"}
    assert first.size == second.size == 32
    assert first.crop_scale == second.crop_scale == (0.2, 1.0)


def test_moco_v2_view_fields_are_the_reference_values() -> None:
    spec = moco_v2_view()
    assert (spec.size, spec.crop_scale, spec.crop_ratio, spec.flip_p) == (
        224,
        (0.2, 1.0),
        (3 / 4, 4 / 3),
        0.5,
    )
    assert spec.jitter_p == 0.8
    assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.4, 0.4, 0.4, 0.1)
    assert (spec.gray_p, spec.blur_p, spec.blur_sigma, spec.solarize_p) == (
        0.2,
        0.5,
        (0.1, 2.0),
        0.0,
    )
    assert moco_v2_view(32).size == 32


def test_mae_view_is_crop_and_flip_only() -> None:
    spec = mae_view(96)
    assert (spec.size, spec.crop_scale, spec.crop_ratio, spec.flip_p) == (
        96,
        (0.2, 1.0),
        (3 / 4, 4 / 3),
        0.5,
    )
    assert (spec.jitter_p, spec.gray_p, spec.blur_p, spec.solarize_p) == (0.0, 0.0, 0.0, 0.0)
    assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.0, 0.0, 0.0, 0.0)


def test_presets_differ_from_simclr_where_the_papers_do() -> None:
    simclr, moco, (byol, _) = simclr_view(), moco_v2_view(), byol_views()
    assert simclr.saturation == 0.8 and moco.saturation == 0.4 and byol.saturation == 0.2
    assert simclr.crop_scale == byol.crop_scale == (0.08, 1.0) != moco.crop_scale


def test_presets_reject_bad_arguments_with_the_fix() -> None:
    with pytest.raises(ValueError, match=r"ViewSpec\.crop_scale"):
        byol_views(32, crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="blur_p=0"):
        byol_views(1)  # a 3-pixel blur kernel does not fit a 1-pixel view
    with pytest.raises(ValueError, match=r"ViewSpec\.size"):
        moco_v2_view(0)
    with pytest.raises(ValueError, match=r"ViewSpec\.size"):
        mae_view(-4)


# ---------------------------------------------------------------------------------------
# Sampled behaviour


def test_byol_first_view_blurs_every_sample_second_about_a_tenth() -> None:
    images = _noise(4000, 3, 16, seed=1)
    first, second = byol_views(16)
    # sigma >= 1 so that a blur is always visible (sigma 0.1 is numerically the identity);
    # the blur probability is the preset's. Without blur, the same seed gives the same
    # crop, flip, jitter and grayscale: the blur draws come after them.
    for spec, expected, tol in ((first, 1.0, 0.0), (second, 0.1, 0.025)):
        spec = dataclasses.replace(spec, blur_sigma=(1.0, 2.0), solarize_p=0.0)
        blurred = _run(spec, images, seed=2)
        plain = _run(dataclasses.replace(spec, blur_p=0.0), images, seed=2)
        fraction = _changed(blurred, plain).double().mean().item()
        assert fraction == pytest.approx(expected, abs=tol)


def test_byol_solarizes_about_a_fifth_of_second_views_and_no_first_view() -> None:
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(5000, 1, 16, 16)
    x = ramp.float() / 255
    solarized = torch.where(x >= 0.5, 1 - x, x)
    first, second = byol_views(16)
    out_first = _run(_only_solarize(first), ramp, seed=3)
    out_second = _run(_only_solarize(second), ramp, seed=3)
    assert not _changed(out_first, x).any()
    hit = _changed(out_second, x)  # [B]
    # Every sample is either the ramp or exactly the solarized ramp.
    assert not _changed(out_second[hit], solarized[hit]).any()
    assert hit.double().mean().item() == pytest.approx(0.2, abs=0.025)


def test_moco_v2_view_turns_about_a_fifth_of_colour_images_grey() -> None:
    # Jitter with saturation 0.4 scales chroma by >= 0.6, so only the grayscale op makes
    # R = G = B; blur and normalisation treat channels alike and keep it.
    images = _noise(4000, 3, 16, seed=4)
    view = _run(moco_v2_view(16), images, seed=5)
    grey = ~_changed(view[:, 0:1], view[:, 1:2], 1e-6) & ~_changed(view[:, 1:2], view[:, 2:3], 1e-6)
    assert grey.double().mean().item() == pytest.approx(0.2, abs=0.025)


def test_mae_view_equals_resized_crop_and_flip_alone() -> None:
    images = _noise(64, 3, 20, seed=6)
    view = _run(mae_view(12), images, seed=7)
    # Independent pipeline from the ops: same draws, no colour op in between.
    g = _gen(7)
    boxes = ops.sample_crop_boxes(64, 20, 20, (0.2, 1.0), (3 / 4, 4 / 3), g)
    flip = ops.sample_mask(64, 0.5, g)
    expected = ops.resized_crop(images.float() / 255, boxes, 12, flip)
    torch.testing.assert_close(view, expected, rtol=0, atol=1e-6)
    # The crop keeps at least a fifth of the image area.
    area = boxes[:, 2] * boxes[:, 3] / 400
    assert area.min() >= 0.2 - 0.05  # rounding of w, h to whole pixels


def test_presets_run_on_grey_small_images() -> None:
    images = _noise(16, 1, 28, seed=8)
    specs = [*byol_views(16), moco_v2_view(16), mae_view(16)]
    views = MultiViewTransform(specs, mean=[0.286], std=[0.353])(images, _gen(9))
    assert [tuple(v.shape) for v in views] == [(16, 1, 16, 16)] * 4
    assert all(torch.isfinite(v).all() for v in views)


def test_simclr_presets() -> None:
    half = simclr_view(size=32, color_strength=0.5, blur=False, crop_scale=(0.2, 1.0))
    assert (half.brightness, half.contrast, half.saturation) == (0.4, 0.4, 0.4)
    assert half.hue == pytest.approx(0.1)
    assert (half.blur_p, half.size, half.crop_scale) == (0.0, 32, (0.2, 1.0))
    assert simclr_view(blur=True).blur_p == 0.5
    assert simclr_small_view() == simclr_view(size=32, color_strength=0.5, blur=False)
    assert simclr_view() == ViewSpec()
    from_yaml = ViewSpec(crop_scale=[0.2, 1.0], blur_sigma=[0.1, 2.0])  # type: ignore[arg-type]
    assert from_yaml.crop_scale == (0.2, 1.0) and from_yaml.blur_sigma == (0.1, 2.0)
    with pytest.raises(ValueError, match="color_strength"):
        simclr_view(color_strength=3.0)
