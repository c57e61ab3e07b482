"""What every loss shares: float32 math under autocast, and the checks of its arguments."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor


def _full_precision(*tensors: Tensor) -> contextlib.AbstractContextManager[None]:
    """Context that switches autocast off on the tensors' device type (if it has autocast)."""
    device_type = tensors[0].device.type
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _check_tau(temperature: float, hint: str) -> None:
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}; {hint}")


def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"expected {names} of the same shape [N, D], got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; pass one row per image, matched row by row"
        )
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(
            f"{names} must be floating point, got {a.dtype} and {b.dtype}; pass the head "
            "outputs, not labels or indices"
        )
