"""The images the benchmark feeds: the configured training set, noise, or PNG files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from selfsup import build
from selfsup.config import Config
from selfsup.data import (
    DatasetNotFoundError,
    EpochLoader,
    ImageDataset,
    TensorImageDataset,
    load_dataset,
)

__all__ = ["bench_dataset", "endless_batches", "parse_shape", "write_image_folder"]


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"3x32x32"`` -> ``(3, 32, 32)``: channels (1 or 3) x height x width."""
    try:
        c, h, w = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"synthetic image shape must look like CxHxW, e.g. 3x32x32, got {text!r}"
        ) from None
    if c not in (1, 3) or h < 1 or w < 1:
        raise ValueError(
            f"synthetic images need 1 or 3 channels and a positive size, got {text!r}; "
            "e.g. 3x32x32 (CIFAR-like) or 1x28x28"
        )
    return c, h, w


def _synthetic(shape: tuple[int, int, int], count: int) -> TensorImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, *shape), dtype=torch.uint8, generator=gen)
    return TensorImageDataset(images, None, "synthetic", None)


def bench_dataset(
    cfg: Config, synthetic: tuple[int, int, int] | None, count: int
) -> tuple[ImageDataset, str]:
    """The configured training set, or uniform-noise uint8 images of ``synthetic`` shape.

    The noise images (also the fallback when the configured dataset is not installed) are
    enough for throughput: no op's cost depends on the pixel values.
    """
    if synthetic is not None:
        c, h, w = synthetic
        return _synthetic(synthetic, count), f"synthetic uint8 {c}x{h}x{w}"
    try:
        return build.train_dataset(cfg), cfg.data.dataset
    except (DatasetNotFoundError, FileNotFoundError):
        return _synthetic((1, 28, 28), count), "synthetic uint8 1x28x28"


def write_image_folder(dataset: ImageDataset, root: Path, count: int) -> ImageDataset:
    """Write the first ``count`` images as lossless PNG files into ``root`` and load them back
    as a folder dataset (decoded by PIL in DataLoader workers, as a real image folder is)."""
    from PIL import Image

    images, _ = dataset.get_batch(torch.arange(min(count, len(dataset))))  # [N, C, H, W] uint8
    _, channels, height, width = images.shape
    if height != width:
        raise ValueError(
            f"--as-files needs square images (folders decode to squares), got {height}x{width}"
        )
    for i, image in enumerate(images):
        array = image.permute(1, 2, 0).numpy()  # [H, W, C]
        pil = Image.fromarray(array[:, :, 0] if channels == 1 else array)
        pil.save(root / f"{i:06d}.png")
    return load_dataset("folder", "train", root=root, image_size=height, channels=channels)


def endless_batches(loader: EpochLoader) -> Iterator[Tensor]:
    """Endless uint8 batches from ``loader``, epoch after epoch (epochs 1, 2, ...)."""
    epoch = 0
    while True:
        epoch += 1
        for images, _ in loader.iterate(epoch):
            yield images
