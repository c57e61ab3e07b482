"""MAE reconstruction figure: original | masked input | reconstruction, one row per image.

The reconstruction column shows the decoder's predictions on the removed patches with the
visible patches pasted back (MAE paper, Fig. 2). Images are shown in pixel space: the method's
normalised inputs and outputs are mapped back with the same ``mean`` / ``std``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from selfsup.methods.mae import MAE
from selfsup.views import EvalTransform
from selfsup.viz.grid import PAD_PX, save_image_columns, to_rgb

__all__ = ["MASK_COLOR", "save_reconstruction_grid"]

MASK_COLOR = (0.30, 0.40, 0.70)  # removed patches in the "masked input" column (muted blue)


def save_reconstruction_grid(
    method: MAE,
    images_uint8: Tensor,
    path: str | Path,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator | None = None,
    max_images: int = 8,
    cell_px: int = 128,
) -> Path:
    """Write a PNG of ``min(N, max_images)`` rows: original | masked input | reconstruction.

    Args:
        method: a (trained) :class:`~selfsup.methods.mae.MAE`; it runs in eval mode here and
            is put back in its previous mode.
        images_uint8: ``[N, C, H, W]`` uint8 images; resized to the ViT's ``image_size`` when
            they differ (bilinear, antialiased, as in evaluation).
        path: output ``.png`` file; parent folders are created.
        mean, std: the normalisation the method was trained with (per channel, or one value).
        generator: masking noise source on the method's device, for a reproducible figure.
        max_images: rows at most.
        cell_px: side of one image cell in pixels.

    Returns:
        The path written. The PNG is exactly ``3 * cell_px`` pixels wide and
        ``rows * cell_px + 24`` high (24 px of column titles). Removed patches are drawn in
        :data:`MASK_COLOR` in the middle column. With ``norm_pix_loss`` the reconstruction
        borrows each hidden patch's true mean and variance (see :meth:`MAE.reconstruct`).
    """
    if images_uint8.ndim != 4 or images_uint8.dtype != torch.uint8 or len(images_uint8) == 0:
        raise ValueError(
            f"images_uint8 must be a non-empty uint8 batch [N, C, H, W], got "
            f"{images_uint8.dtype} {tuple(images_uint8.shape)}; pass raw dataset images"
        )
    if max_images < 1 or cell_px < 4 * PAD_PX:
        raise ValueError(
            f"max_images must be >= 1 and cell_px >= {4 * PAD_PX}, got {max_images} and "
            f"{cell_px}; the defaults 8 and 128 make a readable figure"
        )
    device = next(method.parameters()).device
    images = images_uint8[:max_images].to(device)
    transform = EvalTransform(method.encoder.image_size, mean, std)
    x = transform(images)  # [N, C, S, S] normalised, as the method saw its views

    was_training = method.training
    method.eval()
    try:
        pred, mask = method.reconstruct(x, generator)  # [N, C, S, S] each, mask 1 = removed
    finally:
        method.train(was_training)

    shape = (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=device).reshape(shape)
    s = torch.tensor(std, dtype=torch.float32, device=device).reshape(shape)
    original = x * s + m  # [N, C, S, S] pixel space
    pasted = original * (1 - mask) + (pred * s + m) * mask
    original_rgb, pasted_rgb = to_rgb(original), to_rgb(pasted)
    mask_rgb = to_rgb(mask[:, :1])  # [N, S, S, 3], 1 = removed
    color = torch.tensor(MASK_COLOR)
    masked_rgb = original_rgb * (1 - mask_rgb) + color * mask_rgb
    columns = (
        ("original", original_rgb),
        ("masked input", masked_rgb),
        ("reconstruction", pasted_rgb),
    )

    return save_image_columns(columns, path, cell_px)
