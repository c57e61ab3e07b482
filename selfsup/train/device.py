"""Where a run computes and in which precision: ``train.device`` and ``train.precision``."""

from __future__ import annotations

import torch

__all__ = [
    "autocast",
    "cpu_flags",
    "cpu_has_fast_bf16",
    "device_kind",
    "precision_name",
    "resolve_device",
    "resolve_precision",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a named device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name} but CUDA is not available; use train.device=cpu")
    return device


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux); empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next(
                (line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), []
            )
    except OSError:
        return frozenset()
    return frozenset(flags)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX or AVX512-BF16), where bf16 autocast
    runs convolutions about twice as fast as fp32; elsewhere CPU bf16 is emulated and slower."""
    return bool(cpu_flags() & {"amx_bf16", "avx512_bf16"})


def device_kind(device: torch.device) -> str:
    """The kind of machine a measured speed holds for: ``cpu+amx`` for a CPU with AMX tile units
    (Intel Sapphire Rapids and later), ``cpu`` for any other CPU, else the device type (``cuda``,
    ``mps``). The same step's speed-ups differ between the first two: on AMX, bf16 matrix
    products run several times faster, so the memory-bound rest of the step dominates and
    ``torch.compile``'s fusion gains more (bench/RESULTS.md, "compile on an AMX CPU")."""
    if device.type == "cpu" and "amx_bf16" in cpu_flags():
        return "cpu+amx"
    return device.type


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise ValueError("train.precision=fp16 is for GPUs; use bf16 or fp32 on the CPU")
        return torch.float16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """``bfloat16``, ``float16`` or ``fp32`` (no autocast), as logs and reports spell it."""
    return str(dtype).replace("torch.", "") if dtype else "fp32"


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision in ``dtype`` on ``device`` (from :func:`resolve_precision`); None = fp32."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
