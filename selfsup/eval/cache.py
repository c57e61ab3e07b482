"""Features of a frozen encoder cached on disk, so that a second evaluation is instant.

A cache entry is keyed by everything the features depend on: the encoder's weights (SHA-256 of
their safetensors serialisation), the labelled split (dataset name, split, size and the hash of
its labels) and the evaluation transform (image size, mean, std). Entries live in
``RUN/cache/features/<key>.safetensors`` (features + labels, no pickle) and are written
atomically; a damaged entry is recomputed. Changing the encoder (a resumed run, the other
network) changes the key, so a stale entry is never read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from selfsup.data import ImageDataset
from selfsup.eval.subsets import labels_sha256
from selfsup.train.checkpoint import atomic_write

__all__ = ["FeatureCache"]


class FeatureCache:
    """``get(key_parts, compute)``: the cached ``(features, labels)`` or ``compute()``'s."""

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.hits = 0

    @staticmethod
    def key(encoder_sha256: str, dataset: ImageDataset, split: str, transform: dict) -> str:
        """The entry name of one encoder's features of one split under one transform."""
        parts = {
            "encoder": encoder_sha256,
            "dataset": dataset.name,
            "source": getattr(dataset, "source", ""),
            "split": split,
            "size": len(dataset),
            "labels": _labels_of(dataset),
            "transform": transform,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def get(self, key: str, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        if self.directory is None:
            return compute()
        path = self.directory / f"{key}.safetensors"
        if path.is_file():
            try:
                data = load_file(str(path))
                self.hits += 1
                return data["features"], data["labels"]
            except (SafetensorError, KeyError, OSError):
                path.unlink(missing_ok=True)  # damaged: recomputed below
        features, labels = compute()
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {"features": features.contiguous(), "labels": labels.contiguous()}

        def write(tmp: Path) -> None:
            save_file(tensors, str(tmp))

        atomic_write(path, write)
        return features, labels


def _labels_of(dataset: ImageDataset) -> str:
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, Tensor):
        return labels_sha256(labels)
    return "unknown"
