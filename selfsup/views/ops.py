"""Batched image operations with per-sample random parameters.

Every op works on a whole batch ``[B, C, H, W]`` of floats in ``[0, 1]`` on the training
device, with one parameter per sample, and without Python loops over samples. Each random
op is split in two: a ``sample_*`` function draws the parameters from an explicit
``torch.Generator`` (so tests can check the distributions and runs are reproducible) and
an apply function takes them.

Colour ops reproduce ``torchvision.transforms.v2.functional`` on float images, sample by
sample, except that luma uses the exact ITU-R 601 weights ``(0.299, 0.587, 0.114)``
(torchvision uses 0.2989 for red; the two differ by at most 1e-4 per pixel).

Masked ops (``mask[b] == False`` leaves sample ``b`` unchanged) compute the op for the
whole batch and select with ``torch.where``: indexing the selected subset would need its
size on the host, a device synchronisation per op, which costs more on an accelerator
than the wasted arithmetic (at most ``1 / p`` times the work of the op).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

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

# ITU-R BT.601 luma weights for (R, G, B); they sum to 1, so grey stays grey.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

# Operation ids used in ``JitterParams.order`` (the order torchvision's ColorJitter uses).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3

_NUM_CROP_ATTEMPTS = 10

DeviceLike = torch.device | str | None


# ---------------------------------------------------------------------------------------
# Input checks (shapes and dtypes only: checking values would synchronise with the device)


def _check_images(x: Tensor, name: str = "images") -> None:
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be a batch [B, C, H, W], got shape {tuple(x.shape)}; "
            "add a batch dimension with x.unsqueeze(0) for a single image"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be floating point in [0, 1], got {x.dtype}; "
            "convert uint8 images with x.float() / 255"
        )


def _check_per_sample(param: Tensor, batch_size: int, name: str) -> None:
    if param.shape != (batch_size,):
        raise ValueError(
            f"{name} must have one value per sample, shape [{batch_size}], got "
            f"{tuple(param.shape)}; draw it with batch_size={batch_size}"
        )


def _check_mask(mask: Tensor | None, batch_size: int) -> None:
    if mask is None:
        return
    _check_per_sample(mask, batch_size, "mask")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor, got {mask.dtype}; build it with a comparison "
            "such as torch.rand(B) < p (see sample_mask)"
        )


def _check_probability(p: float, name: str) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {p}")


def _per_sample(param: Tensor, x: Tensor) -> Tensor:
    """``[B]`` -> ``[B, 1, 1, 1]`` in the dtype and on the device of ``x``."""
    return param.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _where_mask(mask: Tensor | None, changed: Tensor, x: Tensor) -> Tensor:
    if mask is None:
        return changed
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), changed, x)


def _resolve_device(generator: torch.Generator | None, device: DeviceLike) -> torch.device:
    if device is not None:
        return torch.device(device)
    if generator is not None:
        return generator.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------
# Generic parameter sampling


def sample_mask(
    batch_size: int,
    p: float,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
) -> Tensor:
    """Bernoulli(``p``) apply mask, bool ``[B]``. ``p = 0`` gives all False, ``p = 1`` all True."""
    _check_probability(p, "p")
    device = _resolve_device(generator, device)
    return torch.rand(batch_size, generator=generator, device=device) < p


def sample_uniform(
    batch_size: int,
    low: float,
    high: float,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
) -> Tensor:
    """``U[low, high)`` per sample, float32 ``[B]`` (exactly ``low`` when ``low == high``)."""
    if not low <= high:
        raise ValueError(f"need low <= high for a uniform range, got ({low}, {high}); swap them")
    device = _resolve_device(generator, device)
    u = torch.rand(batch_size, generator=generator, device=device)
    return low + (high - low) * u


# ---------------------------------------------------------------------------------------
# Geometry: random resized crop + horizontal flip


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


# ---------------------------------------------------------------------------------------
# Colour


def _luma(x: Tensor) -> Tensor:
    """Grey level ``[B, 1, H, W]``: the image itself when C == 1, else the 601 luma."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    wr, wg, wb = LUMA_WEIGHTS
    return torch.add(r * wr, g, alpha=wg).add_(b, alpha=wb).unsqueeze(1)


def _check_color_channels(x: Tensor) -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(
            f"colour ops need 1 (grey) or 3 (RGB) channels, got {x.shape[1]}; "
            "convert the images to grey or RGB first"
        )


def _blend(x: Tensor, alpha: Tensor, beta: Tensor, gamma: Tensor) -> Tensor:
    r"""Per sample :math:`\text{clip}(\alpha x + \beta\, L(x) + \gamma\, \overline{L(x)}, 0, 1)`.

    :math:`L` is the luma and :math:`\overline{L}` its image mean. Brightness, contrast and
    saturation are all of this form, so one pass applies a different one to each sample.
    ``alpha``, ``beta``, ``gamma``: ``[B, 1, 1, 1]``.
    """
    luma = _luma(x)  # [B, 1, H, W]
    mean = luma.mean(dim=(1, 2, 3), keepdim=True)  # [B, 1, 1, 1]
    grey_part = torch.addcmul(gamma * mean, beta, luma)  # [B, 1, H, W]: the C-independent terms
    return torch.addcmul(grey_part, alpha, x).clamp_(0.0, 1.0)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    r"""Per-sample brightness: :math:`\text{clip}(f_b\, x, 0, 1)`. ``factor``: ``[B]``, >= 0."""
    _check_images(x)
    _check_color_channels(x)
    _check_per_sample(factor, x.shape[0], "factor")
    return (x * _per_sample(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    r"""Per-sample contrast: :math:`\text{clip}(f\, x + (1 - f)\, \overline{L(x)}, 0, 1)`.

    :math:`\overline{L(x)}` is the mean grey level of the sample. ``factor``: ``[B]``, >= 0.
    """
    _check_images(x)
    _check_color_channels(x)
    _check_per_sample(factor, x.shape[0], "factor")
    f = _per_sample(factor, x)
    return _blend(x, f, torch.zeros_like(f), 1 - f)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    r"""Per-sample saturation: :math:`\text{clip}(f\, x + (1 - f)\, L(x), 0, 1)`; identity for C == 1."""
    _check_images(x)
    _check_color_channels(x)
    _check_per_sample(factor, x.shape[0], "factor")
    if x.shape[1] == 1:
        return x.clone()
    f = _per_sample(factor, x)
    return _blend(x, f, 1 - f, torch.zeros_like(f))


def _hue_value_chroma(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""RGB ``[B, 3, H, W]`` -> hue in sextants (in [-1, 5)), value and chroma, each ``[B, H, W]``.

    :math:`V = \max(R, G, B)`, :math:`C = V - \min(R, G, B)`, and the hue is
    :math:`(G - B) / C`, :math:`(B - R) / C + 2` or :math:`(R - G) / C + 4` when the maximum
    is R, G or B (in that priority); grey pixels (C = 0) get hue 0.
    """
    r, g, b = x.unbind(dim=1)  # [B, H, W] each
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    # Where C = 0 the numerators below are exactly 0, so any positive divisor gives hue 0.
    inv_chroma = chroma.clamp_min(torch.finfo(x.dtype).tiny).reciprocal_()
    hue_b = (r - g).mul_(inv_chroma).add_(4.0)
    hue_gb = torch.where(value == g, (b - r).mul_(inv_chroma).add_(2.0), hue_b)
    hue = torch.where(value == r, (g - b).mul_(inv_chroma), hue_gb)
    return hue, value, chroma


def _rgb_from_hue_value_chroma(hue: Tensor, value: Tensor, chroma: Tensor) -> Tensor:
    r"""Inverse of :func:`_hue_value_chroma`; inputs ``[B, H, W]`` (hue in sextants, any range).

    Closed form per channel :math:`n = 5, 3, 1` for R, G, B: with
    :math:`k = (n + H) \bmod 6`, the channel is :math:`V - C\, \text{clip}(\min(k, 4 - k), 0, 1)`.
    """
    n = torch.arange(5, 0, -2, dtype=hue.dtype, device=hue.device).view(1, 3, 1, 1)  # 5, 3, 1
    k = n + hue.unsqueeze(1)  # [B, 3, H, W]
    k = k.sub_(torch.floor(k * (1 / 6)).mul_(6.0))  # mod 6, cheaper than remainder on CPU
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return value.unsqueeze(1) - chroma.unsqueeze(1) * ramp


def rgb_to_hsv(x: Tensor) -> Tensor:
    r"""RGB ``[B, 3, H, W]`` in [0, 1] -> HSV ``[B, 3, H, W]``, all channels in [0, 1].

    Hue in turns (0 for grey pixels), :math:`S = C / V` (0 when :math:`V = 0`), :math:`V = \max`.
    """
    _check_images(x)
    hue, value, chroma = _hue_value_chroma(x)
    sat = chroma / value.clamp_min(torch.finfo(x.dtype).tiny)
    hue = torch.remainder(hue * (1 / 6), 1.0)
    return torch.stack((hue, sat, value), dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV ``[B, 3, H, W]`` (hue in turns) -> RGB ``[B, 3, H, W]``; inverse of :func:`rgb_to_hsv`."""
    _check_images(hsv, "hsv")
    hue, sat, value = hsv.unbind(dim=1)  # [B, H, W] each
    return _rgb_from_hue_value_chroma(6.0 * hue, value, value * sat)


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Hue rotation of RGB ``x`` by ``shift`` turns, ``[B, 1, 1, 1]``; V and C are unchanged."""
    hue, value, chroma = _hue_value_chroma(x)  # [B, H, W] each
    return _rgb_from_hue_value_chroma(hue + 6.0 * shift.squeeze(1), value, chroma)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Per-sample hue rotation by ``shift[b]`` turns (in [-0.5, 0.5]) in HSV; identity for C == 1."""
    _check_images(x)
    _check_color_channels(x)
    _check_per_sample(shift, x.shape[0], "shift")
    if x.shape[1] == 1:
        return x.clone()
    return _shift_hue(x, _per_sample(shift, x))


@dataclass(frozen=True)
class JitterParams:
    """Per-sample colour-jitter parameters (all tensors have batch size B).

    Attributes:
        brightness: factors ``[B]``.
        contrast: factors ``[B]``.
        saturation: factors ``[B]``.
        hue: shifts in turns ``[B]``.
        order: int64 ``[B, 4]``; row b lists the op ids (0 brightness, 1 contrast,
            2 saturation, 3 hue) in the order sample b applies them.
        mask: bool ``[B]``; False leaves the sample unchanged.
    """

    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor
    mask: Tensor


def sample_jitter_params(
    batch_size: int,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    generator: torch.Generator | None = None,
    device: DeviceLike = None,
) -> JitterParams:
    r"""Draw colour-jitter parameters, as torchvision ``ColorJitter`` inside ``RandomApply(p)``.

    Factors :math:`\sim U[\max(0, 1 - s), 1 + s]` for brightness, contrast and saturation;
    hue shift :math:`\sim U[-h, h]`; the order is a uniform random permutation of the four
    ops per sample (argsort of i.i.d. uniforms); the mask is True with probability ``p``.
    """
    for name, value in (
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ):
        if not value >= 0:
            raise ValueError(
                f"{name} jitter strength must be >= 0, got {value}; SimCLR uses 0.8 * s"
            )
    if not 0.0 <= hue <= 0.5:
        raise ValueError(
            f"hue jitter strength must lie in [0, 0.5] turns, got {hue}; SimCLR uses 0.2 * s"
        )
    _check_probability(p, "p")
    device = _resolve_device(generator, device)

    def factor(strength: float) -> Tensor:
        return sample_uniform(
            batch_size, max(0.0, 1.0 - strength), 1.0 + strength, generator, device
        )

    brightness_f = factor(brightness)
    contrast_f = factor(contrast)
    saturation_f = factor(saturation)
    hue_shift = sample_uniform(batch_size, -hue, hue, generator, device)
    order = torch.rand(batch_size, 4, generator=generator, device=device).argsort(dim=1)
    mask = sample_mask(batch_size, p, generator, device)
    return JitterParams(brightness_f, contrast_f, saturation_f, hue_shift, order, mask)


def _blend_coefficients(params: JitterParams, steps: Tensor, x: Tensor) -> Tensor:
    """Blend coefficients ``[B, S, 3]`` = (alpha, beta, gamma) for op id ``steps[b, k]``.

    Hue (op id 3) maps to the identity (1, 0, 0) here, and so does saturation when C == 1.
    """
    b, c, s = params.brightness, params.contrast, params.saturation  # [B] each
    one, zero = torch.ones_like(b), torch.zeros_like(b)
    if x.shape[1] == 1:  # saturation of a grey image is the identity (as torchvision)
        s = one
    # Rows: brightness, contrast, saturation, hue; columns: alpha, beta, gamma.
    table = torch.stack(
        (
            torch.stack((b, zero, zero), dim=1),
            torch.stack((c, zero, 1 - c), dim=1),
            torch.stack((s, 1 - s, zero), dim=1),
            torch.stack((one, zero, zero), dim=1),
        ),
        dim=1,
    ).to(device=x.device, dtype=x.dtype)  # [B, 4, 3]
    return table.gather(1, steps.unsqueeze(2).expand(-1, -1, 3))  # [B, S, 3]


def _blend_steps(x: Tensor, coefficients: Tensor) -> Tensor:
    """Apply :func:`_blend` once per step ``k`` with ``coefficients[:, k]`` (``[B, S, 3]``)."""
    for k in range(coefficients.shape[1]):
        alpha, beta, gamma = (col.view(-1, 1, 1, 1) for col in coefficients[:, k].unbind(dim=1))
        x = _blend(x, alpha, beta, gamma)
    return x


def color_jitter(x: Tensor, params: JitterParams) -> Tensor:
    """Brightness, contrast, saturation and hue, each sample in its own order.

    Brightness, contrast and saturation share one form (:func:`_blend`), so a single pass
    applies whichever one each sample has at a given step. The expensive hue rotation is
    done once for the whole batch: each sample's sequence is aligned on its hue step, giving
    three blend passes before the hue pass and three after (a sample with hue at position
    ``p`` fills the last ``p`` slots before and the first ``3 - p`` after; its other slots
    are identities). For C == 1 saturation and hue are identities and four passes suffice.
    Samples with ``mask`` False, and factors at strength 0, are returned exactly unchanged.
    """
    _check_images(x)
    _check_color_channels(x)
    batch = x.shape[0]
    for name in ("brightness", "contrast", "saturation", "hue", "mask"):
        _check_per_sample(getattr(params, name), batch, name)
    if params.order.shape != (batch, 4):
        raise ValueError(
            f"order must have shape [{batch}, 4], got {tuple(params.order.shape)}; "
            "draw the parameters with sample_jitter_params for this batch"
        )
    mask = params.mask.to(x.device).unsqueeze(1)  # [B, 1]
    order = params.order.to(x.device)  # [B, 4]
    identity = torch.full_like(order[:, :1], HUE)  # [B, 1]; hue rows are identity blends

    if x.shape[1] == 1:
        steps = torch.where(mask, order, identity)  # [B, 4]
        return _blend_steps(x, _blend_coefficients(params, steps, x))

    hue_pos = (order == HUE).to(torch.uint8).argmax(dim=1, keepdim=True)  # [B, 1]
    # Slot k in 0..6 holds position hue_pos + k - 3; slot 3 is the hue step itself (its blend
    # coefficients are the identity), so slots 0-2 run before the rotation and 4-6 after.
    positions = hue_pos + torch.arange(-3, 4, device=x.device)  # [B, 7]
    valid = (positions >= 0) & (positions <= 3) & mask
    steps = torch.where(valid, order.gather(1, positions.clamp(0, 3)), identity)  # [B, 7]
    coefficients = _blend_coefficients(params, steps, x)  # [B, 7, 3]

    x = _blend_steps(x, coefficients[:, :3])
    rotate = mask.squeeze(1) & (params.hue.to(x.device) != 0)  # [B]
    x = _where_mask(rotate, _shift_hue(x, _per_sample(params.hue, x)), x)
    return _blend_steps(x, coefficients[:, 4:])


def to_grayscale(x: Tensor, mask: Tensor | None = None) -> Tensor:
    r"""Replace selected samples by their luma :math:`0.299 R + 0.587 G + 0.114 B`, keeping C channels.

    Identity for C == 1. ``mask``: bool ``[B]`` (None = every sample).
    """
    _check_images(x)
    _check_color_channels(x)
    _check_mask(mask, x.shape[0])
    if x.shape[1] == 1:
        return x.clone()
    return _where_mask(mask, _luma(x).expand_as(x), x)


# ---------------------------------------------------------------------------------------
# Filters


def gaussian_kernel_size(side: int, fraction: float) -> int:
    """Odd kernel side of about ``fraction * side`` pixels, at least 3 (SimCLR: 10% of the view)."""
    return max(3, 2 * (int(fraction * side) // 2) + 1)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int, mask: Tensor | None = None) -> Tensor:
    r"""Per-sample Gaussian blur, as torchvision ``gaussian_blur`` with ``sigma[b]`` per sample.

    Kernel :math:`k_t \propto \exp(-t^2 / 2\sigma^2)` for integer offsets
    :math:`|t| \le \lfloor K/2 \rfloor`, normalised to sum 1; reflect padding. Separable: one
    horizontal and one vertical grouped convolution over all ``B * C`` channels at once.

    Args:
        x: float ``[B, C, H, W]``.
        sigma: ``[B]`` standard deviations in pixels, > 0.
        kernel_size: odd kernel side ``K``, with ``K // 2 < min(H, W)``.
        mask: optional bool ``[B]``; unselected samples are returned unchanged.
    """
    _check_images(x)
    batch, channels, height, width = x.shape
    _check_per_sample(sigma, batch, "sigma")
    _check_mask(mask, batch)
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be odd and positive, got {kernel_size}; use {max(1, kernel_size + 1)}"
        )
    radius = kernel_size // 2
    if radius >= min(height, width):
        raise ValueError(
            f"kernel_size {kernel_size} is too large for {height}x{width} images (reflect "
            f"padding needs kernel_size // 2 < {min(height, width)}); use a smaller kernel"
        )
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # [K]
    var2 = 2 * sigma.to(device=x.device, dtype=x.dtype).square().unsqueeze(1)  # [B, 1]
    kernel = torch.softmax(-offsets.square() / var2, dim=1)  # [B, K], rows sum to 1
    kernel = kernel.repeat_interleave(channels, dim=0)  # [B*C, K]

    groups = batch * channels
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    padded = padded.reshape(1, groups, height + 2 * radius, width + 2 * radius)
    out = F.conv2d(padded, kernel.view(groups, 1, 1, kernel_size), groups=groups)  # rows
    out = F.conv2d(out, kernel.view(groups, 1, kernel_size, 1), groups=groups)  # columns
    return _where_mask(mask, out.view(batch, channels, height, width), x)


def solarize(x: Tensor, threshold: float, mask: Tensor | None = None) -> Tensor:
    """Invert pixels at or above ``threshold`` (``x >= t -> 1 - x``) in the selected samples."""
    _check_images(x)
    _check_mask(mask, x.shape[0])
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"solarize threshold must lie in [0, 1] for float images, got {threshold}")
    hit = x >= threshold  # [B, C, H, W]
    if mask is not None:
        hit = hit & mask.to(x.device).view(-1, 1, 1, 1)
    return torch.where(hit, 1 - x, x)


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Per-channel ``(x - mean) / std``; ``mean`` and ``std`` have 1 or C entries."""
    _check_images(x)
    channels = x.shape[1]
    if not isinstance(std, Tensor) and not all(s > 0 for s in std):
        raise ValueError(f"std entries must be > 0, got {list(std)}; use the dataset's pixel std")
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1)
    for name, t in (("mean", mean_t), ("std", std_t)):
        if t.numel() not in (1, channels):
            raise ValueError(
                f"{name} needs 1 or {channels} entries for {channels}-channel images, got "
                f"{t.numel()}; pass the dataset's per-channel statistics"
            )
    return (x - mean_t.view(1, -1, 1, 1)) / std_t.view(1, -1, 1, 1)
