"""``ViewSpec``: one view's recipe (which random ops, how strong, how likely), validated.

Defaults are SimCLR's ImageNet recipe; ``recipes`` holds the per-method presets and
``transforms`` applies specs to a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from selfsup.views import ops

__all__ = ["ViewSpec"]


@dataclass(frozen=True)
class ViewSpec:
    """One view's recipe. Defaults = SimCLR ImageNet recipe (REFERENCE.md).

    Attributes:
        size: output side in pixels.
        crop_scale: range of the crop's area as a fraction of the image, within (0, 1].
        crop_ratio: range of the crop's aspect ratio w / h (sampled log-uniformly).
        flip_p: probability of a horizontal flip.
        jitter_p: probability of colour jitter.
        brightness, contrast, saturation: jitter strengths s >= 0; factors U[max(0, 1-s), 1+s].
        hue: hue jitter strength in turns, in [0, 0.5]; shift U[-hue, hue].
        gray_p: probability of converting to grey (identity on 1-channel data).
        blur_p: probability of Gaussian blur.
        blur_sigma: range of the blur's standard deviation in pixels.
        blur_kernel_fraction: kernel side as a fraction of ``size`` (made odd, at least 3).
        solarize_p: probability of solarisation.
        solarize_threshold: pixels >= this value (in [0, 1]) are inverted.
    """

    size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1  # kernel side ~10% of the view side, odd, >= 3
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        # Accept lists (as YAML gives them) for the range fields; store hashable tuples.
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    @property
    def blur_kernel_size(self) -> int:
        """Odd blur kernel side: ``blur_kernel_fraction * size`` rounded down to odd, >= 3."""
        return ops.gaussian_kernel_size(self.size, self.blur_kernel_fraction)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field outside its valid range."""
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"ViewSpec.size must be a positive int (pixels), got {self.size!r}")
        _check_range(
            self.crop_scale, "crop_scale", 0.0, 1.0, "(0.08, 1.0) for SimCLR", open_low=True
        )
        _check_range(self.crop_ratio, "crop_ratio", 0.0, math.inf, "(3/4, 4/3)", open_low=True)
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"ViewSpec.{name} is a probability and must lie in [0, 1], got {value}"
                )
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(
                    f"ViewSpec.{name} is a jitter strength and must be a finite number >= 0, "
                    f"got {value}; SimCLR uses 0.8 * colour strength"
                )
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(
                f"ViewSpec.hue is a shift in turns and must lie in [0, 0.5], got {self.hue}; "
                "SimCLR uses 0.2 * colour strength"
            )
        _check_range(self.blur_sigma, "blur_sigma", 0.0, math.inf, "(0.1, 2.0)", open_low=True)
        if not 0.0 < self.blur_kernel_fraction <= 1.0:
            raise ValueError(
                f"ViewSpec.blur_kernel_fraction must lie in (0, 1], got "
                f"{self.blur_kernel_fraction}; SimCLR uses 0.1 (kernel ~10% of the view side)"
            )
        if self.blur_p > 0 and self.blur_kernel_size // 2 >= self.size:
            raise ValueError(
                f"ViewSpec.size={self.size} is too small for a blur kernel of "
                f"{self.blur_kernel_size} pixels; use size >= 2 or set blur_p=0"
            )
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(
                f"ViewSpec.solarize_threshold must lie in [0, 1] (pixel values are floats in "
                f"[0, 1]), got {self.solarize_threshold}; BYOL uses 0.5"
            )


def _check_range(
    value: tuple[float, float], name: str, low: float, high: float, example: str, open_low: bool
) -> None:
    lower_ok = (lambda v: v > low) if open_low else (lambda v: v >= low)
    ok = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        and lower_ok(value[0])
        and value[0] <= value[1] <= high
    )
    if not ok:
        bound = "(" if open_low else "["
        raise ValueError(
            f"ViewSpec.{name} must be a (min, max) pair with min <= max inside "
            f"{bound}{low}, {high}], got {value!r}; e.g. {example}"
        )
