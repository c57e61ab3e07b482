"""Features of a folder (or list) of image files with a run's encoder, row by row with the
file it came from.

Unreadable files are skipped and named (one warning), never replaced by a neighbour: row ``i``
of the features is always the file on line ``i`` of the returned paths. ``strict=True`` stops
at the first unreadable file instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from selfsup import build
from selfsup.data import UnreadableImageWarning, load_dataset
from selfsup.data.decode import UnreadableImageError, decode_image
from selfsup.eval.features import extract_features
from selfsup.eval.run_encoder import RunEncoder
from selfsup.progress import ProgressStyle, phase

__all__ = ["Embedding", "embed_files"]


@dataclass
class Embedding:
    features: Tensor  # float32 [N, D], row i = paths[i]
    paths: list[Path]
    skipped: dict[Path, str] = field(default_factory=dict)  # unreadable file -> reason


def embed_files(
    run: RunEncoder,
    images: str | Path,
    batch_size: int = 256,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    strict: bool = False,
    progress: ProgressStyle | None = None,
) -> Embedding:
    """Embed every readable image of ``images`` (a folder, searched recursively, or a text
    file listing paths), decoded at ``image_size`` (default: the run's view size);
    ``progress`` reports the images embedded (quiet when None)."""
    kind = "filelist" if Path(images).is_file() else "folder"
    with warnings.catch_warnings():  # the files it drops are named in one warning below
        warnings.simplefilter("ignore", UnreadableImageWarning)
        dataset = load_dataset(
            kind,
            "train",
            root=images,
            image_size=image_size or run.cfg.views.size,
            channels=run.in_channels,
            strict=strict,
        )
    skipped: dict[Path, str] = dict(getattr(dataset, "unreadable", {}))
    candidates: list[Path] = list(dataset.paths)  # type: ignore[attr-defined]
    size = dataset.image_size[0]
    kept: list[Path] = []

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        pending: list[Tensor] = []
        for path in candidates:
            try:
                pending.append(decode_image(path, size, run.in_channels))
            except UnreadableImageError as err:
                if strict:
                    raise UnreadableImageError.of(path, err.reason, strict=True) from err
                skipped[path] = err.reason
                continue
            kept.append(path)
            if len(pending) == batch_size:
                yield torch.stack(pending), torch.zeros(len(pending), dtype=torch.int64)
                pending = []
        if pending:
            yield torch.stack(pending), torch.zeros(len(pending), dtype=torch.int64)

    transform = build.eval_transform(run.cfg)
    try:
        with phase("embed", f"{len(candidates)} image files", len(candidates), style=progress) as p:
            features, _ = extract_features(
                run.encoder, batches(), transform, device, progress=p.update
            )
            p.result = f"{features.shape[0]} x {features.shape[1]} features"
    except ValueError:
        if kept:
            raise
        raise ValueError(
            f"none of the {len(candidates)} image files in {images} can be decoded "
            f"({'; '.join(f'{p}: {why}' for p, why in list(skipped.items())[:3])}); replace the "
            "damaged files"
        ) from None
    if skipped:
        shown = "; ".join(f"{p} ({why})" for p, why in list(skipped.items())[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warnings.warn(
            f"skipped {len(skipped)} unreadable image file(s), not embedded: {shown}{more} "
            "(--strict stops on them instead)",
            UnreadableImageWarning,
            stacklevel=2,
        )
    return Embedding(features, kept, skipped)
