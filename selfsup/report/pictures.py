"""A run's pictures for the report: MAE reconstructions, ViT cls-token attention maps.

Both draw the first images of the labelled test split (else of the training data), the same
images ``selfsup viz`` draws.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from selfsup import build
from selfsup.config import Config
from selfsup.data import convert_channels
from selfsup.eval.run_encoder import RunEncoder

__all__ = ["first_images", "save_attention", "save_mae_reconstructions"]


def first_images(cfg: Config, count: int, channels: int) -> Tensor:
    """The first ``count`` images (uint8 ``[N, C, H, W]``) of the test split, else the
    training data, with the run's ``channels``."""
    sets = build.eval_datasets(cfg)
    dataset = sets[1] if sets is not None else build.train_dataset(cfg)
    images, _ = dataset.get_batch(torch.arange(min(count, len(dataset))))
    return convert_channels(images, channels) if images.shape[1] != channels else images


def save_mae_reconstructions(
    run_dir: Path, run: RunEncoder, path: Path, count: int = 8, seed: int = 0
) -> str:
    """Write the MAE reconstruction grid of the run's last checkpoint; returns its caption."""
    from selfsup.eval.from_checkpoint import load_method
    from selfsup.methods.mae import MAE
    from selfsup.viz.mae import save_reconstruction_grid

    cfg = run.cfg
    images = first_images(cfg, count, run.in_channels)
    method = load_method(cfg, run_dir, run.in_channels)
    if not isinstance(method, MAE):  # pragma: no cover - the caller checks cfg.method
        raise ValueError(f"not an MAE run: {type(method).__name__}")
    assert cfg.views.mean is not None and cfg.views.std is not None
    generator = torch.Generator().manual_seed(seed)
    save_reconstruction_grid(
        method, images, path, cfg.views.mean, cfg.views.std, generator, max_images=count
    )
    return (
        f"checkpoints/last.pt; {int(100 * method.mask_ratio)}% of the patches removed at random "
        "(seeded). Healthy: the reconstruction recovers the coarse shape and layout of each "
        "image (blurry is normal); one identical grey patch everywhere means the decoder "
        "learned only the mean"
    )


def save_attention(run: RunEncoder, path: Path, count: int = 6) -> str:
    """Write the cls-token attention maps of the run's ViT encoder; returns the caption."""
    from selfsup.backbones.vit import VisionTransformer
    from selfsup.viz.attention import save_attention_maps

    if not isinstance(run.encoder, VisionTransformer):
        raise ValueError(f"attention maps need a ViT encoder, got {type(run.encoder).__name__}")
    cfg = run.cfg
    images = first_images(cfg, count, run.in_channels)
    assert cfg.views.mean is not None and cfg.views.std is not None
    save_attention_maps(run.encoder, images, path, cfg.views.mean, cfg.views.std, count)
    return (
        f"the {run.network} encoder ({run.source}): the last block's cls-token attention per "
        "head, then their mean. Healthy (DINO): heads light up the object or distinct parts of "
        "it; uniform or identical maps in every head mean the heads learned nothing specific"
    )
