"""Datasets by name: ``load_dataset(name, split, root, ...)`` for every name in ``DATASETS``.

Fashion-MNIST / MNIST are IDX files searched in ``root``, ``$SELFSUP_DATA``, the Debian package
location and the download cache; CIFAR is torchvision's python version; digits is
scikit-learn's; photo_patches are colour patches of scikit-image's bundled photographs (see
``photo_patches``); "folder" / "filelist" are image files (see ``folders``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from selfsup.data.base import DatasetNotFoundError, ImageDataset
from selfsup.data.folders import DEFAULT_FILE_IMAGE_SIZE, _load_filelist, _load_folder
from selfsup.data.idx import read_idx
from selfsup.data.memory import TensorImageDataset, _adapt
from selfsup.data.photo_patches import load_photo_patches

__all__ = ["DATASETS", "DEBIAN_DATA_DIRS", "cache_dir", "load_dataset"]

DATASETS: tuple[str, ...] = (
    "fashion_mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "digits",
    "photo_patches",
    "folder",
    "filelist",
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
        location=str(images_path.parent),
    )


def _load_idx_dataset(
    key: str, split: str, root: Path | None, download: bool
) -> TensorImageDataset:
    spec = _IDX_SPECS[key]
    _check_split(key, split, ("train", "test"))
    searched: list[str] = []
    candidates: list[tuple[Path, str]] = []
    # An explicit root is the only place searched (and downloaded into): data found elsewhere
    # would be trained on while the config names another path.
    download_root = root if root is not None else cache_dir()
    cache_raw = download_root / spec.torchvision_class / "raw"
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
            dataset_class(root=str(download_root), train=split == "train", download=True)
        except Exception as exc:  # network, HTTP, checksum and file-system errors alike
            download_error = f"\nDownload into {download_root} failed: {type(exc).__name__}: {exc}"
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
    if root is not None:  # an explicit root is the only place searched (see the IDX loader)
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
        source, location = f"{found[0] / folder} ({found[1]})", found[0]
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
        source, location = f"{target / folder} (downloaded)", target
    images = torch.from_numpy(np.ascontiguousarray(tv.data)).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(tv.targets, dtype=torch.int64)
    num_classes = 10 if key == "cifar10" else 100
    return TensorImageDataset(
        images,
        labels,
        key,
        num_classes,
        class_names=list(tv.classes),
        source=source,
        location=str(location),
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
    datasets decode to ``image_size`` squares (default 64); photo_patches cuts patches of that
    side (default 32) from photographs scaled to match. ``channels``: 1 or 3, converted
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
    if root_path is not None and not root_path.exists() and not (download and key != "folder"):
        raise DatasetNotFoundError(
            f"data directory {root_path} does not exist (data.data_dir / --data-dir); fix the "
            "path, or leave data.data_dir unset to search $SELFSUP_DATA, the Debian package "
            "location and the download cache"
        )
    if key in ("digits", "photo_patches") and root_path is not None:
        owner = "scikit-learn" if key == "digits" else "scikit-image"
        raise ValueError(
            f"{key} is {owner}'s bundled data and reads no files, but data.data_dir="
            f"{root} was given; leave data.data_dir unset"
        )

    if key == "folder":
        size = image_size or DEFAULT_FILE_IMAGE_SIZE
        return _load_folder(root_path, split, size, channels or 3, strict)
    if key == "filelist":
        return _load_filelist(
            root_path, image_size or DEFAULT_FILE_IMAGE_SIZE, channels or 3, strict
        )
    if key == "photo_patches":  # image_size is the patch side: patches are cut at that size
        return _adapt(load_photo_patches(split, image_size), None, channels)
    dataset: TensorImageDataset
    if key in _IDX_SPECS:
        dataset = _load_idx_dataset(key, split, root_path, download)
    elif key in _CIFAR_FOLDERS:
        dataset = _load_cifar(key, split, root_path, download)
    else:
        dataset = _load_digits(split)
    return _adapt(dataset, image_size, channels)
