"""``photo_patches``: labelled colour patches of scikit-image's bundled photographs (offline).

A small colour dataset that needs no download: each of eight colour photographs shipped inside
the scikit-image wheel is a class, and its images are square patches cut from it. It exists so
that colour methods (Colorization) can be trained and evaluated anywhere, in seconds.

How the patches are cut, for a patch side ``p`` (``data.image_size``, default 32):

1. The photograph is resized (PIL bilinear, antialiased: exact integer arithmetic, the same
   bytes on every machine) so that its shorter side is ``8 p`` pixels: a patch sees 1/8 of the
   short side, at any ``p`` the same content.
2. The centred ``2p``-multiple part is cut into tiles of ``2p x 2p``. Tile ``(row, col)``
   belongs to the test split when ``(row - col) % 4 == 0`` (one tile in four, on diagonals, so
   every part of the photograph has test tiles), to the train split otherwise.
3. Inside each tile, patches of ``p x p`` every ``p / 4`` pixels (25 per tile). A patch never
   crosses a tile, so train and test patches share no pixel.
4. Flat patches (pixel standard deviation below 4 of 255: the black corners of the retina
   photograph) are dropped: they carry no information about their source.

At ``p = 32``: 2917 train and 967 test patches, 8 classes of 292 to 450 train patches. The label
is the index of the source photograph in :data:`PHOTOS`, its name in ``class_names``.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from PIL import Image

from selfsup.data.memory import TensorImageDataset

__all__ = ["PHOTOS", "load_photo_patches"]

# (class name, scikit-image loader): real colour photographs only (no drawings, no grey ones);
# chelsea == cat, and only the left image of the stereo pair (the right one is the same scene).
PHOTOS: tuple[tuple[str, str], ...] = (
    ("astronaut", "astronaut"),
    ("coffee", "coffee"),
    ("chelsea", "chelsea"),
    ("rocket", "rocket"),
    ("hubble_deep_field", "hubble_deep_field"),
    ("immunohistochemistry", "immunohistochemistry"),
    ("retina", "retina"),
    ("motorcycle", "stereo_motorcycle"),
)
SCALE = 8  # the photograph's shorter side, in patch sides
TILE = 2  # tile side, in patch sides
TEST_EVERY = 4  # tile (row, col) is a test tile when (row - col) % TEST_EVERY == 0
FLAT_STD = 4.0  # patches whose pixels vary less than this (of 255) are dropped
MIN_PATCH = 8


def _skimage_data() -> Any:
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError(
            "data.dataset=photo_patches cuts patches from scikit-image's bundled photographs: "
            "pip install scikit-image (or pip install 'selfsup[photos]')"
        ) from err
    return skimage.data


def _photo(loader: str) -> np.ndarray:
    """The photograph as uint8 ``[H, W, 3]``."""
    image = getattr(_skimage_data(), loader)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


@functools.lru_cache(maxsize=32)
def _resized(loader: str, short_side: int) -> torch.Tensor:
    """The photograph resized so that its shorter side is ``short_side``: uint8 ``[3, H, W]``."""
    photo = _photo(loader)
    height, width = photo.shape[:2]
    scale = short_side / min(height, width)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    resized = Image.fromarray(photo).resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).contiguous()


def _patches(image: torch.Tensor, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test patches ``[N, 3, patch, patch]`` of one resized photograph."""
    tile, stride = TILE * patch, max(1, patch // 4)
    rows, cols = image.shape[1] // tile, image.shape[2] // tile
    top, left = (image.shape[1] - rows * tile) // 2, (image.shape[2] - cols * tile) // 2
    grid = image[:, top : top + rows * tile, left : left + cols * tile]
    tiles = grid.unfold(1, tile, tile).unfold(2, tile, tile)  # [3, rows, cols, tile, tile]
    cut = tiles.unfold(3, patch, stride).unfold(4, patch, stride)  # [3, r, c, k, k, p, p]
    cut = cut.permute(1, 2, 3, 4, 0, 5, 6)  # [rows, cols, k, k, 3, p, p]
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    is_test = (r - c) % TEST_EVERY == 0  # [rows, cols]
    out = []
    for mask in (~is_test, is_test):
        chosen = cut[mask].reshape(-1, 3, patch, patch)  # [N, 3, p, p]
        flat = chosen.flatten(1).float().std(dim=1) < FLAT_STD
        out.append(chosen[~flat].contiguous())
    return out[0], out[1]


def load_photo_patches(split: str, patch_size: int | None = None) -> TensorImageDataset:
    """The ``train`` or ``test`` patches (uint8 ``[N, 3, p, p]``, labelled by photograph).

    Example:
        >>> test = load_photo_patches("test", 16)
        >>> test.images.shape[1:], test.num_classes, test.class_names[0]
        (torch.Size([3, 16, 16]), 8, 'astronaut')
    """
    if split not in ("train", "test"):
        raise ValueError(
            f"photo_patches has splits ('train', 'test'), got split={split!r}; use one of them "
            "(hold out a validation set from 'train' when you need one)"
        )
    patch = 32 if patch_size is None else patch_size
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < MIN_PATCH:
        raise ValueError(
            f"photo_patches: the patch side (data.image_size) must be an int >= {MIN_PATCH}, got "
            f"{patch_size!r}; 32 is the default"
        )
    images, labels = [], []
    for label, (_, loader) in enumerate(PHOTOS):
        train, test = _patches(_resized(loader, SCALE * patch), patch)
        chosen = train if split == "train" else test
        images.append(chosen)
        labels.append(torch.full((len(chosen),), label, dtype=torch.int64))
    return TensorImageDataset(
        torch.cat(images),
        torch.cat(labels),
        "photo_patches",
        len(PHOTOS),
        class_names=[name for name, _ in PHOTOS],
        source=f"scikit-image {version('scikit-image')} bundled photographs, {patch} px patches",
    )
