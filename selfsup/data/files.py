"""``FileImageDataset``: image files decoded with PIL on access, unreadable files skipped.

Decoding is ``decode_image`` (see ``decode``); this module decides what an unreadable file does
to a run: dropped with a warning when the dataset is built, replaced by the next readable image
when it fails later, or a stop at once with ``strict=True``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from selfsup.data.base import ImageDataset, _check_class_names, _normalise_index
from selfsup.data.decode import (
    UnreadableImageError,
    UnreadableImageWarning,
    _header_problem,
    decode_image,
)

__all__ = ["FileImageDataset"]

_LISTED_FILES = 5  # unreadable files named in one warning or error


def _list_files(entries: Sequence[tuple[Path, str]]) -> str:
    """``path (reason)`` for the first few entries, and how many more there are."""
    shown = "; ".join(f"{path} ({reason})" for path, reason in entries[:_LISTED_FILES])
    more = len(entries) - _LISTED_FILES
    return shown + (f"; and {more} more" if more > 0 else "")


class FileImageDataset(ImageDataset):
    """Image files decoded with PIL on access (see ``decode_image``) to uint8 ``[C, S, S]``.

    ``labels``: one non-negative int per path, or None (unlabelled, label -1). ``num_classes`` is
    ``len(class_names)`` when names are given, else ``max(label) + 1`` over all given paths.

    Unreadable files never crash a run, and the length and order stay fixed, so the epoch order
    (a function of the seed and the length) and exact resume hold:

    * When built (``check_files=True``) the header of every file is read (cheap: no pixels are
      decoded). Files that cannot be opened (missing, empty, not an image, declared size above
      ``PIL.Image.MAX_IMAGE_PIXELS``) are dropped, and one ``UnreadableImageWarning`` names the
      first few and the count; when none is readable a ``ValueError`` names the folder.
    * A file that opens but fails to decode later (truncated or damaged data) is replaced by the
      next readable index (wrapping around) with that index's label, so images and labels stay
      paired; it is warned about once and not decoded again in this process.

    ``unreadable`` maps each such path to its reason (decode failures as seen by this process;
    ``DataLoader`` workers warn on their own stderr). With ``strict=True`` the first unreadable
    file raises ``UnreadableImageError`` (a ``ValueError``) instead. ``source`` names the
    folder or list in messages (default: the first file's folder).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int] | None,
        image_size: int,
        channels: int = 3,
        name: str = "files",
        class_names: list[str] | None = None,
        *,
        strict: bool = False,
        check_files: bool = True,
        source: str | None = None,
    ) -> None:
        if len(paths) == 0:
            raise ValueError(f"{name}: no image paths given; pass at least one image file")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"{name}: image_size must be a positive int, got {image_size!r}")
        if channels not in (1, 3):
            raise ValueError(f"{name}: channels must be 1 (gray) or 3 (RGB), got {channels!r}")
        self.paths = [Path(p) for p in paths]
        self.name = name
        self.channels = channels
        self.strict = strict
        self.unreadable: dict[Path, str] = {}
        self._size = image_size
        self._bad: set[int] = set()  # indices that failed to decode in this process
        if labels is None:
            if class_names is not None:
                raise ValueError(f"{name}: class_names given without labels; pass labels too")
            self.labels = torch.full((len(self.paths),), -1, dtype=torch.int64)
            self.num_classes = None
        else:
            if len(labels) != len(self.paths):
                raise ValueError(
                    f"{name}: {len(labels)} labels for {len(self.paths)} paths; pass one label per path"
                )
            self.labels = torch.as_tensor(list(labels), dtype=torch.int64)
            lo, hi = int(self.labels.min()), int(self.labels.max())
            num_classes = len(class_names) if class_names is not None else hi + 1
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"{name}: labels span [{lo}, {hi}] but must lie in [0, {num_classes}); fix the "
                    "labels or class_names"
                )
            self.num_classes = num_classes
        self.class_names = _check_class_names(class_names, self.num_classes)
        self.source = source if source is not None else str(self.paths[0].parent)
        if check_files:
            self._drop_unopenable()

    def _drop_unopenable(self) -> None:
        """Drop the files whose header cannot be read, with one warning (strict: raise)."""
        keep: list[int] = []
        dropped: list[tuple[Path, str]] = []
        for i, path in enumerate(self.paths):
            problem = _header_problem(path)
            if problem is None:
                keep.append(i)
            elif self.strict:
                raise UnreadableImageError.of(path, problem, strict=True)
            else:
                dropped.append((path, problem))
        if not dropped:
            return
        self.unreadable.update(dropped)
        if not keep:
            raise ValueError(
                f"{self.name}: none of the {len(dropped)} image files in {self.source} can be "
                f"read: {_list_files(dropped)}. Check that these are images, or point the data "
                "path at the right folder"
            )
        warnings.warn(
            f"{self.name}: skipped {len(dropped)} of {len(self.paths)} image files in "
            f"{self.source} that cannot be read: {_list_files(dropped)}. Fix or remove them "
            "(data.strict=true / --strict stops on them instead)",
            UnreadableImageWarning,
            stacklevel=2,
        )
        self.paths = [self.paths[i] for i in keep]
        self.labels = self.labels[torch.as_tensor(keep, dtype=torch.int64)]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """Image and label ``index``; an undecodable file yields the next readable one."""
        n = len(self)
        i = _normalise_index(index, n)
        for offset in range(n):
            j = (i + offset) % n
            if j in self._bad:
                continue
            try:
                image = decode_image(self.paths[j], self._size, self.channels)
            except UnreadableImageError as err:
                if self.strict:
                    raise UnreadableImageError.of(self.paths[j], err.reason, strict=True) from err
                self._record_decode_failure(j, err.reason)
                continue
            return image, int(self.labels[j])
        raise ValueError(
            f"{self.name}: none of the {n} image files in {self.source} can be decoded: "
            f"{_list_files(list(self.unreadable.items()))}. Replace the damaged files"
        )

    def _record_decode_failure(self, index: int, reason: str) -> None:
        path = self.paths[index]
        self._bad.add(index)
        self.unreadable[path] = reason
        warnings.warn(
            f"{self.name}: cannot decode {path} ({reason}); the next readable image is used in "
            "its place. Fix or remove the file (data.strict=true / --strict stops on it instead)",
            UnreadableImageWarning,
            stacklevel=2,
        )

    def get_batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Decode the images at ``indices`` in this process (``EpochLoader`` uses workers)."""
        items = [self[i] for i in indices.to("cpu", torch.int64).tolist()]
        images = torch.stack([image for image, _ in items])  # [B, C, S, S]
        return images, torch.tensor([label for _, label in items], dtype=torch.int64)

    @property
    def image_size(self) -> tuple[int, int]:
        return self._size, self._size
