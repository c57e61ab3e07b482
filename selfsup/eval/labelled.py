"""The labelled data an evaluation runs on: the (train, test) splits in the encoder's channels,
the label subsets (1%, 10%, or a subset file) and the name results are recorded under."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from selfsup.config import Config
from selfsup.data import ImageDataset, load_dataset
from selfsup.eval.subsets import LabelSubset, load_subset, parse_fraction, subset_for

__all__ = ["eval_dataset_name", "label_subset", "labelled_sets"]


def labelled_sets(cfg: Config, in_channels: int) -> tuple[ImageDataset, ImageDataset]:
    """The labelled (train, test) splits of ``data.eval_dataset`` (default: the training data),
    converted to the encoder's channels; a clear error when there are none."""
    d = cfg.data
    name = d.eval_dataset or d.dataset
    same = name.replace("-", "_") == d.dataset
    root = d.eval_data_dir or (d.data_dir if same else None)
    try:
        splits = [
            load_dataset(
                name,
                split,
                root=root,
                image_size=d.image_size if same else None,
                channels=in_channels,
                download=d.download,
            )
            for split in ("train", "test")
        ]
    except FileNotFoundError as err:
        raise FileNotFoundError(f"no labelled evaluation data: {err}") from None
    if not all(s.has_labels for s in splits):
        raise ValueError(
            f"{name} has no labels to evaluate with; pass labelled data (--data fashion_mnist, "
            "or an image folder with one sub-folder per class and train/test splits)"
        )
    return splits[0], splits[1]


def label_subset(
    item: str, train_set: ImageDataset, num_classes: int, cfg: Config, run_dir: Path
) -> LabelSubset:
    """``"1%"`` (drawn, or read back from RUN/labels/) or the path of a subset file."""
    labels = getattr(train_set, "labels", None)
    if not isinstance(labels, Tensor):
        labels = train_set.get_batch(torch.arange(len(train_set)))[1]
    if Path(item).suffix == ".json":
        return load_subset(item, labels)
    fraction = parse_fraction(item)
    return subset_for(
        labels,
        num_classes,
        fraction,
        cfg.eval.label_seed,
        eval_dataset_name(cfg),
        run_dir / "labels" if fraction < 1 else None,
    )


def eval_dataset_name(cfg: Config) -> str:
    """The labelled data a result was measured on, as eval.json names it."""
    d = cfg.data
    name = d.eval_dataset or d.dataset
    if name in ("folder", "filelist"):
        return f"{name}:{d.eval_data_dir or d.data_dir}"
    return name
