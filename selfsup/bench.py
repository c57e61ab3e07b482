"""``selfsup bench``: throughput of the view pipeline, the model step and the full training step.

Three numbers in images/s (an "image" yields all its views), measured in one process on the same
data and the same configuration as a real run:

* views     -- the method's view recipe alone on uint8 batches already on the device;
* step      -- ``training_step`` + backward + optimiser on pre-computed views (model-only);
* end-to-end -- loader -> views -> step, as the trainer runs it.

``data_wait`` is the share of the end-to-end time not explained by the model step.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from selfsup import build
from selfsup.config import Config
from selfsup.data import DatasetNotFoundError, EpochLoader, ImageDataset, TensorImageDataset
from selfsup.train.trainer import resolve_device, resolve_precision


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{_cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _bench_dataset(cfg: Config) -> tuple[ImageDataset, str]:
    try:
        return build.train_dataset(cfg), cfg.data.dataset
    except (DatasetNotFoundError, FileNotFoundError):
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (4096, 1, 28, 28), dtype=torch.uint8, generator=gen)
        return TensorImageDataset(images, None, "synthetic", None), "synthetic uint8 28x28"


def run_bench(
    cfg: Config,
    steps: int = 10,
    warmup: int = 2,
    write: str | None = None,
    command: str = "selfsup bench",
) -> dict[str, Any]:
    """Measure and print throughput; append a markdown record to ``write`` when given."""
    device = resolve_device(cfg.train.device)
    dtype = resolve_precision(cfg.train.precision, device)
    dataset, data_name = _bench_dataset(cfg)
    build.resolve_normalization(cfg, dataset)
    torch.manual_seed(cfg.train.seed)
    method = build.make_method(cfg, build.input_channels(cfg, dataset)).to(device)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    method = method.to(memory_format=memory_format)
    t = cfg.train
    optimizer, _ = build.make_optimizer(cfg, method)
    generator = torch.Generator(device=device).manual_seed(0)
    loader = EpochLoader(
        dataset, t.batch_size, seed=t.seed, num_workers=cfg.data.num_workers, device=device
    )
    batch = t.batch_size
    images, _ = next(loader.iterate(0))
    method.train()

    def views_only() -> list[torch.Tensor]:
        return [
            v.contiguous(memory_format=memory_format) for v in method.make_views(images, generator)
        ]

    fixed_views = views_only()

    def model_step(views: list[torch.Tensor] = fixed_views) -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = method.training_step(views)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    t_views = _time(views_only, steps, warmup, device)
    t_step = _time(model_step, steps, warmup, device)

    def batches() -> Iterator[torch.Tensor]:
        epoch = 0
        while True:
            epoch += 1
            for imgs, _ in loader.iterate(epoch):
                yield imgs

    stream = batches()

    def full_step() -> None:
        imgs = next(stream)
        views = [
            v.contiguous(memory_format=memory_format) for v in method.make_views(imgs, generator)
        ]
        model_step(views)

    t_full = _time(full_step, steps, warmup, device)
    result = {
        "method": cfg.method,
        "backbone": f"{cfg.backbone.name} x{cfg.backbone.width}",
        "batch_size": batch,
        "view_size": cfg.views.size,
        "data": data_name,
        "device": str(device),
        "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
        "machine": machine_description(device),
        "views_img_s": batch / t_views,
        "step_img_s": batch / t_step,
        "end_to_end_img_s": batch / t_full,
        "views_over_step": t_step / t_views,
        "end_to_end_over_step": t_step / t_full,
        "data_wait": max(0.0, 1 - t_step / t_full),
    }
    table = format_result(result)
    print(table)
    if write:
        path = Path(write)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d")
        with open(path, "a") as fh:
            fh.write(f"\n### {stamp}: `{command}`\n\n{table}\n")
    return result


def format_result(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"{r['method']}, {r['backbone']}, batch {r['batch_size']}, views {r['view_size']} px, "
            f"data {r['data']}, {r['device']} ({r['precision']}); {r['machine']}",
            "",
            "| measurement | images/s |",
            "|---|---:|",
            f"| view pipeline alone | {r['views_img_s']:.0f} |",
            f"| model step alone (views precomputed) | {r['step_img_s']:.0f} |",
            f"| end-to-end (loader + views + step) | {r['end_to_end_img_s']:.0f} |",
            "",
            f"view pipeline = {r['views_over_step']:.1f}x the model step; end-to-end = "
            f"{r['end_to_end_over_step']:.2f}x model-only; data wait {100 * r['data_wait']:.0f}%",
        ]
    )
