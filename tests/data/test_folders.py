"""Image folders, file lists and FileImageDataset's arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from selfsup.data import DatasetNotFoundError, FileImageDataset, load_dataset


def save_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_folder_with_class_subfolders(tmp_path: Path) -> None:
    save_png(tmp_path / "zebra" / "a.png", (10, 20, 30))
    save_png(tmp_path / "cat" / "b.PNG", (40, 50, 60))
    save_png(tmp_path / "cat" / "nested" / "c.JpEg", (200, 0, 0), size=(20, 30))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "empty_dir").mkdir()  # no images: not a class
    (tmp_path / ".hidden").mkdir()
    save_png(tmp_path / ".hidden" / "x.png", (1, 1, 1))

    ds = load_dataset("folder", root=tmp_path, image_size=8)
    assert isinstance(ds, FileImageDataset)
    assert ds.class_names == ["cat", "zebra"] and ds.num_classes == 2 and ds.has_labels
    assert len(ds) == 3 and ds.labels.tolist() == [0, 0, 1]
    assert ds.image_size == (8, 8) and ds.channels == 3
    image, label = ds[0]  # cat/b.PNG
    assert image.shape == (3, 8, 8) and image.dtype == torch.uint8 and label == 0
    assert image[:, 4, 4].tolist() == [40, 50, 60]
    images, labels = ds.get_batch(torch.tensor([2, 0]))
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [1, 0]
    assert images[0, :, 0, 0].tolist() == [10, 20, 30]


def test_folder_flat_is_unlabelled_and_gray(tmp_path: Path) -> None:
    save_png(tmp_path / "one.png", (255, 0, 0))
    save_png(tmp_path / "two.bmp", (0, 0, 255))
    ds = load_dataset("folder", root=tmp_path, channels=1)
    assert not ds.has_labels and ds.num_classes is None and ds.class_names is None
    assert ds.image_size == (64, 64)  # default decode size
    image, label = ds[0]
    assert label == -1 and image.shape == (1, 64, 64) and int(image[0, 3, 3]) == 76  # red's luma
    assert ds.get_batch(torch.tensor([0, 1]))[1].tolist() == [-1, -1]


def test_decode_matches_torchvision_resize_and_center_crop(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for k, (h, w) in enumerate([(30, 41), (45, 20), (9, 9)]):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / f"im{k}.png")
    ds = load_dataset("folder", root=tmp_path, image_size=16)
    for k in range(3):
        with Image.open(tmp_path / f"im{k}.png") as pil:
            ref = TF.center_crop(TF.resize(pil.convert("RGB"), 16), [16, 16])
        np.testing.assert_array_equal(ds[k][0].permute(1, 2, 0).numpy(), np.array(ref))


def test_folder_splits(tmp_path: Path) -> None:
    for split in ("train", "test"):
        save_png(tmp_path / split / "a" / f"{split}.png", (1, 2, 3))
        save_png(tmp_path / split / "b" / f"{split}2.png", (1, 2, 3))
    test = load_dataset("folder", "test", root=tmp_path)
    assert isinstance(test, FileImageDataset)
    assert [p.name for p in test.paths] == ["test.png", "test2.png"] and test.class_names == [
        "a",
        "b",
    ]
    with pytest.raises(ValueError, match="no 'val'"):
        load_dataset("folder", "val", root=tmp_path)


def test_unsplit_folder_has_no_test_split(tmp_path: Path) -> None:
    save_png(tmp_path / "x.png", (1, 2, 3))
    with pytest.raises(ValueError, match="split='train'"):
        load_dataset("folder", "test", root=tmp_path)


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as info:
        load_dataset("folder", root=tmp_path / "empty")
    assert (
        str(tmp_path / "empty") in str(info.value)
        and ".png" in str(info.value)
        and ".tiff" in str(info.value)
    )

    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "readme.txt").write_text("x")
    (tmp_path / "docs" / "sub" / "data.csv").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        load_dataset("folder", root=tmp_path / "docs")

    save_png(tmp_path / "mixed" / "loose.png", (0, 0, 0))
    save_png(tmp_path / "mixed" / "cls" / "a.png", (0, 0, 0))
    with pytest.raises(ValueError, match="mixes"):
        load_dataset("folder", root=tmp_path / "mixed")

    with pytest.raises(DatasetNotFoundError):
        load_dataset("folder", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="needs root"):
        load_dataset("folder")


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"bad\.png"):  # no readable image: fails when built
        load_dataset("folder", root=tmp_path)


def test_filelist_labelled_relative_absolute_comments(tmp_path: Path) -> None:
    save_png(tmp_path / "imgs" / "a.png", (10, 10, 10))
    save_png(tmp_path / "imgs" / "with space.png", (20, 20, 20))
    save_png(tmp_path / "elsewhere" / "c.png", (30, 30, 30))
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text(
        "# comment line\n"
        "../imgs/a.png 2\n"
        "\n"
        f"  ../imgs/with space.png   0  \n"
        f"{tmp_path / 'elsewhere' / 'c.png'} 1\n"
    )
    ds = load_dataset("filelist", root=listing, image_size=4, channels=1)
    assert isinstance(ds, FileImageDataset)
    assert len(ds) == 3 and ds.labels.tolist() == [2, 0, 1] and ds.num_classes == 3
    assert [int(ds[i][0][0, 0, 0]) for i in range(3)] == [10, 20, 30]

    unlabelled = tmp_path / "lists" / "u.txt"
    unlabelled.write_text("../imgs/a.png\n../imgs/with space.png\n")
    u = load_dataset("filelist", root=unlabelled)
    assert not u.has_labels and len(u) == 2 and u[1][1] == -1


def test_filelist_errors(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", (0, 0, 0))
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("a.png 1\na.png\n")
    with pytest.raises(ValueError, match="mixes labelled"):
        load_dataset("filelist", root=mixed)
    missing = tmp_path / "missing.txt"
    missing.write_text("a.png 0\nghost.png 1\n")
    with pytest.raises(DatasetNotFoundError, match=r"missing.txt:2"):
        load_dataset("filelist", root=missing)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="lists no images"):
        load_dataset("filelist", root=empty)
    negative = tmp_path / "neg.txt"
    negative.write_text("a.png -1\n")
    with pytest.raises(ValueError, match="negative"):
        load_dataset("filelist", root=negative)


def test_file_dataset_validation(tmp_path: Path) -> None:
    save_png(tmp_path / "a.png", (0, 0, 0))
    with pytest.raises(ValueError, match="one label per path"):
        FileImageDataset([tmp_path / "a.png"], [0, 1], 8)
    with pytest.raises(ValueError, match="channels"):
        FileImageDataset([tmp_path / "a.png"], None, 8, channels=4)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        FileImageDataset([tmp_path / "a.png"], [5], 8, class_names=["a"])
    with pytest.raises(ValueError, match="positive int"):
        FileImageDataset([tmp_path / "a.png"], None, 0)
