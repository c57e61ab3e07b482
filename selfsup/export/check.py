"""Prove an exported file computes the in-library encoder's features, within a tolerance."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from selfsup.artifact import read_export_metadata
from selfsup.export.formats import runner

__all__ = ["DEFAULT_TOLERANCE", "ExportCheck", "ExportCheckError", "check_export"]

DEFAULT_TOLERANCE = 1e-4
CHECK_SEED = 0  # seed of the random check images (and of the traced example)


class ExportCheckError(RuntimeError):
    """The exported model's features differ from the in-library encoder's beyond the tolerance."""


@dataclass(frozen=True)
class ExportCheck:
    """Exported vs in-library features on the same random images."""

    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    feature_scale: float  # max |feature| of the in-library encoder
    tolerance: float  # relative to feature_scale

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.feature_scale, torch.finfo(torch.float32).tiny)

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_abs_diff) and self.relative_diff <= self.tolerance


def check_export(
    path: Path,
    fmt: str,
    reference: Callable[[Tensor], Tensor],
    meta: dict[str, Any],
    tolerance: float = DEFAULT_TOLERANCE,
    batch_size: int = 8,
) -> ExportCheck:
    """Compare the artefact at ``path`` with ``reference`` (uint8 images -> features).

    Random uint8 images of the exported shape go to ``reference`` as they are and to the
    artefact as ``images / 255``; batches of ``batch_size`` and of 1 are compared.
    Raises :class:`ExportCheckError` above ``tolerance * max |reference features|``.
    """
    stored = read_export_metadata(path, fmt)
    if stored != meta:
        raise ExportCheckError(f"the metadata read back from {path} differs from the one written")
    channels, size = int(meta["in_channels"]), int(meta["image_size"])
    gen = torch.Generator().manual_seed(CHECK_SEED)
    images = torch.randint(0, 256, (batch_size, channels, size, size), generator=gen)
    images = images.to(torch.uint8)  # [N, C, S, S]
    run = runner(path, fmt)
    max_diff, scale = 0.0, 0.0
    sizes = (batch_size, 1)
    for n in sizes:
        expected = reference(images[:n]).float()  # [n, D]
        got = run(images[:n].float() / 255).float()  # [n, D]
        if got.shape != expected.shape:
            raise ExportCheckError(
                f"the exported {fmt} model returned {tuple(got.shape)} for a batch of {n}, "
                f"the encoder {tuple(expected.shape)}; nothing was written"
            )
        max_diff = max(max_diff, (got - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    result = ExportCheck(sizes, max_diff, scale, tolerance)
    if not result.passed:
        raise ExportCheckError(
            f"the exported {fmt} model differs from the selfsup encoder by up to "
            f"{result.max_abs_diff:.3g} ({result.relative_diff:.3g} of the feature scale "
            f"{scale:.3g}), above the tolerance {tolerance:g}; nothing was written. Try another "
            "--format, or raise --tolerance if that difference is acceptable"
        )
    return result
