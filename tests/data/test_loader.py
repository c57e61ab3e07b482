"""EpochLoader: seeded order, resume, rank slicing, DataLoader path == in-memory path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import EpochLoader, FileImageDataset, TensorImageDataset, full_batches

N = 50
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def indexed_dataset(n: int = N, labelled: bool = True) -> TensorImageDataset:
    """Image i has every pixel equal to i and label i % 7, so a batch reveals its indices."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 3).contiguous()
    labels = torch.arange(n) % 7 if labelled else None
    return TensorImageDataset(images, labels, "indexed", 7 if labelled else None)


def indices_of(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist()


def epoch_indices(loader: EpochLoader, epoch: int, start_step: int = 0) -> list[list[int]]:
    return [indices_of(x) for x, _ in loader.iterate(epoch, start_step)]


@pytest.mark.parametrize("device", DEVICES)
def test_order_is_the_documented_randperm(device: str) -> None:
    loader = EpochLoader(indexed_dataset(), batch_size=8, seed=3, device=device)
    assert loader.steps_per_epoch() == N // 8 == len(loader)
    for epoch in (0, 4):
        expected = torch.randperm(N, generator=torch.Generator().manual_seed(3 + epoch)).tolist()
        batches = list(loader.iterate(epoch))
        assert len(batches) == 6
        for step, (images, labels) in enumerate(batches):
            assert images.shape == (8, 1, 2, 3) and images.dtype == torch.uint8
            assert labels.dtype == torch.int64 and images.device.type == device
            idx = expected[step * 8 : (step + 1) * 8]
            assert indices_of(images) == idx
            assert labels.tolist() == [i % 7 for i in idx]


def test_same_seed_same_order_and_epochs_differ() -> None:
    ds = indexed_dataset()
    a, b = EpochLoader(ds, 10, seed=1), EpochLoader(ds, 10, seed=1)
    assert epoch_indices(a, 2) == epoch_indices(b, 2)
    assert epoch_indices(a, 0) != epoch_indices(a, 1)
    assert epoch_indices(a, 0) != epoch_indices(EpochLoader(ds, 10, seed=2), 0)


@pytest.mark.parametrize("batch_size", [7, 10, 50, 64])
def test_every_index_once_without_drop_last(batch_size: int) -> None:
    loader = EpochLoader(indexed_dataset(), batch_size, seed=0, drop_last=False)
    batches = epoch_indices(loader, 3)
    assert len(batches) == loader.steps_per_epoch() == -(-N // batch_size)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(N))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)


def test_drop_last_gives_full_batches_without_repeats() -> None:
    loader = EpochLoader(indexed_dataset(), 16, seed=5)
    batches = epoch_indices(loader, 0)
    assert [len(b) for b in batches] == [16, 16, 16]
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == 48


def test_no_shuffle_is_sequential() -> None:
    loader = EpochLoader(indexed_dataset(), 20, shuffle=False, drop_last=False)
    assert epoch_indices(loader, 7) == [list(range(20)), list(range(20, 40)), list(range(40, 50))]


@pytest.mark.parametrize("drop_last", [True, False])
def test_resume_yields_exactly_the_remaining_batches(drop_last: bool) -> None:
    loader = EpochLoader(indexed_dataset(), 6, seed=9, drop_last=drop_last)
    full = list(loader.iterate(2))
    for start in (0, 1, 4, loader.steps_per_epoch()):
        resumed = list(
            EpochLoader(indexed_dataset(), 6, seed=9, drop_last=drop_last).iterate(2, start)
        )
        assert len(resumed) == len(full) - start
        for (x, y), (fx, fy) in zip(resumed, full[start:]):
            assert torch.equal(x, fx) and torch.equal(y, fy)


@pytest.mark.parametrize("world_size", [2, 5])
def test_rank_slices_partition_each_global_batch(world_size: int) -> None:
    ds = indexed_dataset()
    global_batches = epoch_indices(EpochLoader(ds, 10, seed=4), 1)
    per_rank = [
        epoch_indices(EpochLoader(ds, 10, seed=4, rank=r, world_size=world_size), 1)
        for r in range(world_size)
    ]
    for step, batch in enumerate(global_batches):
        parts = [per_rank[r][step] for r in range(world_size)]
        assert all(len(p) == 10 // world_size for p in parts)
        assert [i for p in parts for i in p] == batch
    # Resume works per rank too.
    resumed = epoch_indices(EpochLoader(ds, 10, seed=4, rank=1, world_size=world_size), 1, 3)
    assert resumed == per_rank[1][3:]


def test_argument_errors() -> None:
    ds = indexed_dataset()
    with pytest.raises(ValueError, match="not divisible by world_size 4"):
        EpochLoader(ds, 10, world_size=4)
    with pytest.raises(ValueError) as info:
        EpochLoader(ds, 64)
    assert (
        "64" in str(info.value) and "50" in str(info.value) and "drop_last=False" in str(info.value)
    )
    with pytest.raises(ValueError, match="rank"):
        EpochLoader(ds, 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="drop_last=True"):
        EpochLoader(ds, 10, world_size=2, drop_last=False)
    loader = EpochLoader(ds, 10)
    with pytest.raises(ValueError, match="start_step 6"):
        loader.iterate(0, 6)
    with pytest.raises(ValueError, match="epoch"):
        loader.iterate(-1)


def test_batches_are_fresh_tensors() -> None:
    ds = indexed_dataset()
    before = ds.images.clone()
    for x, _ in EpochLoader(ds, 10, seed=0).iterate(0):
        x.zero_()
    for x, _ in full_batches(ds, 16):
        x.zero_()
    assert torch.equal(ds.images, before)


# ------------------------------------------------------------------------------------------
# DataLoader path (files decoded with PIL)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def png_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12 PNGs, image i filled with 10 * i (distinct sizes: decode resizes them to 4x4)."""
    root = tmp_path_factory.mktemp("pngs")
    paths = []
    for i in range(12):
        path = root / f"{i:02d}.png"
        Image.new("L", (4 + i % 3, 4 + i % 2), 10 * i).save(path)
        paths.append(path)
    return paths


def file_and_memory(paths: list[Path]) -> tuple[FileImageDataset, TensorImageDataset]:
    labels = [i % 3 for i in range(len(paths))]
    files = FileImageDataset(paths, labels, image_size=4, channels=1)
    decoded = torch.stack([files[i][0] for i in range(len(files))])  # [12, 1, 4, 4]
    assert torch.equal(decoded[:, 0, 0, 0], torch.arange(12, dtype=torch.uint8) * 10)
    return files, TensorImageDataset(decoded, torch.tensor(labels), "mem", 3)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_dataloader_path_matches_in_memory_path(png_files: list[Path], num_workers: int) -> None:
    files, memory = file_and_memory(png_files)
    for drop_last, start in ((True, 0), (False, 0), (True, 1)):
        a = EpochLoader(files, 5, seed=11, drop_last=drop_last, num_workers=num_workers)
        b = EpochLoader(memory, 5, seed=11, drop_last=drop_last)
        got, want = list(a.iterate(1, start)), list(b.iterate(1, start))
        assert len(got) == len(want) == a.steps_per_epoch() - start
        for (x, y), (wx, wy) in zip(got, want):
            assert x.dtype == torch.uint8 and y.dtype == torch.int64
            assert torch.equal(x, wx) and torch.equal(y, wy)


def test_image_files_are_sharded_across_ranks_like_in_memory_data(png_files: list[Path]) -> None:
    files, memory = file_and_memory(png_files)
    for rank in range(2):
        a = EpochLoader(files, 6, seed=5, rank=rank, world_size=2, num_workers=1)
        b = EpochLoader(memory, 6, seed=5, rank=rank, world_size=2)
        got = [indices_of(x) for x, _ in a.iterate(1)]
        assert got == [indices_of(x) for x, _ in b.iterate(1)] and all(len(g) == 3 for g in got)


def test_persistent_workers_follow_each_epoch(png_files: list[Path]) -> None:
    files, memory = file_and_memory(png_files)
    a = EpochLoader(files, 4, seed=2, num_workers=1, persistent_workers=True)
    b = EpochLoader(memory, 4, seed=2)
    for epoch, start in ((0, 0), (1, 1), (2, 0)):
        got = [indices_of(x) for x, _ in a.iterate(epoch, start)]
        assert got == [indices_of(x) for x, _ in b.iterate(epoch, start)]


@pytest.mark.parametrize("device", DEVICES)
def test_full_batches_sequential_with_partial_tail(png_files: list[Path], device: str) -> None:
    files, memory = file_and_memory(png_files)
    for ds in (files, memory):
        batches = list(full_batches(ds, 5, device))
        assert [len(x) for x, _ in batches] == [5, 5, 2]
        images = torch.cat([x for x, _ in batches]).cpu()
        labels = torch.cat([y for _, y in batches]).cpu()
        assert torch.equal(images, memory.images) and torch.equal(labels, memory.labels)
        assert batches[0][0].device.type == device
    with pytest.raises(ValueError, match="batch_size"):
        full_batches(memory, 0)


def test_unlabelled_batches_carry_minus_one() -> None:
    loader = EpochLoader(indexed_dataset(labelled=False), 25, seed=0)
    labels = torch.cat([y for _, y in loader.iterate(0)])
    assert labels.dtype == torch.int64 and labels.tolist() == [-1] * 50


def test_dataset_get_batch_matches_items(png_files: list[Path]) -> None:
    files, memory = file_and_memory(png_files)
    idx = torch.tensor([7, 0, 11])
    for ds in (files, memory):
        images, labels = ds.get_batch(idx)
        assert images.shape == (3, 1, 4, 4)
        for k, i in enumerate(idx.tolist()):
            image, label = ds[i]
            assert torch.equal(images[k], image) and int(labels[k]) == label
    assert np.array_equal(memory.get_batch(idx)[0].numpy(), files.get_batch(idx)[0].numpy())
