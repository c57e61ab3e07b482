"""The dataset contract: uint8 images ``[C, H, W]`` and int64 labels (-1 when unlabelled).

``ImageDataset`` is what the loaders, the trainer and the evaluation rely on; its two kinds
live in ``memory`` (``TensorImageDataset``) and ``files`` (``FileImageDataset``).
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["DatasetNotFoundError", "ImageDataset"]


class DatasetNotFoundError(FileNotFoundError):
    """The data of a dataset is in none of the places searched; the message says how to get it."""


def _normalise_index(index: int, length: int) -> int:
    """Python-style index (negative counts from the end) checked against ``length``."""
    i = operator.index(index)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"index {index} is out of range for a dataset of {length} images")
    return i


class ImageDataset(Dataset[tuple[Tensor, int]], abc.ABC):
    """A dataset of equally sized uint8 images ``[C, H, W]`` with int64 labels (-1: unlabelled).

    A map-style ``torch.utils.data.Dataset``, so it plugs into a ``DataLoader`` as is.

    Attributes: ``name``; ``channels`` (1 or 3); ``num_classes`` (None when unlabelled);
    ``class_names`` (None when unknown); ``source`` (where the data was read from, for logs).
    """

    name: str
    channels: int
    num_classes: int | None
    class_names: list[str] | None
    source: str

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    @abc.abstractmethod
    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """One image, uint8 ``[C, H, W]``, and its label (-1 when unlabelled)."""

    @abc.abstractmethod
    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Images uint8 ``[B, C, H, W]`` and labels int64 ``[B]`` at the 1-D integer ``indices``."""

    @property
    @abc.abstractmethod
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""

    @property
    def has_labels(self) -> bool:
        """True when the images carry class labels."""
        return self.num_classes is not None

    def __repr__(self) -> str:
        h, w = self.image_size
        return (
            f"{type(self).__name__}(name={self.name!r}, len={len(self)}, channels={self.channels}, "
            f"image_size=({h}, {w}), num_classes={self.num_classes}, source={self.source!r})"
        )


def _check_class_names(
    class_names: Sequence[str] | None, num_classes: int | None
) -> list[str] | None:
    if class_names is None:
        return None
    names = [str(n) for n in class_names]
    if num_classes is None or len(names) != num_classes:
        raise ValueError(
            f"got {len(names)} class_names for num_classes={num_classes}; pass one name per class "
            "or class_names=None"
        )
    return names
