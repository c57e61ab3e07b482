"""Self-attention maps of a ViT's cls token in the last block (DINO paper, Fig. 1 and 3).

For each image: the image, then one map per head showing how much the cls token attends to
each patch (``attn[h, 0, 1:]`` on the patch grid, upsampled to pixels), then the mean over
heads. Trained with DINO, heads attend to the object and its parts without labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.backbones.vit import VisionTransformer
from selfsup.views import EvalTransform

__all__ = ["cls_attention_maps", "save_attention_maps"]

_DPI = 100
_HEADER_PX = 24


@torch.no_grad()
def cls_attention_maps(vit: VisionTransformer, images: Tensor) -> Tensor:
    """The last block's cls-token attention per head on the patch grid, ``[B, heads, rows, cols]``.

    ``images`` are normalised float images ``[B, C, H, W]`` (sides divisible by the patch
    size). Each map sums to 1 over the patches plus the cls token itself; the cls token's own
    weight is left out, as in the DINO figures.

    Example:
        >>> vit = VisionTransformer(8, 4, in_channels=1, embed_dim=16, depth=1, num_heads=2)
        >>> cls_attention_maps(vit, torch.randn(3, 1, 8, 8)).shape
        torch.Size([3, 2, 2, 2])
    """
    rows, cols = images.shape[-2] // vit.patch_size, images.shape[-1] // vit.patch_size
    attn = vit.last_attention(images)  # [B, heads, 1 + L, 1 + L]
    return attn[:, :, 0, 1:].reshape(images.shape[0], attn.shape[1], rows, cols)


def save_attention_maps(
    vit: VisionTransformer,
    images_uint8: Tensor,
    path: str | Path,
    mean: Sequence[float],
    std: Sequence[float],
    max_images: int = 6,
    cell_px: int = 96,
) -> Path:
    """Write a PNG: one row per image, columns image | head 1 .. head H | mean of heads.

    Args:
        vit: a (trained) :class:`VisionTransformer`; run in eval mode, mode restored after.
        images_uint8: ``[N, C, H, W]`` uint8 images, resized to ``vit.image_size`` as in
            evaluation (:class:`~selfsup.views.EvalTransform`).
        path: output ``.png``; parent folders are created.
        mean, std: the run's normalisation.
        max_images: rows at most.
        cell_px: side of one cell in pixels.

    Returns:
        The path written: ``(heads + 2) * cell_px`` wide, ``rows * cell_px + 24`` high. Each
        map is scaled to its own maximum (viridis), patches drawn as blocks (nearest).
    """
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is a dev dependency
        raise ImportError(
            "save_attention_maps needs matplotlib: pip install 'selfsup[viz]'"
        ) from err
    if not isinstance(vit, VisionTransformer):
        raise ValueError(
            f"attention maps need a selfsup ViT backbone, got {type(vit).__name__}; "
            "pre-train with backbone.name=vit_micro|vit_tiny|vit_small|vit_base"
        )
    if images_uint8.ndim != 4 or images_uint8.dtype != torch.uint8 or len(images_uint8) == 0:
        raise ValueError(
            f"images_uint8 must be a non-empty uint8 batch [N, C, H, W], got "
            f"{images_uint8.dtype} {tuple(images_uint8.shape)}; pass raw dataset images"
        )
    if max_images < 1 or cell_px < 8:
        raise ValueError(f"max_images must be >= 1 and cell_px >= 8, got {max_images}, {cell_px}")
    device = next(vit.parameters()).device
    batch = images_uint8[:max_images].to(device)
    transform = EvalTransform(vit.image_size, mean, std)
    was_training = vit.training
    vit.eval()
    try:
        maps = cls_attention_maps(vit, transform(batch)).float()  # [N, heads, rows, cols]
    finally:
        vit.train(was_training)
    n, heads = maps.shape[:2]
    maps = torch.cat([maps, maps.mean(dim=1, keepdim=True)], dim=1)  # + mean of heads
    maps = maps / maps.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    maps = F.interpolate(maps, size=(cell_px, cell_px), mode="nearest").cpu()
    pixels = F.interpolate(batch.float() / 255, size=(cell_px, cell_px), mode="bilinear")
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    rgb = pixels.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()  # [N, cell, cell, 3]
    viridis = colormaps["viridis"]

    cols = heads + 2
    width, height = cols * cell_px, n * cell_px + _HEADER_PX
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    titles = ["image", *[f"head {h + 1}" for h in range(heads)], "mean"]
    for row in range(n):
        for col in range(cols):
            left, bottom = col * cell_px / width, (n - 1 - row) * cell_px / height
            ax = fig.add_axes((left, bottom, cell_px / width, cell_px / height))
            ax.set_axis_off()
            if col == 0:
                ax.imshow(rgb[row], interpolation="nearest")
            else:
                ax.imshow(viridis(maps[row, col - 1].numpy()), interpolation="nearest")
            if row == 0:
                ax.set_title(titles[col], fontsize=8, pad=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    return path
