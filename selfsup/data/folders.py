"""Image folders (class sub-folders or loose images, optional split folders) and file lists.

Both build a ``FileImageDataset``; ``load_dataset("folder" | "filelist", ...)`` calls them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from selfsup.data.base import DatasetNotFoundError
from selfsup.data.files import FileImageDataset

__all__ = ["DEFAULT_FILE_IMAGE_SIZE", "IMAGE_EXTENSIONS"]

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
DEFAULT_FILE_IMAGE_SIZE = 64  # decode size of folder / filelist images when none is given

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
