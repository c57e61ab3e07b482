"""Colorization figure: input lightness | prediction | truth, one row per image.

The prediction column is the input's lightness with the colour the network predicts from it
(the annealed mean of its ab distribution, or the regression output), resized from the
prediction's resolution to the image's; the truth column is the image itself.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from selfsup.methods.colorization import Colorization
from selfsup.views import EvalTransform
from selfsup.viz.grid import PAD_PX, save_image_columns, to_rgb

__all__ = ["save_colorization_grid"]


def save_colorization_grid(
    method: Colorization,
    images_uint8: Tensor,
    path: str | Path,
    max_images: int = 8,
    cell_px: int = 128,
) -> Path:
    """Write a PNG of ``min(N, max_images)`` rows: input L | prediction | truth.

    Args:
        method: a (trained) :class:`~selfsup.methods.colorization.Colorization`; it runs in
            eval mode here and is put back in its previous mode.
        images_uint8: ``[N, 3, H, W]`` uint8 RGB images; resized to the method's view size
            (bilinear, antialiased, as in evaluation) and normalised as in training.
        path: output ``.png`` file; parent folders are created.
        max_images: rows at most.
        cell_px: side of one image cell in pixels.

    Returns:
        The path written, a PNG exactly ``3 * cell_px`` wide and ``rows * cell_px + 24`` high
        (24 px of column titles).

    Example:
        >>> from selfsup.backbones import LightnessEncoder, ResNet
        >>> from selfsup.views import MultiViewTransform, colorization_view
        >>> trunk = ResNet(width=0.125, cifar_stem=True, in_channels=1)
        >>> recipe = MultiViewTransform([colorization_view(16)], [0.5], [0.25])
        >>> method = Colorization(LightnessEncoder(trunk, [0.5], [0.25]), recipe, head_dim=8)
        >>> images = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_colorization_grid(method, images, os.path.join(tmp, "c.png"), cell_px=32)
        ...     path.stat().st_size > 0
        True
    """
    if (
        images_uint8.ndim != 4
        or images_uint8.dtype != torch.uint8
        or len(images_uint8) == 0
        or images_uint8.shape[1] != 3
    ):
        raise ValueError(
            f"images_uint8 must be a non-empty uint8 RGB batch [N, 3, H, W], got "
            f"{images_uint8.dtype} {tuple(images_uint8.shape)}; pass raw colour dataset images"
        )
    if max_images < 1 or cell_px < 4 * PAD_PX:
        raise ValueError(
            f"max_images must be >= 1 and cell_px >= {4 * PAD_PX}, got {max_images} and "
            f"{cell_px}; the defaults 8 and 128 make a readable figure"
        )
    encoder = method.encoder
    device = encoder.mean.device
    transform = EvalTransform(
        method.view_recipe.specs[0].size,
        encoder.mean.flatten().tolist(),
        encoder.std.flatten().tolist(),
    )
    x = transform(images_uint8[:max_images].to(device))  # [N, 3, S, S] normalised
    was_training = method.training
    method.eval()
    try:
        grey, colorized, truth = method.colorize(x)  # [N, 3, S, S] each, sRGB in [0, 1]
    finally:
        method.train(was_training)
    columns = (
        ("input (L)", to_rgb(grey)),
        ("prediction", to_rgb(colorized)),
        ("truth", to_rgb(truth)),
    )
    return save_image_columns(columns, path, cell_px)
