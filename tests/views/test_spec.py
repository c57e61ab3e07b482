"""ViewSpec: SimCLR's defaults, validation naming the field, re-validation on replace."""

from __future__ import annotations

import dataclasses
import re

import pytest

from selfsup.views import ViewSpec


def test_viewspec_defaults_are_simclr_imagenet_recipe() -> None:
    spec = ViewSpec()
    assert (spec.size, spec.crop_scale, spec.crop_ratio) == (224, (0.08, 1.0), (3 / 4, 4 / 3))
    assert (spec.flip_p, spec.jitter_p, spec.gray_p, spec.blur_p, spec.solarize_p) == (
        0.5,
        0.8,
        0.2,
        0.5,
        0.0,
    )
    assert (spec.brightness, spec.contrast, spec.saturation, spec.hue) == (0.8, 0.8, 0.8, 0.2)
    assert spec.blur_sigma == (0.1, 2.0)
    assert spec.blur_kernel_size == 23  # 10% of 224 = 22.4 -> 23, as SimCLR's 2 * (22 // 2) + 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 0),
        ("size", 32.0),
        ("crop_scale", (0.5, 0.2)),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.5, 1.5)),
        ("crop_ratio", (0.0, 1.0)),
        ("crop_ratio", (2.0, 1.0)),
        ("flip_p", 1.5),
        ("jitter_p", -0.1),
        ("gray_p", 2.0),
        ("blur_p", -1.0),
        ("solarize_p", 1.01),
        ("brightness", -0.1),
        ("contrast", float("nan")),
        ("saturation", float("inf")),
        ("hue", 0.6),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_sigma", (2.0, 1.0)),
        ("blur_kernel_fraction", 0.0),
        ("solarize_threshold", 128.0),
    ],
)
def test_viewspec_rejects_bad_values_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"ViewSpec.{field}")) as info:
        ViewSpec(**{field: value})  # type: ignore[arg-type]
    assert "must" in str(info.value)


def test_viewspec_rejects_blur_on_a_one_pixel_view_and_replace_revalidates() -> None:
    with pytest.raises(ValueError, match="blur_p=0"):
        ViewSpec(size=1)
    assert ViewSpec(size=1, blur_p=0.0).size == 1
    with pytest.raises(ValueError, match=r"ViewSpec\.hue"):
        dataclasses.replace(ViewSpec(), hue=1.0)
