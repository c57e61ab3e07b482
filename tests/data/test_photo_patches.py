"""photo_patches: colour patches of scikit-image's bundled photographs, labelled by photograph,
deterministic, with train and test patches cut from disjoint tiles."""

from __future__ import annotations

import sys

import pytest
import torch

from selfsup.data import load_dataset
from selfsup.data.photo_patches import PHOTOS, TEST_EVERY, _patches, load_photo_patches

pytest.importorskip("skimage")


def test_labelled_colour_patches_with_class_names():
    train, test = load_photo_patches("train"), load_photo_patches("test")
    assert train.images.shape[1:] == test.images.shape[1:] == (3, 32, 32)
    assert (len(train), len(test)) == (2917, 967)
    assert train.num_classes == test.num_classes == len(PHOTOS) == 8
    assert train.class_names == [name for name, _ in PHOTOS]
    assert "chelsea" in train.class_names and "colorwheel" not in train.class_names
    for split in (train, test):
        counts = split.labels.bincount(minlength=8)
        assert bool((counts >= 90).all())  # every photograph in both splits
    assert len(test) / (len(train) + len(test)) == pytest.approx(0.25, abs=0.02)
    # real colour: most patches are far from grey (the channels differ)
    spread = (train.images.float().amax(1) - train.images.float().amin(1)).mean(dim=(1, 2))
    assert (spread > 10).float().mean() > 0.8


def test_deterministic_and_sized_by_image_size():
    a, b = load_photo_patches("test", 16), load_photo_patches("test", 16)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape[1:] == (3, 16, 16)
    via_name = load_dataset("photo_patches", "test", image_size=16)
    assert torch.equal(via_name.images, a.images)  # image_size is the patch side, no resize
    assert load_dataset("photo-patches", "test", channels=1).images.shape[1] == 1


def test_no_test_patch_is_a_train_patch():
    train, test = load_photo_patches("train", 16), load_photo_patches("test", 16)
    seen = {bytes(p.numpy()) for p in train.images}
    assert not any(bytes(p.numpy()) in seen for p in test.images)


def test_train_and_test_patches_share_no_pixel():
    """On an image whose pixels are all different (their coordinates encoded in the channels),
    the train and test patches cover disjoint pixel sets and each split is whole tiles."""
    size = 128  # 8 tiles of 16 for patch 8 (tile = 2 patches)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.stack([rows, cols, torch.zeros_like(rows)]).to(torch.uint8)  # [3, 128, 128]
    image[2] = 200  # pixels vary enough not to be dropped as flat
    image[2, ::2] = 0
    train, test = _patches(image, 8)

    def pixels(patches: torch.Tensor) -> set[tuple[int, int]]:
        coords = patches[:, :2].permute(0, 2, 3, 1).reshape(-1, 2)
        return {tuple(c) for c in coords.tolist()}

    train_px, test_px = pixels(train), pixels(test)
    assert train_px.isdisjoint(test_px)
    assert len(train_px) + len(test_px) == size * size  # every pixel of the tiled area is used
    assert {(r // 16 - c // 16) % TEST_EVERY for r, c in test_px} == {0}
    assert len(test) == 16 * 25 and len(train) == 48 * 25  # 64 tiles, 1 in 4 test, 25 each


def test_bad_arguments_and_missing_scikit_image_name_the_fix(monkeypatch):
    with pytest.raises(ValueError, match="splits"):
        load_photo_patches("val")
    with pytest.raises(ValueError, match=">= 8"):
        load_photo_patches("train", 4)
    with pytest.raises(ValueError, match="reads no files"):
        load_dataset("photo_patches", "train", root="/tmp")
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    from selfsup.data import photo_patches

    photo_patches._resized.cache_clear()
    with pytest.raises(ImportError, match="pip install scikit-image"):
        load_photo_patches("train", 24)
    photo_patches._resized.cache_clear()
