"""Datasets by name: IDX search order, real Fashion-MNIST, CIFAR layout, digits."""

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

from selfsup.data import DATASETS, DatasetNotFoundError, TensorImageDataset, load_dataset
from selfsup.data import named as named_module
from selfsup.data.idx import write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _isolated_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the caller's SELFSUP_DATA, download cache or (for MNIST) Debian data."""
    monkeypatch.delenv("SELFSUP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setitem(named_module.DEBIAN_DATA_DIRS, "mnist", tmp_path / "no-debian-mnist")


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
    monkeypatch.setitem(named_module.DEBIAN_DATA_DIRS, "fashion_mnist", debian)
    monkeypatch.setenv("SELFSUP_DATA", str(env))

    ds = load_dataset("fashion_mnist", root=root)
    assert marker_of(ds) == 101 and ds.location == str(root)
    assert marker_of(load_dataset("fashion_mnist")) == 102
    # An explicit root is the only place searched: data elsewhere is never used in its place.
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="not found") as err:
        load_dataset("fashion_mnist", root=tmp_path / "empty")
    assert str(env) not in str(err.value)
    with pytest.raises(DatasetNotFoundError, match=r"missing does not exist.*fix the path"):
        load_dataset("fashion_mnist", root=tmp_path / "missing")
    monkeypatch.delenv("SELFSUP_DATA")
    assert marker_of(load_dataset("fashion_mnist")) == 103


@pytest.mark.parametrize("subdir", ["", "fashion_mnist", "FashionMNIST/raw"])
def test_env_dir_itself_and_typical_subfolders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subdir: str
) -> None:
    env = tmp_path / "env"
    write_fake_idx(env / subdir, marker=77, gz=False)  # plain (uncompressed) files
    monkeypatch.setenv("SELFSUP_DATA", str(env))
    monkeypatch.setitem(named_module.DEBIAN_DATA_DIRS, "fashion_mnist", tmp_path / "none")
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
    monkeypatch.setitem(named_module.DEBIAN_DATA_DIRS, "fashion_mnist", debian)
    monkeypatch.setenv("SELFSUP_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion_mnist")
    message = str(info.value)
    for place in (
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
    monkeypatch.setitem(named_module.DEBIAN_DATA_DIRS, "fashion_mnist", tmp_path / "none")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _FailingDownload)
    with pytest.raises(DatasetNotFoundError, match="no route to host"):
        load_dataset("fashion_mnist", download=True)


def test_download_goes_to_cache_and_is_found_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(named_module.DEBIAN_DATA_DIRS, "fashion_mnist", tmp_path / "none")
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
    (tmp_path / "data").mkdir()
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
