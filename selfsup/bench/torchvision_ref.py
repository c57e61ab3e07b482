"""The reference our batched views are compared with: per-sample ``torchvision.transforms.v2``
pipelines in DataLoader workers, as a torchvision user would write them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from selfsup.bench.harness import BenchStep
from selfsup.bench.machine import sync
from selfsup.config import Config
from selfsup.views import ViewSpec

__all__ = ["compare_torchvision", "torchvision_view"]


def torchvision_view(
    spec: ViewSpec, channels: int, mean: Sequence[float], std: Sequence[float]
) -> torch.nn.Module:
    """The per-sample ``torchvision.transforms.v2`` pipeline equivalent to ``spec``.

    Ops in the same order as :class:`~selfsup.views.MultiViewTransform` on uint8 tensors
    (RandomResizedCrop with antialiasing, flip, ColorJitter in RandomApply, grayscale, blur in
    RandomApply, solarize), then conversion to float and normalisation, as a user of
    torchvision would write it. Ops our recipe skips (probability 0, grayscale on 1 channel)
    are left out here too.
    """
    from torchvision.transforms import v2

    ops: list[Any] = [
        v2.RandomResizedCrop(spec.size, scale=spec.crop_scale, ratio=spec.crop_ratio),
        v2.RandomHorizontalFlip(spec.flip_p),
    ]
    if spec.jitter_p > 0 and spec.brightness + spec.contrast + spec.saturation + spec.hue > 0:
        jitter = v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue)
        ops.append(v2.RandomApply([jitter], p=spec.jitter_p))
    if spec.gray_p > 0 and channels == 3:
        ops.append(v2.RandomGrayscale(spec.gray_p))
    if spec.blur_p > 0:
        blur = v2.GaussianBlur(spec.blur_kernel_size, spec.blur_sigma)
        ops.append(v2.RandomApply([blur], p=spec.blur_p))
    if spec.solarize_p > 0:
        ops.append(v2.RandomSolarize(round(255 * spec.solarize_threshold), p=spec.solarize_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


class _PerSampleViews(Dataset[list[Tensor]]):
    """Every view of image ``i`` through per-sample torchvision pipelines."""

    def __init__(self, images: Tensor, pipelines: list[Any]) -> None:
        self.images = images  # [N, C, H, W] uint8 on the CPU
        self.pipelines = pipelines

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> list[Tensor]:
        image = self.images[index]
        return [pipeline(image) for pipeline in self.pipelines]


def compare_torchvision(
    cfg: Config,
    bench: BenchStep,
    images: Tensor,
    batch: int,
    steps: int,
    warmup: int,
    workers: int,
) -> tuple[float, float]:
    """(ours, torchvision) images/s for the views of the same ``images`` (CPU uint8 tensor).

    Ours: the batched recipe on the device, batch after batch. Torchvision: the per-sample
    pipeline of every view in a DataLoader with ``workers`` worker processes (one thread
    each), collated into batches; timed from the end of the warm-up batches, when the workers
    are busy, to the last batch.
    """
    assert cfg.views.mean is not None and cfg.views.std is not None
    specs = bench.method.view_recipe.specs
    channels = images.shape[1]
    pipelines = [torchvision_view(s, channels, cfg.views.mean, cfg.views.std) for s in specs]
    chunks = list(images.to(bench.device).split(batch))[: warmup + steps]
    for chunk in chunks[:warmup]:
        bench.views(chunk)
    sync(bench.device)
    start = time.perf_counter()
    for chunk in chunks[warmup:]:
        bench.views(chunk)
    sync(bench.device)
    ours_s = (time.perf_counter() - start) / steps

    dataset = _PerSampleViews(images, pipelines)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, drop_last=True)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    torchvision_s = (time.perf_counter() - start) / steps
    del it  # shuts the workers down
    return batch / ours_s, batch / torchvision_s
