"""Export a run directory's encoder: write, check, rename into place; describe the result."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from selfsup.artifact import FORMATS, SUFFIXES, ExportError, NormalizedEncoder, export_metadata
from selfsup.export.check import CHECK_SEED, DEFAULT_TOLERANCE, ExportCheck, check_export
from selfsup.export.formats import write_artefact

__all__ = ["ExportResult", "describe_export", "export_encoder"]

_TRACE_BATCH = 2  # example batch for tracing; the check uses other batch sizes


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_encoder` wrote (``check`` is None when the check was skipped)."""

    path: Path
    format: str
    size_bytes: int
    meta: dict[str, Any]
    check: ExportCheck | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_encoder(
    run_dir: str | Path,
    format: str = "safetensors",
    output: str | Path | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Export a run's encoder (normalisation inside) and, with ``check``, prove it matches.

    Args:
        run_dir: a run directory written by ``selfsup pretrain`` (``config.yaml``,
            ``encoder.safetensors``, ``encoder.json``).
        format: ``safetensors``, ``torchscript`` or ``onnx``.
        output: file to write (default ``RUN/export/encoder.{safetensors,pt,onnx}``); an
            existing file is replaced only after a passing check.
        check: run the artefact and the in-library encoder on the same random images.
        tolerance: largest accepted ``max |difference| / max |feature|``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or has no ``config.yaml``.
        CheckpointError: the run has no ``encoder.safetensors`` + ``encoder.json`` yet.
        ExportError: unknown format, missing optional packages, bad tolerance.
        ExportCheckError: the check failed (no file is written).
    """
    from selfsup import build
    from selfsup.eval.features import extract_features
    from selfsup.eval.run import load_encoder
    from selfsup.train.checkpoint import atomic_write

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ExportError(f"tolerance must be a finite number > 0, got {tolerance}; e.g. 1e-4")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist; pass a directory written by "
            "`selfsup pretrain` (it holds config.yaml and encoder.safetensors)"
        )
    run = load_encoder(run_dir, "cpu", allow_checkpoint=False)
    meta = export_metadata(run.meta, format)
    meta["source_encoder_sha256"] = _sha256(run_dir / "encoder.safetensors")
    model = NormalizedEncoder(run.encoder, meta["mean"], meta["std"]).eval()
    path = Path(output) if output is not None else run_dir / "export" / f"encoder{SUFFIXES[format]}"
    channels, size = int(meta["in_channels"]), int(meta["image_size"])
    example = torch.rand(
        _TRACE_BATCH, channels, size, size, generator=torch.Generator().manual_seed(CHECK_SEED)
    )  # [2, C, S, S]
    transform = build.eval_transform(run.cfg)

    def reference(images: Tensor) -> Tensor:
        # The evaluation path (`selfsup eval`, `selfsup embed`): uint8 -> EvalTransform -> encoder.
        labels = torch.zeros(len(images), dtype=torch.int64)
        return extract_features(run.encoder, [(images, labels)], transform)[0]

    outcome: list[ExportCheck] = []

    def write(tmp: Path) -> None:
        write_artefact(format, model, example, tmp, meta)
        if check:
            outcome.append(check_export(tmp, format, reference, meta, tolerance))
        # The temporary file is private (0600); an artefact is meant to be shared.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)

    atomic_write(path, write)
    return ExportResult(path, format, path.stat().st_size, meta, outcome[0] if outcome else None)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def describe_export(result: ExportResult) -> str:
    """Two lines for the terminal: what was written where, and what the check measured."""
    m = result.meta
    lines = [
        f"exported {m['backbone']['name']} ({m['feature_dim']}-d features, input "
        f"[batch, {m['in_channels']}, {m['image_size']}, {m['image_size']}] float in [0, 1], "
        f"normalised inside) as {result.format}: {result.path} ({_human_size(result.size_bytes)})"
    ]
    c = result.check
    if c is None:
        lines.append("check: skipped (--no-check)")
    else:
        batches = " and ".join(str(n) for n in c.batch_sizes)
        lines.append(
            f"check: max |exported - selfsup| = {c.max_abs_diff:.3g} on random images "
            f"(batches of {batches}), {c.relative_diff:.3g} of the feature scale "
            f"{c.feature_scale:.3g}; tolerance {c.tolerance:g}: ok"
        )
    return "\n".join(lines)
