"""Sequential uint8 batches of a dataset moved to a device, for feature extraction.

Evaluation and the trainer's online k-NN read a dataset (or a chosen subset of it) in a fixed
order, once; ``EpochLoader`` is for training epochs (shuffled, resumable, worker-decoded).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from selfsup.data.base import ImageDataset

__all__ = ["iterate_batches"]


def iterate_batches(
    dataset: ImageDataset,
    batch_size: int,
    device: torch.device | str,
    indices: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(images, labels)`` of ``dataset`` at ``indices`` (default: all, in order).

    Images are uint8 ``[B, C, H, W]`` on ``device`` (copied without blocking the host), labels
    int64 ``[B]`` as the dataset returns them (not moved); the last batch may be smaller than
    ``batch_size``.

    Example:
        >>> from selfsup.data import TensorImageDataset
        >>> data = TensorImageDataset(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), None, "z", None)
        >>> [len(y) for _, y in iterate_batches(data, 2, "cpu")]
        [2, 2, 1]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if indices is None:
        indices = torch.arange(len(dataset))
    for chunk in indices.split(batch_size):
        images, labels = dataset.get_batch(chunk)
        yield images.to(device, non_blocking=True), labels
