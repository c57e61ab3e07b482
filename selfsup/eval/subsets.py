"""Labelled subsets for semi-supervised evaluation: "1%", "10%" or "100%" of a training split.

A subset is exactly stratified: class ``c`` with ``n_c`` training images contributes
``max(1, round(fraction * n_c))`` of them, drawn by a permutation seeded with ``seed`` and
``c`` alone. It depends on the labels, the fraction and the seed, never on the encoder, so
every encoder compared (the run's, a random one, a supervised baseline) sees the same images.
Subsets are written to the run directory (``labels/<dataset>-<fraction>-seed<seed>.json``) with
the SHA-256 of the labels they index, so that a file made for another dataset is refused
instead of silently indexing other images.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from selfsup.train.checkpoint import atomic_write

__all__ = [
    "LabelSubset",
    "labels_sha256",
    "load_subset",
    "parse_fraction",
    "stratified_split",
    "stratified_subset",
    "subset_for",
]

SUBSET_FORMAT = "selfsup-labels/1"


def parse_fraction(text: str | float) -> float:
    """``"1%"`` / ``"10%"`` / ``"0.1"`` / ``0.01`` -> a fraction in (0, 1]."""
    value = text
    if isinstance(text, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text)
        if match is None:
            raise ValueError(f"label fraction {text!r} must look like 1%, 10%, 100% or 0.1")
        value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    fraction = float(value)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction {text!r} must be in (0%, 100%]")
    return fraction


def fraction_name(fraction: float) -> str:
    """0.01 -> "1%", 0.125 -> "12.5%"."""
    return f"{100 * fraction:g}%"


def labels_sha256(labels: Tensor) -> str:
    """SHA-256 of an int64 label vector: what a subset file is tied to."""
    return hashlib.sha256(labels.to("cpu", torch.int64).contiguous().numpy().tobytes()).hexdigest()


def stratified_subset(labels: Tensor, num_classes: int, fraction: float, seed: int) -> Tensor:
    """Sorted indices of ``max(1, round(fraction * n_c))`` images of every class ``c``.

    Raises ``ValueError`` when the subset would hold fewer images than there are classes, or a
    class has no image at all.
    """
    labels = labels.to("cpu", torch.int64)
    counts = torch.bincount(labels, minlength=num_classes)
    missing = [c for c in range(num_classes) if counts[c] == 0]
    if missing:
        raise ValueError(
            f"classes {missing[:10]} have no training image; evaluate on data that has every "
            "class, or with the right number of classes"
        )
    if fraction * len(labels) < num_classes:
        raise ValueError(
            f"{fraction_name(fraction)} of {len(labels)} labelled images is "
            f"{fraction * len(labels):.1f} images, fewer than the {num_classes} classes; use a "
            f"larger fraction (at least {fraction_name(num_classes / len(labels))})"
        )
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()  # [n_c], ascending
        take = max(1, round(fraction * len(members)))
        order = torch.randperm(
            len(members), generator=torch.Generator().manual_seed(seed * 1009 + c)
        )
        chosen.append(members[order[:take]])
    return torch.cat(chosen).sort().values


def stratified_split(
    labels: Tensor, num_classes: int, val_fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Positions ``(fit, val)`` into ``labels``: per class ``round(val_fraction * n_c)`` held out
    for validation (none for a class of one image, which stays in ``fit``)."""
    labels = labels.to("cpu", torch.int64)
    fit, val = [], []
    gen = torch.Generator().manual_seed(seed)
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) == 0:
            continue
        members = members[torch.randperm(len(members), generator=gen)]
        held = min(len(members) - 1, round(val_fraction * len(members)))
        val.append(members[:held])
        fit.append(members[held:])
    return torch.cat(fit).sort().values, torch.cat(val).sort().values


@dataclass(frozen=True)
class LabelSubset:
    """Indices into a training split, with what they were drawn from."""

    indices: Tensor  # int64 [n], sorted
    fraction: float
    seed: int
    dataset: str
    labels_sha256: str
    path: Path | None = None

    @property
    def name(self) -> str:
        return fraction_name(self.fraction)


def subset_for(
    labels: Tensor,
    num_classes: int,
    fraction: float,
    seed: int,
    dataset: str,
    directory: str | Path | None = None,
) -> LabelSubset:
    """The stratified subset of ``labels``; with ``directory``, read from its file when one
    was written before (refused when made for other labels), else drawn and written there."""
    digest = labels_sha256(labels)
    path = None
    if directory is not None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)
        path = Path(directory) / f"{safe}-{fraction_name(fraction)}-seed{seed}.json"
        if path.is_file():
            subset = load_subset(path, labels)
            if subset.fraction != fraction or subset.seed != seed:
                raise ValueError(f"{path} holds another subset; delete it to draw it again")
            return subset
    if fraction >= 1.0:
        indices = torch.arange(len(labels))
    else:
        indices = stratified_subset(labels, num_classes, fraction, seed)
    subset = LabelSubset(indices, fraction, seed, dataset, digest, path)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(
            {
                "format": SUBSET_FORMAT,
                "dataset": dataset,
                "split": "train",
                "fraction": fraction,
                "seed": seed,
                "num_images": len(labels),
                "labels_sha256": digest,
                "indices": indices.tolist(),
            }
        )

        def write(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(path, write)
    return subset


def load_subset(path: str | Path, labels: Tensor) -> LabelSubset:
    """Read a subset file and check that it indexes these ``labels``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        indices = torch.tensor(data["indices"], dtype=torch.int64)
        fraction, seed = float(data["fraction"]), int(data["seed"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{path} is not a selfsup label subset file ({err}); pass a file written by "
            "selfsup eval, or a fraction such as 1%"
        ) from None
    digest = labels_sha256(labels)
    if data.get("labels_sha256") != digest or int(data.get("num_images", -1)) != len(labels):
        raise ValueError(
            f"{path} was made for other labels ({data.get('dataset')!r}, "
            f"{data.get('num_images')} images), not this training split of {len(labels)} images; "
            "pass the subset file of this dataset, or a fraction such as 1% to draw one"
        )
    if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= len(labels)):
        raise ValueError(f"{path} has indices outside [0, {len(labels)}); the file is damaged")
    return LabelSubset(indices, fraction, seed, str(data.get("dataset")), digest, path)
