"""Deterministic, resumable epoch iteration over an ``ImageDataset``.

The order of epoch ``e`` depends only on ``(seed, e)`` and is drawn on a CPU generator, so it is
the same on every device and every number of workers; a run resumed at ``(epoch, step)`` sees
exactly the batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from selfsup.data.base import ImageDataset
from selfsup.data.memory import TensorImageDataset

__all__ = ["EpochLoader", "full_batches"]


def _stack_uint8(items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """DataLoader collate: uint8 images ``[B, C, H, W]`` and int64 labels ``[B]``."""
    images = torch.stack([image for image, _ in items])
    labels = torch.tensor([label for _, label in items], dtype=torch.int64)
    return images, labels


class _FixedBatches(Sampler[list[int]]):
    """Batch sampler replaying a precomputed list of index batches (set before each epoch)."""

    def __init__(self, batches: list[list[int]] | None = None) -> None:
        self.batches: list[list[int]] = batches or []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _decoding_loader(
    dataset: ImageDataset,
    batches: _FixedBatches,
    num_workers: int,
    device: torch.device,
    persistent_workers: bool,
) -> DataLoader[tuple[Tensor, int]]:
    """A DataLoader replaying ``batches``; workers decode, memory is pinned for CUDA."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=_stack_uint8,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent_workers,
    )


class EpochLoader:
    """Yields (uint8 images [B,C,H,W], int64 labels [B]) on `device` for one epoch in a seeded order.

    Order of epoch e = ``torch.randperm(N, generator=torch.Generator().manual_seed(seed + e))``
    (CPU generator, so it is identical on every device); ``drop_last=True`` by default so every
    step has the global batch. ``iterate(epoch, start_step)`` resumes inside an epoch exactly.

    ``batch_size`` is the global batch; with ``world_size > 1`` rank ``r`` yields the contiguous
    slice ``[r * b, (r + 1) * b)`` of every global batch, ``b = batch_size // world_size``.

    ``TensorImageDataset`` is indexed directly (no DataLoader, no workers). On a non-CPU
    device its tensors are copied to the device once, on first use, and batches are gathered
    there, so a step costs no host-to-device copy. Other datasets go through a
    ``torch.utils.data.DataLoader`` with ``num_workers`` decoding workers (pinned memory on CUDA).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_workers: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        *,
        persistent_workers: bool = False,
    ) -> None:
        n = len(dataset)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size and world_size >= 1, got rank={rank}, "
                f"world_size={world_size}"
            )
        if batch_size % world_size != 0:
            raise ValueError(
                f"the global batch_size {batch_size} is not divisible by world_size {world_size}; "
                f"use a multiple of {world_size} (each rank gets batch_size // world_size)"
            )
        if world_size > 1 and not drop_last:
            raise ValueError(
                "world_size > 1 needs drop_last=True so that every rank runs the same number of "
                "equally sized steps; use full_batches() on one rank to visit every image"
            )
        if drop_last and batch_size > n:
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({n} images) with "
                f"drop_last=True, so an epoch would have no step; use batch_size <= {n} or "
                "drop_last=False"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.local_batch_size = batch_size // world_size
        self.persistent_workers = persistent_workers and num_workers > 0
        self._resident: tuple[Tensor, Tensor] | None = None  # in-memory data on self.device
        self._dataloader: DataLoader[tuple[Tensor, int]] | None = (
            None  # kept only with persistent workers
        )
        self._sampler = _FixedBatches()

    def steps_per_epoch(self) -> int:
        """Global steps in one epoch: ``N // B`` with ``drop_last``, else ``ceil(N / B)``."""
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        return self.steps_per_epoch()

    def epoch_order(self, epoch: int) -> Tensor:
        """The visiting order of ``epoch``: int64 ``[N]`` on the CPU."""
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n, dtype=torch.int64)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(n, generator=generator)

    def _local_batches(self, epoch: int, start_step: int) -> list[Tensor]:
        """This rank's index batches of ``epoch`` from ``start_step`` on (CPU, int64)."""
        order = self.epoch_order(epoch)
        steps = self.steps_per_epoch()
        global_batches = order.split(self.batch_size)[start_step:steps]  # views of [N]
        lo = self.rank * self.local_batch_size
        return [b[lo : lo + self.local_batch_size] for b in global_batches]

    def iterate(self, epoch: int, start_step: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of ``epoch`` from ``start_step`` (0-based, global step) to the epoch's end."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        steps = self.steps_per_epoch()
        if not 0 <= start_step <= steps:
            raise ValueError(
                f"start_step {start_step} is outside [0, {steps}] (steps per epoch); resume with a "
                "step saved by this loader's configuration"
            )
        batches = self._local_batches(epoch, start_step)
        if isinstance(self.dataset, TensorImageDataset):
            return self._iterate_tensors(batches)
        return self._iterate_dataloader(batches)

    def _iterate_tensors(self, batches: list[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self._resident_tensors()
        if not batches:
            return
        # One host-to-device copy of the epoch's indices, then pure device-side gathers.
        flat = torch.cat(batches).to(images.device)  # [steps * b]
        for idx in flat.split([len(b) for b in batches]):
            yield images.index_select(0, idx), labels.index_select(0, idx)

    def _resident_tensors(self) -> tuple[Tensor, Tensor]:
        if self._resident is None:
            dataset = cast(TensorImageDataset, self.dataset)
            self._resident = (
                dataset.images.to(self.device),  # [N, C, H, W] uint8
                dataset.labels.to(self.device),  # [N] int64
            )
        return self._resident

    def _iterate_dataloader(self, batches: list[Tensor]) -> Iterator[tuple[Tensor, Tensor]]:
        lists = [b.tolist() for b in batches]
        if self.persistent_workers:
            # The workers outlive an epoch only if the DataLoader does: refill its sampler.
            if self._dataloader is None:
                self._dataloader = _decoding_loader(
                    self.dataset, self._sampler, self.num_workers, self.device, True
                )
            self._sampler.batches = lists
            loader = self._dataloader
        else:
            loader = _decoding_loader(
                self.dataset, _FixedBatches(lists), self.num_workers, self.device, False
            )
        non_blocking = self.device.type == "cuda"
        for images, labels in loader:
            yield (
                images.to(self.device, non_blocking=non_blocking),
                labels.to(self.device, non_blocking=non_blocking),
            )


def full_batches(
    dataset: ImageDataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Every image once, in dataset order, in batches of ``batch_size`` (the last may be smaller).

    Yields uint8 images ``[B, C, H, W]`` and int64 labels ``[B]`` on ``device`` (fresh tensors,
    never views of the dataset). Used for feature extraction in evaluation.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    # A plain function returning a generator, so that bad arguments fail at the call.
    return _full_batches(dataset, batch_size, torch.device(device), num_workers)


def _full_batches(
    dataset: ImageDataset, batch_size: int, target: torch.device, num_workers: int
) -> Iterator[tuple[Tensor, Tensor]]:
    n = len(dataset)
    if isinstance(dataset, TensorImageDataset):
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            yield (
                dataset.images[start:end].to(target, copy=True),
                dataset.labels[start:end].to(target, copy=True),
            )
        return
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    loader = _decoding_loader(dataset, _FixedBatches(batches), num_workers, target, False)
    non_blocking = target.type == "cuda"
    for images, labels in loader:
        yield (
            images.to(target, non_blocking=non_blocking),
            labels.to(target, non_blocking=non_blocking),
        )
