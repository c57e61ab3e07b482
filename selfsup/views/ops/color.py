"""Colour: brightness, contrast, saturation, hue, colour jitter in a per-sample order, grayscale.

These reproduce ``torchvision.transforms.v2.functional`` on float images, sample by sample,
except that luma uses the exact ITU-R 601 weights ``(0.299, 0.587, 0.114)`` (torchvision uses
0.2989 for red; the two differ by at most 1e-4 per pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selfsup.views.ops.common import (
    DeviceLike,
    _check_images,
    _check_mask,
    _check_per_sample,
    _check_probability,
    _per_sample,
    _resolve_device,
    _where_mask,
    sample_mask,
    sample_uniform,
)

__all__ = [
    "LUMA_WEIGHTS",
    "JitterParams",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "hsv_to_rgb",
    "rgb_to_hsv",
    "sample_jitter_params",
    "to_grayscale",
]

# ITU-R BT.601 luma weights for (R, G, B); they sum to 1, so grey stays grey.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

# Operation ids used in ``JitterParams.order`` (the order torchvision's ColorJitter uses).
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


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
