"""Geometry: random resized crop boxes (torchvision's distribution) and crop + resize + flip."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.views.ops.common import DeviceLike, _check_images, _check_mask, _resolve_device

__all__ = ["resized_crop", "sample_crop_boxes"]

_NUM_CROP_ATTEMPTS = 10


def sample_crop_boxes(
    batch_size: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
) -> Tensor:
    r"""Random crop boxes with torchvision ``RandomResizedCrop``'s distribution.

    Per sample, up to 10 candidates are drawn with area fraction :math:`a \sim U(\text{scale})`
    and aspect ratio :math:`r = e^u,\ u \sim U(\log \text{ratio})`, giving
    :math:`w = \text{round}(\sqrt{a H W r})`, :math:`h = \text{round}(\sqrt{a H W / r})`;
    the first candidate that fits (:math:`0 < w \le W,\ 0 < h \le H`) is placed uniformly
    at an integer position. All 10 candidates are drawn at once for the whole batch. If none
    fits, the box is the central crop, clamped to the ratio range as torchvision does.

    Returns:
        float32 ``[B, 4]`` boxes ``(x0, y0, w, h)`` in pixels (integer-valued).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    if not 0.0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must satisfy 0 < min <= max, got {scale}; e.g. (0.08, 1.0)")
    if not 0.0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}; e.g. (3/4, 4/3)")
    device = _resolve_device(generator, device)
    shape = (batch_size, _NUM_CROP_ATTEMPTS)

    area = float(height * width)
    target_area = area * (
        scale[0] + (scale[1] - scale[0]) * torch.rand(shape, generator=generator, device=device)
    )
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(
        log_lo + (log_hi - log_lo) * torch.rand(shape, generator=generator, device=device)
    )
    w = torch.round(torch.sqrt(target_area * aspect))  # [B, 10]
    h = torch.round(torch.sqrt(target_area / aspect))  # [B, 10]
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # [B, 10]

    # argmax returns the first maximal index: the first valid candidate.
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # [B, 1]
    found = valid.any(dim=1)  # [B]
    w = w.gather(1, first).squeeze(1)  # [B]
    h = h.gather(1, first).squeeze(1)

    u_y = torch.rand(batch_size, generator=generator, device=device)
    u_x = torch.rand(batch_size, generator=generator, device=device)
    # Uniform integer in [0, H - h]; the clamp guards against u * n rounding up to n in float32.
    y0 = torch.minimum(torch.floor(u_y * (height - h + 1)), height - h)
    x0 = torch.minimum(torch.floor(u_x * (width - w + 1)), width - w)

    # Python-scalar fallbacks: no host-to-device copy in the hot path.
    fallback = _central_fallback_box(height, width, ratio)
    columns = (x0, y0, w, h)
    return torch.stack(
        [torch.where(found, col, float(fb)) for col, fb in zip(columns, fallback)], dim=1
    )  # [B, 4]


def _central_fallback_box(
    height: int, width: int, ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """torchvision's fallback: the whole image, or its centre cut to the nearest allowed ratio."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def resized_crop(images: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    r"""Crop each sample to its box, resize to ``size x size`` and optionally mirror it.

    One ``affine_grid`` + ``grid_sample`` (bilinear, ``align_corners=False``) call for the
    whole batch. In normalised coordinates the output point :math:`u \in [-1, 1]` samples the
    input at :math:`x = s_x u + c_x` with :math:`s_x = \pm w / W` (negative when flipped) and
    :math:`c_x = (2 x_0 + w) / W - 1`; the same for :math:`y` without the sign.

    Differences from torchvision ``resized_crop``: no antialiasing when a crop is shrunk
    (bilinear taps only), and pixels at the crop border interpolate with their neighbours
    outside the crop instead of being clamped to the crop (the image border is clamped).

    Args:
        images: float ``[B, C, H, W]``.
        boxes: ``[B, 4]`` boxes ``(x0, y0, w, h)`` in pixels, e.g. from :func:`sample_crop_boxes`.
        size: output side in pixels.
        flip: optional bool ``[B]``; True mirrors that sample left-right.

    Returns:
        ``[B, C, size, size]`` in the dtype of ``images``.
    """
    _check_images(images)
    batch, channels, height, width = images.shape
    if boxes.shape != (batch, 4):
        raise ValueError(
            f"boxes must have shape [{batch}, 4] as (x0, y0, w, h), got {tuple(boxes.shape)}; "
            "draw them with sample_crop_boxes for this batch size"
        )
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    boxes = boxes.to(device=images.device, dtype=images.dtype)
    x0, y0, w, h = boxes.unbind(dim=1)  # [B] each
    scale_x = w / width
    if flip is not None:
        _check_mask(flip, batch)
        scale_x = torch.where(flip.to(images.device), -scale_x, scale_x)
    shift_x = (2 * x0 + w) / width - 1
    scale_y = h / height
    shift_y = (2 * y0 + h) / height - 1
    zeros = torch.zeros_like(scale_x)
    theta = torch.stack(
        (
            torch.stack((scale_x, zeros, shift_x), dim=1),
            torch.stack((zeros, scale_y, shift_y), dim=1),
        ),
        dim=1,
    )  # [B, 2, 3]
    grid = F.affine_grid(theta, [batch, channels, size, size], align_corners=False)  # [B, S, S, 2]
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
