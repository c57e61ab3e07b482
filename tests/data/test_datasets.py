"""Datasets: IDX search order, real Fashion-MNIST, CIFAR layout, digits, folders, file lists."""

from __future__ import annotations

import gzip
import os
import pickle
from collections import Counter
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets
import torchvision.transforms.functional as TF
from PIL import Image

from selfsup.data import (
    DATASETS,
    DatasetNotFoundError,
    FileImageDataset,
    TensorImageDataset,
    convert_channels,
    load_dataset,
    resize_images,
)
from selfsup.data import datasets as ds_module
from selfsup.data.idx import write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the caller's SELFSUP_DATA, download cache or (for MNIST) Debian data."""
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setitem(ds_module.DEBIAN_DATA_DIRS, "mnist", tmp_path / "no-debian-mnist")


def write_fake_idx(
    directory: Path, marker: int, n_train: int = 6, n_test: int = 4, gz: bool = True
) -> None:
    """IDX train/t10k files whose pixels all equal ``marker`` (tells the directories apart)."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.full((n, 28, 28), marker, dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)  # per-image identity
        write_idx(directory / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(
            directory / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10
        )


def marker_of(dataset: object) -> int:
    assert isinstance(dataset, TensorImageDataset)
    return int(dataset.images[0, 0, 5, 5])


# ------------------------------------------------------------------------------------------
# Fashion-MNIST / MNIST
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion_train() -> TensorImageDataset:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR}")
    ds = load_dataset("fashion_mnist", "train", root=FASHION_DIR)
    assert isinstance(ds, TensorImageDataset)
    return ds


def test_fashion_mnist_real_train(fashion_train: TensorImageDataset) -> None:
    ds = fashion_train
    assert len(ds) == 60000 and ds.images.shape == (60000, 1, 28, 28)
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.channels == 1 and ds.image_size == (28, 28) and ds.num_classes == 10
    assert ds.has_labels and ds.class_names is not None and ds.class_names[9] == "Ankle boot"
    # Fashion-MNIST is balanced: 6000 training images per class.
    assert torch.bincount(ds.labels, minlength=10).tolist() == [6000] * 10
    # Independent decode of the first images: 16-byte header, then row-major pixels.
    with gzip.open(FASHION_DIR / "train-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read(16 + 3 * 784)
    expected = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(3, 1, 28, 28)
    np.testing.assert_array_equal(ds.images[:3].numpy(), expected)
    with gzip.open(FASHION_DIR / "train-labels-idx1-ubyte.gz", "rb") as f:
        raw_labels = f.read(8 + 5)
    assert ds.labels[:5].tolist() == list(raw_labels[8:])
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and isinstance(label, int)


def test_fashion_mnist_real_test_split_from_debian_path() -> None:
    if not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST not installed in {FASHION_DIR}")
    ds = load_dataset("fashion-mnist", "test")  # found through DEBIAN_DATA_DIRS
    assert isinstance(ds, TensorImageDataset)
    assert ds.images.shape == (10000, 1, 28, 28)
    assert int(ds.labels.min()) == 0 and int(ds.labels.max()) == 9
    assert "Debian" in ds.source


def test_search_order_root_then_env_then_debian(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, env, debian = tmp_path / "root", tmp_path / "env", tmp_path / "debian"
    write_fake_idx(root, marker=101)
    write_fake_idx(env / "fashion-mnist", marker=102)
    write_fake_idx(debian, marker=103)
    monkeypatch.setitem(ds_module.DEBIAN_DATA_DIRS, "fashion_mnist", debian)
    monkeypatch.setenv("SELFSUP_DATA", str(env))

    assert marker_of(load_dataset("fashion_mnist", root=root)) == 101
    assert marker_of(load_dataset("fashion_mnist")) == 102
    # A root without the files falls through to the next place.
    assert marker_of(load_dataset("fashion_mnist", root=tmp_path / "empty")) == 102
    monkeypatch.delenv("SELFSUP_DATA")
    assert marker_of(load_dataset("fashion_mnist")) == 103


@pytest.mark.parametrize("subdir", ["", "fashion_mnist", "FashionMNIST/raw"])
def test_env_dir_itself_and_typical_subfolders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subdir: str
) -> None:
    env = tmp_path / "env"
    write_fake_idx(env / subdir, marker=77, gz=False)  # plain (uncompressed) files
    monkeypatch.setenv("SELFSUP_DATA", str(env))
    monkeypatch.setitem(ds_module.DEBIAN_DATA_DIRS, "fashion_mnist", tmp_path / "none")
    ds = load_dataset("fashion_mnist", "test")
    assert marker_of(ds) == 77 and len(ds) == 4
    assert ds.images[:, 0, 0, 0].tolist() == [0, 1, 2, 3]


def test_mnist_test_split_uses_t10k_files(tmp_path: Path) -> None:
    write_fake_idx(tmp_path / "d" / "MNIST" / "raw", marker=5, n_train=7, n_test=3)
    train = load_dataset("mnist", "train", root=tmp_path / "d")
    test = load_dataset("mnist", "test", root=tmp_path / "d")
    assert (len(train), len(test)) == (7, 3)
    assert train.class_names == [str(d) for d in range(10)]


def test_missing_idx_data_names_every_place_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    debian = tmp_path / "debian-empty"
    monkeypatch.setitem(ds_module.DEBIAN_DATA_DIRS, "fashion_mnist", debian)
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist", root=tmp_path / "r")
    message = str(info.value)
    for place in (
        tmp_path / "r",
        tmp_path / "env",
        tmp_path / "env" / "FashionMNIST" / "raw",
        debian,
    ):
        assert str(place) in message
    assert str(tmp_path / "xdg-cache" / "selfsup" / "FashionMNIST" / "raw") in message
    for fix in (
        "--data-dir",
        "SELFSUP_DATA=",
        "apt-get install dataset-fashion-mnist",
        "download=True",
    ):
        assert fix in message
    assert isinstance(info.value, FileNotFoundError)


class _FailingDownload:
    def __init__(self, root: str, train: bool, download: bool) -> None:
        raise URLError("no route to host")


class _FakeDownload:
    """Stands in for torchvision's FashionMNIST: writes IDX files where torchvision would."""

    def __init__(self, root: str, train: bool, download: bool) -> None:
        assert download
        write_fake_idx(Path(root) / "FashionMNIST" / "raw", marker=55, gz=False)


def test_download_failure_becomes_dataset_not_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ds_module.DEBIAN_DATA_DIRS, "fashion_mnist", tmp_path / "none")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _FailingDownload)
    with pytest.raises(DatasetNotFoundError, match="no route to host"):
        load_dataset("fashion_mnist", download=True)


def test_download_goes_to_cache_and_is_found_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ds_module.DEBIAN_DATA_DIRS, "fashion_mnist", tmp_path / "none")
    with pytest.raises(DatasetNotFoundError):
        load_dataset("fashion_mnist")  # download=False never downloads
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _FakeDownload)
    assert marker_of(load_dataset("fashion_mnist", download=True)) == 55
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _FailingDownload)
    assert marker_of(load_dataset("fashion_mnist")) == 55  # the cache is searched


def test_corrupt_idx_labels_mismatch(tmp_path: Path) -> None:
    write_fake_idx(tmp_path, marker=1)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels"):
        load_dataset("mnist", root=tmp_path)


def test_bad_split_and_unknown_name() -> None:
    with pytest.raises(ValueError, match="'train', 'test'"):
        load_dataset("digits", "val")
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet")
    assert all(name in str(info.value) for name in DATASETS)


# ------------------------------------------------------------------------------------------
# CIFAR
# ------------------------------------------------------------------------------------------


def _write_cifar(base: Path, hundred: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tiny CIFAR folders in torchvision's python layout; returns the rows per split."""
    folder = base / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"
    files = (
        {"train": ["train"], "test": ["test"]}
        if hundred
        else {
            "train": [f"data_batch_{i}" for i in range(1, 6)],
            "test": ["test_batch"],
        }
    )
    rows: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for split, names in files.items():
        for name in names:
            data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
            lab = rng.integers(0, 100 if hundred else 10, 2).tolist()
            with open(folder / name, "wb") as f:
                pickle.dump({"data": data, label_key: lab}, f)
            rows[split].append(data)
            labels[split] += lab
    meta_name, meta_key = (
        ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    )
    with open(folder / meta_name, "wb") as f:
        n = 100 if hundred else 10
        pickle.dump({meta_key: [f"class{i}" for i in range(n)]}, f)
    out = {s: np.concatenate(r) for s, r in rows.items()}
    out.update({f"{s}_labels": np.array(v) for s, v in labels.items()})
    return out


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_layout_from_fake_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hundred: bool
) -> None:
    import torchvision.datasets.cifar as tv_cifar

    # The real files are verified by md5; fake ones only need to exist.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    truth = _write_cifar(tmp_path, hundred, np.random.default_rng(1))
    name = "cifar100" if hundred else "cifar10"
    for split in ("train", "test"):
        ds = load_dataset(name, split, root=tmp_path)
        assert isinstance(ds, TensorImageDataset)
        rows = truth[split]
        assert ds.images.shape == (len(rows), 3, 32, 32) and ds.images.dtype == torch.uint8
        # A CIFAR row is the R plane, then G, then B, each 32x32 row-major.
        for i in range(len(rows)):
            for c in range(3):
                plane = rows[i, c * 1024 : (c + 1) * 1024].reshape(32, 32)
                np.testing.assert_array_equal(ds.images[i, c].numpy(), plane)
        assert ds.labels.tolist() == truth[f"{split}_labels"].tolist()
        assert ds.num_classes == (100 if hundred else 10)
        assert ds.class_names is not None and ds.class_names[3] == "class3"
    # SELFSUP_DATA is searched too, and pointing at the batches folder itself works.
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path))
    assert len(load_dataset(name, "test")) == len(truth["test"])
    folder = "cifar-100-python" if hundred else "cifar-10-batches-py"
    assert len(load_dataset(name, "test", root=tmp_path / folder)) == len(truth["test"])


def test_cifar_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", root=tmp_path / "data")
    message = str(info.value)
    assert str(tmp_path / "data" / "cifar-10-batches-py") in message
    assert "download=True" in message and "--data-dir" in message
    # Present but failing torchvision's md5 check: corrupt, with the fix.
    _write_cifar(tmp_path / "data", False, np.random.default_rng(0))
    with pytest.raises(DatasetNotFoundError, match="missing or corrupt"):
        load_dataset("cifar10", root=tmp_path / "data")


# ------------------------------------------------------------------------------------------
# digits, conversions
# ------------------------------------------------------------------------------------------


def test_digits_shapes_values_and_stratified_split() -> None:
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert isinstance(train, TensorImageDataset) and isinstance(test, TensorImageDataset)
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape == (1437, 1, 8, 8) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64 and train.num_classes == 10

    sk = load_digits()
    expected = np.array([round(v * 255 / 16) for v in range(17)])  # 0..16 -> 0..255
    assert expected[8] == 128 and expected[16] == 255 and expected[1] == 16
    ref_images = expected[sk.data.astype(int)].astype(np.uint8).reshape(-1, 1, 8, 8)
    # Each original (image, label) lands in exactly one split.
    want = Counter((im.tobytes(), int(y)) for im, y in zip(ref_images, sk.target))
    got = Counter(
        (im.numpy().tobytes(), int(y)) for d in (train, test) for im, y in zip(d.images, d.labels)
    )
    assert got == want
    # Stratified: each class has 20% of its images in test, up to rounding.
    per_class = np.bincount(sk.target, minlength=10)
    test_counts = torch.bincount(test.labels, minlength=10).numpy()
    assert np.all(np.abs(test_counts - 0.2 * per_class) <= 1)
    # Deterministic.
    again = load_dataset("digits", "test")
    assert isinstance(again, TensorImageDataset)
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


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


# ------------------------------------------------------------------------------------------
# Folders and file lists
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# Dataset classes
# ------------------------------------------------------------------------------------------


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
