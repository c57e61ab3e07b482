"""iterate_batches: every requested image once, in order, as uint8 batches on the device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from selfsup.data import FileImageDataset, TensorImageDataset, iterate_batches


def numbered(n: int, labelled: bool = True) -> TensorImageDataset:
    """``n`` 1x2x2 images whose pixels equal their index (tells the images apart)."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    labels = torch.arange(n) % 3 if labelled else None
    return TensorImageDataset(images, labels, "numbered", 3 if labelled else None)


def test_whole_dataset_in_order_with_a_short_last_batch() -> None:
    data = numbered(7)
    batches = list(iterate_batches(data, 3, "cpu"))
    assert [len(images) for images, _ in batches] == [3, 3, 1]
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    assert images.dtype == torch.uint8 and images.shape == (7, 1, 2, 2)
    assert torch.equal(images, data.images) and torch.equal(labels, data.labels)
    assert labels.dtype == torch.int64


def test_indices_choose_the_images_and_their_order() -> None:
    data = numbered(10)
    indices = torch.tensor([9, 2, 5, 0, 7])
    batches = list(iterate_batches(data, 2, "cpu", indices))
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    assert images[:, 0, 0, 0].tolist() == [9, 2, 5, 0, 7]
    assert labels.tolist() == [0, 2, 2, 0, 1]


def test_unlabelled_data_gives_minus_one_and_file_datasets_work(tmp_path: Path) -> None:
    data = numbered(4, labelled=False)
    ((_, labels),) = iterate_batches(data, 8, "cpu")
    assert labels.tolist() == [-1] * 4
    paths = []
    for value in (10, 20, 30):
        paths.append(tmp_path / f"{value}.png")
        Image.new("L", (4, 4), value).save(paths[-1])
    files = FileImageDataset(paths, [0, 1, 0], 4, channels=1)
    batches = list(iterate_batches(files, 2, torch.device("cpu")))
    assert [images[:, 0, 0, 0].tolist() for images, _ in batches] == [[10, 20], [30]]
    assert [labels.tolist() for _, labels in batches] == [[0, 1], [0]]


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_rejects_a_batch_size_that_is_not_a_positive_int(batch_size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        next(iterate_batches(numbered(3), batch_size, "cpu"))  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_images_move_to_the_device_labels_stay() -> None:
    data = numbered(5)
    for images, labels in iterate_batches(data, 2, "cuda"):
        assert images.device.type == "cuda" and images.dtype == torch.uint8
        assert labels.device.type == "cpu"
