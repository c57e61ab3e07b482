"""Shared plumbing of the batched ops: input checks, per-sample broadcasting, generic sampling.

Checks look at shapes and dtypes only: checking values would synchronise with the device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["sample_mask", "sample_uniform"]

DeviceLike = torch.device | str | None


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
