"""Shared by the view-op tests: seeded generators, random images, a two-sample KS statistic."""

from __future__ import annotations

import numpy as np
import torch


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rand_images(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, channels, height, width, generator=seeded(seed))


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: max |ECDF_a - ECDF_b|."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())
