"""In-memory datasets (IDX, CIFAR, digits) and their load-time channel / size conversions.

A ``TensorImageDataset`` batch is one indexing operation, so it is the fast path of
``EpochLoader``. ``convert_channels`` and ``resize_images`` run once, when a dataset is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import ImageDataset, _check_class_names, _normalise_index

__all__ = ["TensorImageDataset", "convert_channels", "resize_images"]

_CHUNK = 4096  # images per chunk in load-time conversions (bounds temporary memory)


class TensorImageDataset(ImageDataset):
    """A dataset held in memory as one uint8 tensor ``images`` ``[N, C, H, W]``.

    ``labels`` int ``[N]`` in ``[0, num_classes)``, or None for an unlabelled dataset (stored as
    -1). ``num_classes=None`` with labels infers ``max(label) + 1``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor | None,
        name: str,
        num_classes: int | None,
        *,
        class_names: Sequence[str] | None = None,
        source: str = "memory",
        location: str | None = None,
    ) -> None:
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = (
                f"{images.dtype} {tuple(images.shape)}"
                if isinstance(images, Tensor)
                else type(images)
            )
            raise ValueError(
                f"{name}: images must be a uint8 tensor [N, C, H, W], got {got}; convert with "
                "images.to(torch.uint8) after scaling to 0..255"
            )
        n, c = images.shape[0], images.shape[1]
        if c not in (1, 3):
            raise ValueError(f"{name}: images have {c} channels; give 1 (gray) or 3 (RGB) channels")
        if n == 0:
            raise ValueError(f"{name}: the dataset has no images; pass at least one image")
        if labels is None:
            if num_classes is not None:
                raise ValueError(
                    f"{name}: num_classes={num_classes} given without labels; pass labels or "
                    "num_classes=None"
                )
            labels = torch.full((n,), -1, dtype=torch.int64)
        else:
            if (
                not isinstance(labels, Tensor)
                or labels.dim() != 1
                or labels.is_floating_point()
                or labels.is_complex()
                or labels.dtype == torch.bool
            ):
                raise ValueError(
                    f"{name}: labels must be a 1-D integer tensor [N]; got {labels!r:.80}"
                )
            if labels.shape[0] != n:
                raise ValueError(
                    f"{name}: {labels.shape[0]} labels for {n} images; pass one label per image"
                )
            labels = labels.to(torch.int64)
            lo, hi = int(labels.min()), int(labels.max())
            if num_classes is None:
                num_classes = hi + 1
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"{name}: labels span [{lo}, {hi}] but must lie in [0, {num_classes}); fix the "
                    "labels or num_classes"
                )
        self.images = images.contiguous()  # [N, C, H, W] uint8
        self.labels = labels.contiguous()  # [N] int64
        self.name = name
        self.channels = c
        self.num_classes = num_classes
        self.class_names = _check_class_names(class_names, num_classes)
        self.source = source
        # The directory the data was read from (what a run's config records), None in memory.
        self.location = location

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        i = _normalise_index(index, len(self))
        return self.images[i], int(self.labels[i])

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        idx = indices.to(self.images.device)
        return self.images.index_select(0, idx), self.labels.index_select(0, idx)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


def convert_channels(images: Tensor, channels: int) -> Tensor:
    """Convert uint8 ``[N, C, H, W]`` to ``channels`` (1 or 3) channels.

    1 -> 3 repeats the gray plane. 3 -> 1 is ITU-R 601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``
    in 16-bit fixed point with rounding, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, which is
    exactly PIL's ``convert("L")`` (so in-memory and decoded datasets agree).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels!r}")
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"convert_channels expects uint8 [N, C, H, W] with C in (1, 3), got {images.dtype} "
            f"{tuple(images.shape)}"
        )
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()  # [N, 3, H, W]
    weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=images.device)
    out = torch.empty(
        (images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8, device=images.device
    )
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].to(torch.int32)  # [n, 3, H, W]
        luma = (chunk * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True) + 32768
        out[start : start + _CHUNK] = (luma >> 16).to(torch.uint8)
    return out


def resize_images(images: Tensor, image_size: int) -> Tensor:
    """Resize uint8 ``[N, C, H, W]`` to ``[N, C, S, S]``: bilinear, antialiased, rounded to uint8."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"resize_images expects uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    if tuple(images.shape[2:]) == (image_size, image_size):
        return images
    out = torch.empty(
        (*images.shape[:2], image_size, image_size), dtype=torch.uint8, device=images.device
    )
    for start in range(0, images.shape[0], _CHUNK):
        chunk = images[start : start + _CHUNK].float()
        resized = F.interpolate(
            chunk,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        out[start : start + _CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _adapt(
    dataset: TensorImageDataset, image_size: int | None, channels: int | None
) -> TensorImageDataset:
    """Apply the requested channels / size once, at load time."""
    images = dataset.images
    if channels is not None:
        images = convert_channels(images, channels)
    if image_size is not None:
        images = resize_images(images, image_size)
    if images is dataset.images:
        return dataset
    return TensorImageDataset(
        images,
        dataset.labels if dataset.has_labels else None,
        dataset.name,
        dataset.num_classes,
        class_names=dataset.class_names,
        source=dataset.source,
        location=dataset.location,
    )
