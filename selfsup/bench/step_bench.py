"""``selfsup bench``: one configuration's training step, and where its time goes."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from selfsup import build
from selfsup.bench.data import bench_dataset, endless_batches, write_image_folder
from selfsup.bench.harness import BenchStep
from selfsup.bench.machine import (
    PeakMemory,
    count_flops,
    machine_description,
    matmul_peak_gflops,
    sync,
    time_calls,
)
from selfsup.bench.report import format_result, report
from selfsup.bench.torchvision_ref import compare_torchvision as views_against_torchvision
from selfsup.config import Config
from selfsup.data import EpochLoader, TensorImageDataset
from selfsup.train.device import device_kind, precision_name, resolve_device

__all__ = ["run_bench"]


def run_bench(
    cfg: Config,
    steps: int = 10,
    warmup: int = 2,
    write: str | None = None,
    command: str = "selfsup bench",
    *,
    synthetic: tuple[int, int, int] | None = None,
    as_files: bool = False,
    compare_torchvision: bool = False,
    compile_step: bool = False,
    json_path: str | None = None,
    peak_sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Measure, print and return one configuration's throughput, FLOPs and memory.

    Args:
        cfg: a validated config (method, backbone, batch size, views, precision, device).
        steps: timed calls per measurement; warmup: untimed calls first.
        write: append the markdown table to this file, under ``command``.
        synthetic: ``(C, H, W)`` of uniform-noise images instead of the configured dataset.
        as_files: write the images as PNG files to a temporary folder and read them back
            through the decoding DataLoader with ``data.num_workers`` workers.
        compare_torchvision: also time per-sample ``torchvision.transforms.v2`` views in a
            2-worker DataLoader on the same images, and report the ratio.
        compile_step: ``torch.compile`` the training step and the encoder (the first call,
            which compiles, is timed separately).
        json_path: append the result as one JSON line to this file.
        peak_sizes: matmul sizes for the peak measurement (default: 1024, 2048 on the CPU).
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    device = resolve_device(cfg.train.device)
    batch = cfg.train.batch_size
    needed = batch * (warmup + steps + 1)
    dataset, data_name = bench_dataset(cfg, synthetic, max(needed, 4096))
    build.resolve_normalization(cfg, dataset)
    in_channels = build.input_channels(cfg, dataset)

    with tempfile.TemporaryDirectory(prefix="selfsup-bench-") as tmp:
        source = dataset
        if as_files:
            dataset = write_image_folder(source, Path(tmp), needed)
            data_name = f"{data_name} as {len(dataset)} PNG files"
        memory = PeakMemory(device)
        workers = cfg.data.num_workers if not isinstance(dataset, TensorImageDataset) else 0
        loader = EpochLoader(
            dataset, batch, seed=cfg.train.seed, num_workers=workers, device=device
        )
        bench = BenchStep(cfg, in_channels, device, loader.steps_per_epoch())

        images = next(endless_batches(loader))
        fixed_views = bench.views(images)
        step_flops = count_flops(lambda: bench.update(fixed_views))
        backbone_flops = count_flops(lambda: bench.backbone_step(fixed_views))
        compile_s = None
        if compile_step:
            bench.compile()
            start = time.perf_counter()
            bench.update(fixed_views)
            bench.backbone_step(fixed_views)
            sync(device)
            compile_s = time.perf_counter() - start

        t_views = time_calls(lambda: bench.views(images), steps, warmup, device)
        t_step = time_calls(lambda: bench.update(fixed_views), steps, warmup, device)
        t_backbone = time_calls(lambda: bench.backbone_step(fixed_views), steps, warmup, device)
        stream = endless_batches(loader)
        t_loader = time_calls(lambda: next(stream), steps, warmup, device)

        stream = endless_batches(loader)
        waited = 0.0

        def full_step() -> None:
            nonlocal waited
            start = time.perf_counter()
            imgs = next(stream)
            waited += time.perf_counter() - start
            bench.full_step(imgs)

        for _ in range(warmup):
            full_step()
        sync(device)
        waited = 0.0
        t_full = time_calls(full_step, steps, 0, device)
        data_wait = waited / (t_full * steps)
        peak_mib = memory.peak_mib()

        tv: tuple[float, float] | None = None
        if compare_torchvision:
            # Exactly warmup + steps + 1 batches, repeating a small dataset if needed.
            cpu_images, _ = source.get_batch(torch.arange(needed) % len(source))
            tv = views_against_torchvision(cfg, bench, cpu_images, batch, steps, warmup, workers=2)

    dtype = bench.train_step.autocast_dtype
    peak_dtype = dtype or torch.float32
    peak = matmul_peak_gflops(device, peak_dtype, peak_sizes)
    step_gflops = step_flops / t_step / 1e9
    result: dict[str, Any] = {
        "method": cfg.method,
        "backbone": f"{cfg.backbone.name} x{cfg.backbone.width}",
        "batch_size": batch,
        "view_size": cfg.views.size,
        "num_views": len(fixed_views),
        "data": data_name,
        "workers": workers,
        "device": str(device),
        # The key of a train.compile=auto row (compile_policy.MEASURED): ``cpu+amx`` or ``cpu``.
        "device_kind": device_kind(device),
        "precision": precision_name(dtype),
        "compiled": compile_step,
        "compile_s": compile_s,
        "machine": machine_description(device),
        "steps": steps,
        "warmup": warmup,
        "views_img_s": batch / t_views,
        "loader_img_s": batch / t_loader,
        "step_img_s": batch / t_step,
        "backbone_img_s": batch / t_backbone,
        "end_to_end_img_s": batch / t_full,
        "views_over_step": t_step / t_views,
        "end_to_end_over_step": t_step / t_full,
        "method_overhead": t_step / t_backbone - 1,
        "data_wait": data_wait,
        "step_gflop": step_flops / 1e9,
        "backbone_gflop": backbone_flops / 1e9,
        "step_gflops": step_gflops,
        "backbone_gflops": backbone_flops / t_backbone / 1e9,
        "peak_dtype": str(peak_dtype).replace("torch.", ""),
        "matmul_peak_gflops": peak,
        "peak_fraction": step_gflops / peak,
        "peak_memory_mib": peak_mib,
        "memory_at_start_mib": memory.start_mib,
        "memory_kind": memory.kind,
    }
    if tv is not None:
        result["ours_views_img_s"], result["torchvision_views_img_s"] = tv
        result["views_over_torchvision"] = tv[0] / tv[1]
    report(format_result(result), result, write, json_path, command)
    return result
