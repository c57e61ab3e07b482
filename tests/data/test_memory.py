"""In-memory datasets: TensorImageDataset, load-time channel and size conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import TensorImageDataset, convert_channels, load_dataset, resize_images


def test_convert_channels_hand_values_and_pil() -> None:
    rgb = torch.tensor(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], dtype=torch.uint8
    )
    images = rgb.T.reshape(1, 3, 1, 5)  # [1, 3, 1, 5]
    gray = convert_channels(images, 1)
    # round(0.299*255)=76, round(0.587*255)=150, round(0.114*255)=29
    assert gray.shape == (1, 1, 1, 5) and gray.flatten().tolist() == [76, 150, 29, 255, 0]

    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, (2, 16, 20, 3), dtype=np.uint8)
    tensor = torch.from_numpy(array).permute(0, 3, 1, 2)
    ours = convert_channels(tensor, 1)
    for i in range(2):
        pil = np.array(Image.fromarray(array[i]).convert("L"))
        np.testing.assert_array_equal(ours[i, 0].numpy(), pil)
        exact = array[i].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        assert np.abs(ours[i, 0].numpy() - exact).max() <= 0.5 + 1e-3

    three = convert_channels(ours, 3)
    assert three.shape == (2, 3, 16, 20) and all(
        torch.equal(three[:, c], ours[:, 0]) for c in range(3)
    )
    with pytest.raises(ValueError, match="channels"):
        convert_channels(tensor, 2)


def test_load_time_channels_and_resize() -> None:
    base = load_dataset("digits", "test")
    rgb = load_dataset("digits", "test", channels=3)
    assert isinstance(base, TensorImageDataset) and isinstance(rgb, TensorImageDataset)
    assert rgb.images.shape == (360, 3, 8, 8) and rgb.channels == 3
    assert all(torch.equal(rgb.images[:, c], base.images[:, 0]) for c in range(3))
    assert torch.equal(rgb.labels, base.labels)

    big = load_dataset("digits", "test", image_size=16)
    assert isinstance(big, TensorImageDataset) and big.image_size == (16, 16)
    # PIL's bilinear resize is an independent reference; both round, so they agree to 1 level.
    for i in range(5):
        pil = np.array(
            Image.fromarray(base.images[i, 0].numpy()).resize((16, 16), Image.Resampling.BILINEAR)
        )
        assert np.abs(big.images[i, 0].numpy().astype(int) - pil.astype(int)).max() <= 1


def test_resize_images_downsample_against_pil_and_constants() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    small = resize_images(torch.from_numpy(array), 14)
    assert small.shape == (4, 1, 14, 14) and small.dtype == torch.uint8
    for i in range(4):
        pil = np.array(Image.fromarray(array[i, 0]).resize((14, 14), Image.Resampling.BILINEAR))
        assert np.abs(small[i, 0].numpy().astype(int) - pil.astype(int)).max() <= 1
    constant = torch.full((2, 3, 10, 10), 37, dtype=torch.uint8)
    assert torch.all(resize_images(constant, 7) == 37)


def test_tensor_dataset_validation_and_items() -> None:
    images = torch.arange(4 * 3 * 2 * 2, dtype=torch.uint8).reshape(4, 3, 2, 2)
    ds = TensorImageDataset(images, torch.tensor([0, 2, 1, 2]), "t", None)
    assert ds.num_classes == 3 and ds.image_size == (2, 2) and ds.channels == 3
    image, label = ds[-1]
    assert torch.equal(image, images[3]) and label == 2
    batch, labels = ds.get_batch(torch.tensor([3, 1]))
    assert (
        torch.equal(batch, images[[3, 1]])
        and labels.dtype == torch.int64
        and labels.tolist() == [2, 2]
    )
    with pytest.raises(IndexError):
        ds[4]

    unlabelled = TensorImageDataset(images, None, "u", None)
    assert not unlabelled.has_labels and unlabelled.labels.tolist() == [-1] * 4
    with pytest.raises(ValueError, match="uint8"):
        TensorImageDataset(images.float(), None, "f", None)
    with pytest.raises(ValueError, match="one label per image"):
        TensorImageDataset(images, torch.tensor([0, 1]), "n", None)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        TensorImageDataset(images, torch.tensor([0, 1, 2, 1]), "r", 2)
    with pytest.raises(ValueError, match="channels"):
        TensorImageDataset(torch.zeros(2, 2, 4, 4, dtype=torch.uint8), None, "c", None)
