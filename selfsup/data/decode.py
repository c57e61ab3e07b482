"""Decoding one image file to uint8 ``[C, S, S]``, and the errors for files that cannot be read.

``decode -> convert("RGB" | "L") -> resize shorter side to image_size -> center crop``. Unusual
modes are converted (16-bit scaled, alpha over white); what cannot be opened or decoded raises
``UnreadableImageError`` naming the file (``FileImageDataset`` decides to skip or stop).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

__all__ = ["ALPHA_BACKGROUND", "UnreadableImageError", "UnreadableImageWarning", "decode_image"]


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
