r"""Patches and random masking for masked image modelling (MAE, He et al. 2021).

* :func:`patchify` / :func:`unpatchify`: images ``[B, C, H, W]`` <-> patch rows
  ``[B, L, p*p*C]``, patches in row-major order, each flattened as (row, column, channel) --
  the layout of the official MAE code, so its pixel decoder weights mean the same here.
* :func:`random_masking`: per sample, keep a uniformly random subset of
  ``L_keep = floor(L (1 - r))`` tokens by sorting uniform noise:

.. math::

    \text{ids\_shuffle} = \operatorname{argsort}(u), \; u \sim U[0, 1]^L, \qquad
    \text{ids\_restore} = \operatorname{argsort}(\text{ids\_shuffle})

  the first ``L_keep`` indices of ``ids_shuffle`` are kept; ``ids_restore`` puts a sequence in
  shuffled order back into the original order.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["num_kept", "patchify", "random_masking", "unpatchify"]


def patchify(imgs: Tensor, patch_size: int) -> Tensor:
    """Cut images ``[B, C, H, W]`` into patch rows ``[B, L, p*p*C]``, ``L = (H/p)(W/p)``.

    Example:
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> patchify(x, 2)[0, 1]  # second patch: rows 0-1, columns 2-3
        tensor([2., 3., 6., 7.])
    """
    if imgs.ndim != 4:
        raise ValueError(
            f"patchify expects images [B, C, H, W], got shape {tuple(imgs.shape)}; add the "
            "batch dimension with imgs[None]"
        )
    batch, channels, height, width = imgs.shape
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} is not divisible by patch_size={patch_size}; "
            "resize or crop to a multiple of the patch size"
        )
    p = patch_size
    rows, cols = height // p, width // p
    x = imgs.reshape(batch, channels, rows, p, cols, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, rows, cols, p, p, C]
    return x.reshape(batch, rows * cols, p * p * channels)


def unpatchify(
    x: Tensor, patch_size: int, channels: int, grid: tuple[int, int] | None = None
) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, L, p*p*C]`` -> images ``[B, C, rows*p, cols*p]``.

    ``grid = (rows, cols)`` of patches; ``None`` means a square grid (``L`` must be a square).

    Example:
        >>> imgs = torch.randn(2, 3, 8, 12)
        >>> torch.equal(unpatchify(patchify(imgs, 4), 4, 3, grid=(2, 3)), imgs)
        True
    """
    if x.ndim != 3:
        raise ValueError(f"unpatchify expects patches [B, L, p*p*C], got {tuple(x.shape)}")
    batch, length, dim = x.shape
    p = patch_size
    if p < 1 or channels < 1 or dim != p * p * channels:
        raise ValueError(
            f"patch rows have {dim} values but patch_size={p} and channels={channels} need "
            f"{p * p * channels}; pass the patch size and channel count used by patchify"
        )
    if grid is None:
        side = math.isqrt(length)
        if side * side != length:
            raise ValueError(f"{length} patches do not form a square grid; pass grid=(rows, cols)")
        grid = (side, side)
    rows, cols = grid
    if rows * cols != length:
        raise ValueError(f"grid {grid} has {rows * cols} patches but the input has {length}")
    out = x.reshape(batch, rows, cols, p, p, channels)
    out = out.permute(0, 5, 1, 3, 2, 4)  # [B, C, rows, p, cols, p]
    return out.reshape(batch, channels, rows * p, cols * p)


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Visible tokens per sample: ``floor(L * (1 - mask_ratio))`` (MAE's ``len_keep``).

    A tolerance of 1e-6 absorbs binary round-off (``10 * (1 - 0.9)`` is ``0.999...``, which
    plain ``int()`` turns into 0). Refuses ratios outside (0, 1) and ratios that would keep
    no token or mask none.

    Example:
        >>> num_kept(196, 0.75), num_kept(49, 0.75), num_kept(10, 0.9)
        (49, 12, 1)
    """
    if not (isinstance(mask_ratio, int | float) and 0.0 < mask_ratio < 1.0):
        raise ValueError(
            f"mask_ratio must lie strictly between 0 and 1 (the fraction of patches removed), "
            f"got {mask_ratio!r}; MAE uses 0.75"
        )
    keep = math.floor(num_patches * (1.0 - mask_ratio) + 1e-6)
    if keep < 1:
        raise ValueError(
            f"mask_ratio={mask_ratio} keeps no visible patch out of {num_patches}; lower the "
            f"mask ratio to at most {1 - 1 / num_patches:.4f} or use smaller patches"
        )
    if keep >= num_patches:
        raise ValueError(
            f"mask_ratio={mask_ratio} masks no patch out of {num_patches}; raise it to at "
            f"least {1 / num_patches:.4f} (MAE uses 0.75)"
        )
    return keep


def random_masking(
    x: Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a random subset of tokens per sample (MAE's per-sample shuffling).

    Args:
        x: tokens ``[B, L, D]``.
        mask_ratio: fraction of tokens removed, in (0, 1); MAE uses 0.75.
        generator: source of the noise, on ``x``'s device (default: the global generator).

    Returns:
        ``x_visible [B, L_keep, D]`` (kept tokens in shuffled order),
        ``mask [B, L]`` float32 in the original order, 1 = removed, 0 = kept,
        ``ids_restore [B, L]`` int64, with
        ``gather(cat([x_visible, removed]), ids_restore) == x``.

    Example:
        >>> x = torch.randn(2, 8, 4)
        >>> visible, mask, ids_restore = random_masking(x, 0.75)
        >>> visible.shape, mask.sum(dim=1).tolist()
        (torch.Size([2, 2, 4]), [6.0, 6.0])
    """
    if x.ndim != 3:
        raise ValueError(f"random_masking expects tokens [B, L, D], got {tuple(x.shape)}")
    batch, length, dim = x.shape
    keep = num_kept(length, mask_ratio)
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the tokens are on {x.device}; create it "
            f"with torch.Generator(device={str(x.device)!r})"
        )
    noise = torch.rand(batch, length, device=x.device, generator=generator)  # [B, L]
    ids_shuffle = noise.argsort(dim=1)  # ascending: small noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)  # [B, L] rank of each token in the shuffle
    ids_keep = ids_shuffle[:, :keep]  # [B, L_keep]
    x_visible = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [B, L_keep, D]
    mask = (ids_restore >= keep).float()  # [B, L] removed = ranked after the kept ones
    return x_visible, mask, ids_restore
