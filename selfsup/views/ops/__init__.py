"""Batched image operations with per-sample random parameters.

Every op works on a whole batch ``[B, C, H, W]`` of floats in ``[0, 1]`` on the training
device, with one parameter per sample, and without Python loops over samples. Each random
op is split in two: a ``sample_*`` function draws the parameters from an explicit
``torch.Generator`` (so tests can check the distributions and runs are reproducible) and
an apply function takes them.

``geometry``: crop boxes, resized crop and flip; ``color``: brightness, contrast, saturation,
hue, jitter, grayscale (as torchvision's, with exact 601 luma); ``filters``: blur, solarize,
normalize; ``common``: the shared checks and the generic ``sample_mask`` / ``sample_uniform``.

Masked ops (``mask[b] == False`` leaves sample ``b`` unchanged) compute the op for the
whole batch and select with ``torch.where``: indexing the selected subset would need its
size on the host, a device synchronisation per op, which costs more on an accelerator
than the wasted arithmetic (at most ``1 / p`` times the work of the op).
"""

from selfsup.views.ops.color import (
    LUMA_WEIGHTS,
    JitterParams,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    hsv_to_rgb,
    rgb_to_hsv,
    sample_jitter_params,
    to_grayscale,
)
from selfsup.views.ops.common import sample_mask, sample_uniform
from selfsup.views.ops.filters import gaussian_blur, gaussian_kernel_size, normalize, solarize
from selfsup.views.ops.geometry import resized_crop, sample_crop_boxes

__all__ = [
    "LUMA_WEIGHTS",
    "JitterParams",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "gaussian_blur",
    "gaussian_kernel_size",
    "hsv_to_rgb",
    "normalize",
    "resized_crop",
    "rgb_to_hsv",
    "sample_crop_boxes",
    "sample_jitter_params",
    "sample_mask",
    "sample_uniform",
    "solarize",
    "to_grayscale",
]
