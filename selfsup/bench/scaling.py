"""``selfsup bench --scaling``: what one training step costs against the global batch size.

Convolutions are linear in the batch; what grows faster (contrastive logits ``[B, B]`` and
the like) shows in the step's cost beyond the backbone pass. Every row asks the method for
its own step, never names it: the same columns for every method.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch

from selfsup import build
from selfsup.bench.data import bench_dataset
from selfsup.bench.harness import BenchStep
from selfsup.bench.machine import count_flops, machine_description, time_calls
from selfsup.bench.report import format_scaling, report
from selfsup.config import Config, apply_overrides
from selfsup.data import ImageDataset
from selfsup.train.device import precision_name, resolve_device, resolve_precision

__all__ = ["run_scaling"]


def run_scaling(
    cfg: Config,
    batch_sizes: Sequence[int],
    steps: int = 5,
    warmup: int = 2,
    write: str | None = None,
    command: str = "selfsup bench --scaling",
    *,
    synthetic: tuple[int, int, int] | None = None,
    json_path: str | None = None,
) -> list[dict[str, Any]]:
    """Step cost against the global batch size, one row per batch size: the model step
    (``TrainStep.update``), the forward of ``training_step`` alone, the backbone pass, the
    difference, and FLOPs."""
    if not batch_sizes:
        raise ValueError("--scaling needs at least one batch size, e.g. --scaling 64,128,256")
    device = resolve_device(cfg.train.device)
    dataset, data_name = bench_dataset(cfg, synthetic, max(max(batch_sizes), 4096))
    build.resolve_normalization(cfg, dataset)
    in_channels = build.input_channels(cfg, dataset)
    for batch in batch_sizes:
        if batch > len(dataset):
            raise ValueError(f"batch size {batch} exceeds the {len(dataset)} images available")
    rows = [
        _scaling_row(cfg, batch, dataset, in_channels, device, steps, warmup)
        for batch in batch_sizes
    ]
    dtype = resolve_precision(cfg.train.precision, device)
    header = (
        f"{cfg.method}, {cfg.backbone.name} x{cfg.backbone.width}, views {cfg.views.size} px, "
        f"data {data_name}, {device} ({precision_name(dtype)}); {machine_description(device)}"
    )
    report(format_scaling(rows, header), rows, write, json_path, command)
    return rows


def _scaling_row(
    cfg: Config,
    batch: int,
    dataset: ImageDataset,
    in_channels: int,
    device: torch.device,
    steps: int,
    warmup: int,
) -> dict[str, Any]:
    """One row of :func:`run_scaling`: a fresh method and optimiser at global batch ``batch``."""
    cfg_b = apply_overrides(copy.deepcopy(cfg), [f"train.batch_size={batch}"]).validate()
    bench = BenchStep(cfg_b, in_channels, device, steps_per_epoch=len(dataset) // batch)
    images, _ = dataset.get_batch(torch.arange(batch))
    views = bench.views(images.to(device))
    step_flops = count_flops(lambda: bench.update(views))
    backbone_flops = count_flops(lambda: bench.backbone_step(views))
    t_step = time_calls(lambda: bench.update(views), steps, warmup, device)
    t_forward = time_calls(lambda: bench.forward(views), steps, warmup, device)
    t_backbone = time_calls(lambda: bench.backbone_step(views), steps, warmup, device)
    return {
        "batch_size": batch,
        "step_ms": 1000 * t_step,
        "step_img_s": batch / t_step,
        "forward_ms": 1000 * t_forward,
        "backbone_ms": 1000 * t_backbone,
        "beyond_backbone_ms": 1000 * (t_step - t_backbone),
        "step_gflop": step_flops / 1e9,
        "beyond_backbone_gflop": (step_flops - backbone_flops) / 1e9,
    }
