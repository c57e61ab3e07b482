"""Image datasets that yield uint8 tensors ``[C, H, W]`` and int64 labels (-1 when unlabelled).

Two kinds:

* ``TensorImageDataset``: the whole dataset in memory (IDX, CIFAR, digits); a batch is one
  indexing operation, so it is the fast path of ``EpochLoader``.
* ``FileImageDataset``: image files decoded with PIL on access (in DataLoader workers):
  ``decode -> convert("RGB" | "L") -> resize shorter side to image_size -> center crop``.
  Unusual modes are converted (16-bit scaled, alpha over white); unreadable files are skipped
  with a warning, or stop the run with ``strict=True`` (see ``FileImageDataset``).

``load_dataset(name, split, root, ...)`` builds either from a name in ``DATASETS``.
"""

from __future__ import annotations

import abc
import operator
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from selfsup.data.idx import read_idx

__all__ = [
    "ALPHA_BACKGROUND",
    "DATASETS",
    "DEBIAN_DATA_DIRS",
    "IMAGE_EXTENSIONS",
    "DatasetNotFoundError",
    "FileImageDataset",
    "ImageDataset",
    "TensorImageDataset",
    "UnreadableImageError",
    "UnreadableImageWarning",
    "cache_dir",
    "convert_channels",
    "decode_image",
    "load_dataset",
    "resize_images",
]

DATASETS: tuple[str, ...] = (
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "digits",
    "folder",
    "filelist",
)
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".gif",
    ".tif",
    ".tiff",
)
# Where Debian/Ubuntu packages put the IDX files (`apt-get install dataset-fashion-mnist`).
DEBIAN_DATA_DIRS: dict[str, Path] = {
    "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("/usr/share/datasets/mnist"),
}
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS_SPLIT_SEED = 0  # fixed seed of the stratified 80/20 split of sklearn's digits
DEFAULT_FILE_IMAGE_SIZE = 64  # decode size of folder / filelist images when none is given
_CHUNK = 4096  # images per chunk in load-time conversions (bounds temporary memory)


class DatasetNotFoundError(FileNotFoundError):
    """The data of a dataset is in none of the places searched; the message says how to get it."""


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Decoding image files
# --------------------------------------------------------------------------------------------


class UnreadableImageError(ValueError):
    """An image file that cannot be opened or decoded; the message names the file and the fix.

    ``path`` is the file and ``reason`` the short cause (PIL's message, or the size limit).
    """

    def __init__(self, message: str, path: str | Path | None = None, reason: str = "") -> None:
        # One positional message, so that DataLoader workers can re-raise it in the main process.
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.reason = reason

    @classmethod
    def of(cls, path: str | Path, reason: str, strict: bool = False) -> UnreadableImageError:
        """The error for ``path``; ``strict`` adds how to skip such files instead."""
        fix = "replace or remove the file"
        if strict:
            fix += (
                ", or set data.strict=false (no --strict) to skip unreadable files with a warning"
            )
        return cls(f"could not read image {path} ({reason}); {fix}", path, reason)


class UnreadableImageWarning(UserWarning):
    """Unreadable image files were skipped or replaced by the next readable one."""


# Gray modes wider than 8 bits: PNG / TIFF 16-bit ("I;16*") and "I" (32-bit int, how older
# Pillow and TIFF hand out 16-bit data). Both are read as 0..65535.
_WIDE_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
ALPHA_BACKGROUND = 255  # transparent pixels are composited over white, as viewers show them
# A source longer than this ratio is cut to its central part of this ratio before resizing, so
# a thin strip (1 x 100000 px) never becomes a huge intermediate image before the center crop.
_MAX_ASPECT = 4
_LISTED_FILES = 5  # unreadable files named in one warning or error


def _open_checked(path: str | Path) -> Image.Image:
    """``Image.open`` (reads the header only) refusing images above ``Image.MAX_IMAGE_PIXELS``.

    PIL itself only warns between one and two times the limit; here the limit holds, checked on
    the declared size before a single pixel is allocated. ``MAX_IMAGE_PIXELS = None`` disables it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(path)
    limit = Image.MAX_IMAGE_PIXELS
    w, h = image.size
    if limit is not None and w * h > limit:
        image.close()
        raise Image.DecompressionBombError(
            f"declared size {w}x{h} = {w * h} pixels exceeds the limit of {int(limit)} "
            "(PIL.Image.MAX_IMAGE_PIXELS): a decompression bomb, or raise the limit"
        )
    return image


def _reason(exc: BaseException, path: str | Path) -> str:
    """A one-line cause of a failure to open or decode ``path``."""
    if isinstance(exc, FileNotFoundError):
        return "file does not exist"
    if isinstance(exc, UnidentifiedImageError):
        try:
            empty = os.path.getsize(path) == 0
        except OSError:
            empty = False
        return "empty file (0 bytes)" if empty else "not an image, or an unknown image format"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _header_problem(path: Path) -> str | None:
    """Why ``path`` cannot even be opened (header and declared size only), or None.

    Cheap, as PIL reads only the header: catches missing, empty, non-image and oversized files.
    Damaged pixel data (a truncated file) shows only when decoding.
    """
    try:
        with _open_checked(path):
            return None
    except Exception as exc:  # any failure to parse a header is a property of the file
        return _reason(exc, path)


def _wide_gray_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit gray to 8 bits by scaling, ``round(v * 255 / 65535)`` (= v / 257), not clipping."""
    values = np.asarray(image).astype(np.int64).clip(0, 65535)  # [H, W]
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))


def _composite_on_background(image: Image.Image) -> Image.Image:
    """RGB of an image with alpha over ``ALPHA_BACKGROUND``: ``round((c*a + bg*(255-a)) / 255)``."""
    rgba = np.asarray(image.convert("RGBA")).astype(np.int32)  # [H, W, 4]
    color, alpha = rgba[..., :3], rgba[..., 3:]
    out = (color * alpha + ALPHA_BACKGROUND * (255 - alpha) + 127) // 255  # [H, W, 3]
    return Image.fromarray(out.astype(np.uint8))


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode to "RGB" (channels=3) or "L" (channels=1) by the rules of ``decode_image``."""
    if image.mode in _WIDE_GRAY_MODES:
        image = _wide_gray_to_8bit(image)  # a transparency key on 16-bit gray is ignored
    elif image.mode in _ALPHA_MODES or "transparency" in image.info:
        image = _composite_on_background(image)
    return image.convert("RGB" if channels == 3 else "L")


def _central_part(image: Image.Image) -> Image.Image:
    """A source longer than ``_MAX_ASPECT``:1 cut to its central ``_MAX_ASPECT``:1 part."""
    w, h = image.size
    if w > _MAX_ASPECT * h:
        left = (w - _MAX_ASPECT * h) // 2
        return image.crop((left, 0, left + _MAX_ASPECT * h, h))
    if h > _MAX_ASPECT * w:
        top = (h - _MAX_ASPECT * w) // 2
        return image.crop((0, top, w, top + _MAX_ASPECT * w))
    return image


def decode_image(path: str | Path, image_size: int, channels: int = 3) -> Tensor:
    """Decode one image file to uint8 ``[channels, image_size, image_size]``.

    Colour: CMYK, YCbCr, palette and 1-bit images go through PIL's ``convert``; 16-bit gray
    ("I;16*", "I") is scaled to 8 bits, ``round(v / 257)``, not clipped; images with alpha
    (RGBA, LA, PA, palette or colour-key transparency) are composited over white
    (``ALPHA_BACKGROUND``); gray becomes 3 equal channels, colour becomes ITU-R 601 luma for
    ``channels=1``. Geometry: resize so that the shorter side is ``image_size`` (PIL bilinear,
    antialiased; longer side ``int(image_size * long / short)``; small images are scaled up),
    then a centered square crop; sources longer than 4:1 are first cut to their central 4:1
    part. Raises ``UnreadableImageError`` for a missing, empty, non-image, damaged or truncated
    file, or one whose declared size exceeds ``PIL.Image.MAX_IMAGE_PIXELS`` (checked on the
    header, so a decompression bomb never allocates its pixels).
    """
    try:
        with _open_checked(path) as opened:
            opened.load()
            image = _to_mode(opened, channels)
    except Exception as exc:  # PIL raises many types for damaged files; all mean "unreadable"
        raise UnreadableImageError.of(path, _reason(exc, path)) from exc
    image = _central_part(image)
    w, h = image.size
    if w <= h:
        new_w, new_h = image_size, int(image_size * h / w)
    else:
        new_w, new_h = int(image_size * w / h), image_size
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left = round((new_w - image_size) / 2.0)
    top = round((new_h - image_size) / 2.0)
    image = image.crop((left, top, left + image_size, top + image_size))
    array = np.array(image, dtype=np.uint8)  # [H, W] or [H, W, 3]
    if array.ndim == 2:
        return torch.from_numpy(array).unsqueeze(0)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


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


# --------------------------------------------------------------------------------------------
# Load-time conversions of in-memory datasets
# --------------------------------------------------------------------------------------------


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
    )


# --------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Download cache: ``$XDG_CACHE_HOME/selfsup``, else ``~/.cache/selfsup``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "selfsup"


def _env_data_dir() -> Path | None:
    value = os.environ.get("SELFSUP_DATA")
    return Path(value).expanduser() if value else None


def _check_split(name: str, split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(
            f"{name} has splits {allowed}, got split={split!r}; use one of them (hold out a "
            "validation set from 'train' when you need one)"
        )


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IdxSpec:
    title: str
    subdirs: tuple[str, ...]  # typical sub-folders of a data directory, searched before it
    torchvision_class: str
    class_names: tuple[str, ...]
    apt_package: str | None


_IDX_SPECS: dict[str, _IdxSpec] = {
    "fashion_mnist": _IdxSpec(
        title="Fashion-MNIST",
        subdirs=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
        torchvision_class="FashionMNIST",
        class_names=FASHION_MNIST_CLASSES,
        apt_package="dataset-fashion-mnist",
    ),
    "mnist": _IdxSpec(
        title="MNIST",
        subdirs=("mnist", "MNIST/raw", "MNIST"),
        torchvision_class="MNIST",
        class_names=tuple(str(d) for d in range(10)),
        apt_package=None,
    ),
}


def _idx_files(directory: Path, split: str) -> tuple[Path, Path] | None:
    """``(images, labels)`` of ``split`` in ``directory`` (plain preferred over .gz), or None."""
    prefix = "train" if split == "train" else "t10k"
    found: list[Path] = []
    for stem in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        for candidate in (directory / stem, directory / f"{stem}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found[0], found[1]


def _read_idx_split(
    key: str, images_path: Path, labels_path: Path, source: str
) -> TensorImageDataset:
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}; "
            "point to the images-idx3 file"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path}: expected {images.shape[0]} labels [N] to match {images_path}, got "
            f"shape {labels.shape}; use the labels file of the same split"
        )
    spec = _IDX_SPECS[key]
    return TensorImageDataset(
        torch.from_numpy(images).unsqueeze(1),  # [N, 1, 28, 28]
        torch.from_numpy(labels.astype(np.int64)),
        key,
        len(spec.class_names),
        class_names=spec.class_names,
        source=source,
    )


def _load_idx_dataset(
    key: str, split: str, root: Path | None, download: bool
) -> TensorImageDataset:
    spec = _IDX_SPECS[key]
    _check_split(key, split, ("train", "test"))
    searched: list[str] = []
    candidates: list[tuple[Path, str]] = []
    if root is not None:
        candidates += [(root / sub, "root") for sub in spec.subdirs] + [(root, "root")]
    else:
        searched.append("root: not given (--data-dir)")
    env = _env_data_dir()
    if env is not None:
        candidates += [(env / sub, "$SELFSUP_DATA") for sub in spec.subdirs]
        candidates += [(env, "$SELFSUP_DATA")]
    else:
        searched.append("$SELFSUP_DATA: not set")
    debian = DEBIAN_DATA_DIRS.get(key)
    if debian is not None:
        candidates.append((debian, "Debian package location"))
    cache_raw = cache_dir() / spec.torchvision_class / "raw"
    candidates.append((cache_raw, "download cache"))

    for directory, origin in candidates:
        files = _idx_files(directory, split)
        if files is not None:
            return _read_idx_split(key, files[0], files[1], f"{directory} ({origin})")
        searched.append(f"{directory} ({origin})")

    download_error = ""
    if download:
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, spec.torchvision_class)
        try:
            dataset_class(root=str(cache_dir()), train=split == "train", download=True)
        except Exception as exc:  # network, HTTP, checksum and file-system errors alike
            download_error = f"\nDownload into {cache_dir()} failed: {type(exc).__name__}: {exc}"
        else:
            files = _idx_files(cache_raw, split)
            if files is not None:
                return _read_idx_split(key, files[0], files[1], f"{cache_raw} (downloaded)")
            download_error = f"\nDownload finished but {cache_raw} holds no {split} IDX files."

    prefix = "train" if split == "train" else "t10k"
    lines = "\n".join(f"  - {s}" for s in searched)
    fixes = [
        "pass --data-dir DIR (root=DIR) with a folder holding these files",
        "set SELFSUP_DATA=DIR (the folder itself or DIR/" + spec.subdirs[0] + ")",
    ]
    if spec.apt_package is not None:
        fixes.append(f"sudo apt-get install {spec.apt_package}")
    fixes.append("pass download=True (--download) on a machine with internet access")
    raise DatasetNotFoundError(
        f"{spec.title} split {split!r} not found: no {prefix}-images-idx3-ubyte[.gz] + "
        f"{prefix}-labels-idx1-ubyte[.gz] in any of these places:\n{lines}{download_error}\n"
        "To get the data: " + "; or ".join(fixes) + "."
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 (torchvision's python pickles)
# --------------------------------------------------------------------------------------------

_CIFAR_FOLDERS = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}


def _load_cifar(key: str, split: str, root: Path | None, download: bool) -> TensorImageDataset:
    _check_split(key, split, ("train", "test"))
    import torchvision.datasets

    class_name, folder = _CIFAR_FOLDERS[key]
    dataset_class = getattr(torchvision.datasets, class_name)
    bases: list[tuple[Path, str]] = []
    searched: list[str] = []
    if root is not None:
        bases.append((root, "root"))
    else:
        searched.append("root: not given (--data-dir)")
    env = _env_data_dir()
    if env is not None:
        bases.append((env, "$SELFSUP_DATA"))
    else:
        searched.append("$SELFSUP_DATA: not set")
    bases.append((cache_dir(), "download cache"))

    found: tuple[Path, str] | None = None
    for base, origin in bases:
        if base.name == folder and base.is_dir():
            found = (base.parent, origin)
            break
        if (base / folder).is_dir():
            found = (base, origin)
            break
        searched.append(f"{base / folder} ({origin})")

    train = split == "train"
    if found is not None:
        try:
            tv = dataset_class(root=str(found[0]), train=train, download=False)
        except RuntimeError as exc:
            raise DatasetNotFoundError(
                f"{class_name}: {found[0] / folder} exists but its files are missing or corrupt "
                f"({exc}); delete the folder and download again (download=True / --download)"
            ) from exc
        source = f"{found[0] / folder} ({found[1]})"
    else:
        target = root if root is not None else cache_dir()
        download_error = ""
        tv = None
        if download:
            try:
                tv = dataset_class(root=str(target), train=train, download=True)
            except Exception as exc:  # network, HTTP, checksum and file-system errors alike
                download_error = f"\nDownload into {target} failed: {type(exc).__name__}: {exc}"
        if tv is None:
            lines = "\n".join(f"  - {s}" for s in searched)
            raise DatasetNotFoundError(
                f"{class_name} not found: no {folder}/ folder (torchvision's python version) in:\n"
                f"{lines}{download_error}\nTo get the data: pass --data-dir DIR (root=DIR) where "
                f"DIR/{folder} exists; or set SELFSUP_DATA=DIR; or pass download=True (--download) "
                "on a machine with internet access."
            )
        source = f"{target / folder} (downloaded)"
    images = torch.from_numpy(np.ascontiguousarray(tv.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(tv.targets, dtype=torch.int64)
    num_classes = 10 if key == "cifar10" else 100
    return TensorImageDataset(
        images, labels, key, num_classes, class_names=list(tv.classes), source=source
    )


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------


def _load_digits(split: str) -> TensorImageDataset:
    _check_split("digits", split, ("train", "test"))
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    values = np.asarray(digits.data, dtype=np.float64)  # [1797, 64], 0..16
    images = np.rint(values * 255.0 / 16.0).astype(np.uint8).reshape(-1, 1, 8, 8)
    targets = np.asarray(digits.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(targets)), test_size=0.2, stratify=targets, random_state=DIGITS_SPLIT_SEED
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    return TensorImageDataset(
        torch.from_numpy(images[idx]),
        torch.from_numpy(targets[idx]),
        "digits",
        10,
        class_names=[str(d) for d in range(10)],
        source="sklearn.datasets.load_digits",
    )


# --------------------------------------------------------------------------------------------
# Image folders and file lists
# --------------------------------------------------------------------------------------------

_FOLDER_SPLITS = ("train", "test", "val")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_below(directory: Path) -> list[Path]:
    """Image files anywhere below ``directory`` (hidden entries skipped), sorted by path."""
    found: list[Path] = []
    for current, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(current) / f for f in filenames if _is_image_name(f)]
    return sorted(found)


def _require_root(name: str, root: Path | None, what: str) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} needs root=<{what}> (--data-dir); none was given")
    if not root.exists():
        raise DatasetNotFoundError(
            f"{name}: {root} does not exist; pass the path of an existing {what}"
        )
    return root


def _load_folder(
    root: Path | None, split: str, image_size: int, channels: int, strict: bool
) -> FileImageDataset:
    root = _require_root("folder", root, "image folder")
    if not root.is_dir():
        raise ValueError(
            f"folder: {root} is not a directory; use dataset 'filelist' for a list file"
        )
    present = [s for s in _FOLDER_SPLITS if (root / s).is_dir()]
    if (root / split).is_dir():
        base = root / split
    elif present:
        raise ValueError(
            f"folder: {root} has split folders {present} but no {split!r}; pass split= one of them"
        )
    elif split == "train":
        base = root  # an unsplit folder is all training data
    else:
        raise ValueError(
            f"folder: {root} has no {split!r} sub-folder; create {root / split} or use split='train' "
            "for the whole folder (evaluation then holds out its own validation part)"
        )

    entries = sorted(os.scandir(base), key=lambda e: e.name)
    top_images = [Path(e.path) for e in entries if e.is_file() and _is_image_name(e.name)]
    classes: list[tuple[str, list[Path]]] = []
    for entry in entries:
        if entry.is_dir() and not entry.name.startswith("."):
            files = _images_below(Path(entry.path))
            if files:
                classes.append((entry.name, files))
    accepted = " ".join(IMAGE_EXTENSIONS)
    if classes and top_images:
        raise ValueError(
            f"folder: {base} mixes {len(top_images)} loose images with class sub-folders "
            f"{[c for c, _ in classes][:5]}; move the loose images into a class folder (labelled) "
            "or the sub-folders' images up (unlabelled)"
        )
    if classes:
        paths = [p for _, files in classes for p in files]
        labels = [k for k, (_, files) in enumerate(classes) for _ in files]
        names = [c for c, _ in classes]
        return FileImageDataset(
            paths, labels, image_size, channels, "folder", names, strict=strict, source=str(base)
        )
    if top_images:
        return FileImageDataset(
            top_images, None, image_size, channels, "folder", strict=strict, source=str(base)
        )
    raise ValueError(
        f"folder: no image files in {base} or its sub-folders; add images with one of the "
        f"accepted extensions (case-insensitive: {accepted}) or point data_dir at your images"
    )


_INT = re.compile(r"[+-]?\d+")


def _load_filelist(
    root: Path | None, image_size: int, channels: int, strict: bool
) -> FileImageDataset:
    list_path = _require_root("filelist", root, "list file")
    if list_path.is_dir():
        raise ValueError(
            f"filelist: {list_path} is a directory; pass a text file, or use dataset 'folder'"
        )
    paths: list[Path] = []
    labels: list[int] = []
    labelled_line = unlabelled_line = 0
    missing: list[str] = []
    text = list_path.read_text(encoding="utf-8")
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) == 2 and _INT.fullmatch(parts[1]):
            name, label = parts[0], int(parts[1])
            if label < 0:
                raise ValueError(
                    f"filelist: {list_path}:{lineno}: label {label} is negative; labels are class "
                    "indices >= 0 (leave the label out for unlabelled data)"
                )
            labelled_line = labelled_line or lineno
            labels.append(label)
        else:
            name = line
            unlabelled_line = unlabelled_line or lineno
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = list_path.parent / path
        if not path.is_file():
            missing.append(f"{list_path}:{lineno}: {path}")
        paths.append(path)
    if labelled_line and unlabelled_line:
        raise ValueError(
            f"filelist: {list_path} mixes labelled (line {labelled_line}) and unlabelled (line "
            f"{unlabelled_line}) entries; give every line a label or none"
        )
    if not paths:
        raise ValueError(f"filelist: {list_path} lists no images; write one image path per line")
    if missing:
        shown = "\n  ".join(missing[:5])
        raise DatasetNotFoundError(
            f"filelist: {len(missing)} listed image(s) do not exist:\n  {shown}\nFix the paths "
            f"(relative paths resolve against {list_path.parent})"
        )
    return FileImageDataset(
        paths,
        labels or None,
        image_size,
        channels,
        "filelist",
        strict=strict,
        source=str(list_path),
    )


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    download: bool = False,
    strict: bool = False,
) -> ImageDataset:
    """Load dataset ``name`` (one of ``DATASETS``; ``-`` works for ``_``) as uint8 images.

    ``split``: "train" / "test" (folders also "val", file lists ignore it). ``root``: data
    directory (folder / list file for "folder" / "filelist"). ``image_size``: in-memory datasets
    keep their native size when None, else are resized once here (bilinear, antialiased); file
    datasets decode to ``image_size`` squares (default 64). ``channels``: 1 or 3, converted
    once here when it differs from the data's (file datasets default to 3). ``download``: let
    torchvision fetch MNIST / Fashion-MNIST / CIFAR when they are found nowhere. ``strict``:
    for file datasets, stop at the first unreadable image instead of skipping it with a warning.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1, 3 or None (keep the data's), got {channels!r}")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    root_path = Path(root).expanduser() if root is not None else None

    if key == "folder":
        size = image_size or DEFAULT_FILE_IMAGE_SIZE
        return _load_folder(root_path, split, size, channels or 3, strict)
    if key == "filelist":
        return _load_filelist(
            root_path, image_size or DEFAULT_FILE_IMAGE_SIZE, channels or 3, strict
        )
    dataset: TensorImageDataset
    if key in _IDX_SPECS:
        dataset = _load_idx_dataset(key, split, root_path, download)
    elif key in _CIFAR_FOLDERS:
        dataset = _load_cifar(key, split, root_path, download)
    else:
        dataset = _load_digits(split)
    return _adapt(dataset, image_size, channels)
