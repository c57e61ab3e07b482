"""Filters: per-sample Gaussian blur, solarize, and the per-channel normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.views.ops.common import _check_images, _check_mask, _check_per_sample, _where_mask

__all__ = ["gaussian_blur", "gaussian_kernel_size", "normalize", "solarize"]


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
