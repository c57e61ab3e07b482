"""Jigsaw puzzles: the permutation set (greedy max-min Hamming distance, reproducible, no
duplicates, fast), tiles against crops of the view at the recorded offsets, per-tile
normalisation, the loss against a NumPy recomputation, the set carried and checked by
checkpoints, the size rules, and a short run that learns the task."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from selfsup import build
from selfsup.backbones import FeatureBackbone, ResNet, build_vit
from selfsup.cli.run_commands import build_config
from selfsup.config import Config, ConfigError, apply_overrides
from selfsup.methods.jigsaw import Jigsaw
from selfsup.nn import puzzle
from selfsup.nn.puzzle import (
    cut_tiles,
    hamming_permutations,
    normalize_tiles,
    shuffle_tiles,
    unshuffle_tiles,
)
from selfsup.train.trainer import Trainer
from selfsup.views import MultiViewTransform, jigsaw_view
from tests.conftest import METHOD_OVERRIDES, tiny_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ALL_9 = np.array(list(itertools.permutations(range(9))), dtype=np.int8)  # [9!, 9]


# ---------------------------------------------------------------------------------------
# The permutation set


def test_each_permutation_maximises_its_minimum_distance_to_those_before() -> None:
    """Brute force over all 9! permutations: permutation k is one of the farthest (max-min
    Hamming distance to permutations 0..k-1), and among those one with the largest sum."""
    perms = hamming_permutations(9, 60, seed=3).numpy().astype(np.int8)
    min_d = np.full(len(ALL_9), 9, dtype=np.int64)
    sum_d = np.zeros(len(ALL_9), dtype=np.int64)
    for k in range(1, len(perms)):
        d = (perms[k - 1] != ALL_9).sum(1)
        min_d, sum_d = np.minimum(min_d, d), sum_d + d
        mine = int(np.flatnonzero((perms[k] == ALL_9).all(1))[0])
        assert min_d[mine] == min_d.max(), k
        assert sum_d[mine] == sum_d[min_d == min_d.max()].max(), k


@pytest.mark.parametrize(("count", "least"), [(9, 9), (100, 6), (1000, 5)])
def test_sets_are_distinct_permutations_with_the_stated_distances(count: int, least: int) -> None:
    perms = hamming_permutations(9, count, seed=0)
    assert perms.dtype == torch.int64 and perms.shape == (count, 9)
    assert all(sorted(row) == list(range(9)) for row in perms.tolist())
    assert len({tuple(row) for row in perms.tolist()}) == count  # no duplicates
    # pairwise distances by a plain loop over pairs, not hamming_distances
    rows = perms.tolist()
    pairs = [sum(a != b for a, b in zip(p, q)) for p, q in itertools.combinations(rows, 2)]
    assert min(pairs) == least  # documented in docs/methods.md
    if count == 1000:
        assert np.mean(pairs) == pytest.approx(8.0, abs=0.05)  # the paper's ~8


def test_same_seed_same_set_other_seed_other_set() -> None:
    first = hamming_permutations(9, 100, seed=0)
    puzzle._greedy_set.cache_clear()  # rebuild rather than read the cache
    assert torch.equal(hamming_permutations(9, 100, seed=0), first)
    assert not torch.equal(hamming_permutations(9, 100, seed=1), first)
    first[0, 0] = 99  # a copy: the cache is not changed through the tensor
    assert hamming_permutations(9, 100, seed=0)[0, 0] != 99


def test_a_thousand_permutations_take_seconds() -> None:
    puzzle._greedy_set.cache_clear()
    start = time.perf_counter()
    hamming_permutations(9, 1000, seed=5)
    assert time.perf_counter() - start < 20  # ~1 s measured; minutes would be a regression


def test_four_tiles_and_bad_sizes() -> None:
    every = hamming_permutations(4, 24, seed=0)
    assert len({tuple(r) for r in every.tolist()}) == 24  # all of them
    with pytest.raises(ValueError, match=r"num_permutations must be in \[1, 24\]"):
        hamming_permutations(4, 25)
    with pytest.raises(ValueError, match="num_tiles must be in"):
        hamming_permutations(16, 10)


# ---------------------------------------------------------------------------------------
# Tiles


def _crop(view: torch.Tensor, cell: int, offset: list[int], margin: int) -> torch.Tensor:
    """The 8 px tile of ``cell`` (row-major in a 3x3 grid of 10 px cells) of ``view [C, S, S]``
    at ``offset = (dy, dx)``, by plain slicing."""
    row, col = divmod(cell, 3)
    y0, x0 = margin + row * 10 + offset[0], margin + col * 10 + offset[1]
    return view[:, y0 : y0 + 8, x0 : x0 + 8]


def test_tiles_are_the_crops_at_the_recorded_offsets_in_the_permuted_order() -> None:
    g = torch.Generator().manual_seed(0)
    views = torch.randn(5, 2, 32, 32, generator=g)  # 3x3 cells of 10 px, centred: margin 1
    offsets = torch.randint(0, 3, (5, 9, 2), generator=g)
    perms = hamming_permutations(9, 20)[torch.randint(0, 20, (5,), generator=g)]
    tiles = cut_tiles(views, offsets, grid_size=3, cell_size=10, tile_size=8)  # grid order
    shuffled = shuffle_tiles(tiles, perms)
    for n in range(5):
        for k in range(9):
            cell = int(perms[n, k])
            expected = _crop(views[n], cell, offsets[n, cell].tolist(), margin=1)
            assert torch.equal(shuffled[n, k], expected), (n, k)
    # the inverse permutation puts every tile back where it was cut
    assert torch.equal(unshuffle_tiles(shuffled, perms), tiles)


def test_each_tile_is_normalised_per_channel_on_its_own() -> None:
    g = torch.Generator().manual_seed(1)
    tiles = torch.rand(4, 9, 3, 6, 6, generator=g) * 5 + torch.arange(3.0)[:, None, None]
    tiles[0, 0] = 0.25  # a blank tile stays (near) zero instead of amplifying noise
    out = normalize_tiles(tiles)
    x = tiles.double().numpy()
    mean = x.mean(axis=(-2, -1), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(out.numpy(), (x - mean) / np.sqrt(var + 1e-4), atol=1e-5)
    assert out[0, 0].abs().max() == 0
    torch.testing.assert_close(out[1:].mean(dim=(-2, -1)), torch.zeros(3, 9, 3), atol=1e-5, rtol=0)
    std = out[1:].std(dim=(-2, -1), unbiased=False)  # 1 up to the eps floor (var ~2 here)
    torch.testing.assert_close(std, torch.ones(3, 9, 3), atol=1e-4, rtol=0)


def _jigsaw(size: int = 12, perms: int = 10, backbone: nn.Module | None = None) -> Jigsaw:
    torch.manual_seed(0)
    if backbone is None:
        backbone = FeatureBackbone(nn.Sequential(nn.Flatten(), nn.Linear(9, 6)), 6)  # 3 px tiles
    recipe = MultiViewTransform([jigsaw_view(size)], mean=[0.5], std=[0.25])
    return Jigsaw(backbone, recipe, num_permutations=perms, hidden_dim=16)


def test_make_puzzles_draws_offsets_in_the_gap_and_permutations_from_the_set() -> None:
    method = _jigsaw(size=30, backbone=ResNet("resnet18", 0.125, True, in_channels=1))
    assert (method.cell_size, method.tile_size) == (10, 8)
    views = torch.randn(64, 1, 30, 30)
    puzzles = method.make_puzzles(views, torch.Generator().manual_seed(0))
    assert puzzles.tiles.shape == (64, 9, 1, 8, 8)
    assert set(puzzles.offsets.unique().tolist()) == {0, 1, 2}  # the whole 2 px gap
    assert puzzles.labels.min() >= 0 and puzzles.labels.max() < 10
    assert len(puzzles.labels.unique()) > 5
    perms = method.permutations[puzzles.labels]
    for n in range(0, 64, 7):
        for k in range(9):
            cell = int(perms[n, k])
            crop = _crop(views[n], cell, puzzles.offsets[n, cell].tolist(), margin=0)
            torch.testing.assert_close(puzzles.tiles[n, k], normalize_tiles(crop[None])[0])


# ---------------------------------------------------------------------------------------
# Loss and features


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_loss_and_features_against_a_numpy_recomputation() -> None:
    method = _jigsaw()
    views = method.make_views(torch.randint(0, 256, (8, 1, 10, 10), dtype=torch.uint8))
    torch.manual_seed(7)
    out = method.training_step(views)
    torch.manual_seed(7)  # training_step draws its puzzles from the global generator
    puzzles = method.make_puzzles(views[0])

    w = {k: v.detach().double().numpy() for k, v in method.state_dict().items()}
    tiles = puzzles.tiles.double().numpy()  # [N, 9, 1, 3, 3] in shuffled order
    h = tiles.reshape(8, 9, -1) @ w["backbone.module.1.weight"].T + w["backbone.module.1.bias"]
    z = h.reshape(8, -1) @ w["classifier.0.weight"].T  # concatenated in shuffled order
    z = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * w["classifier.1.weight"]
    z = np.maximum(z + w["classifier.1.bias"], 0)
    logits = z @ w["classifier.3.weight"].T + w["classifier.3.bias"]  # [N, P]
    labels = puzzles.labels.numpy()
    expected = -_np_log_softmax(logits)[np.arange(8), labels].mean()
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.logs["jigsaw_accuracy"].item() == pytest.approx((logits.argmax(1) == labels).mean())
    # embeddings: each image's tile features averaged over its 9 tiles, detached; no
    # features for the online probe (training never sees whole images)
    assert out.embeddings is not None and not out.embeddings.requires_grad
    np.testing.assert_allclose(out.embeddings.numpy(), h.mean(1), rtol=1e-5, atol=1e-6)
    assert out.features is None
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


# ---------------------------------------------------------------------------------------
# Checkpoints carry the set


def test_the_set_is_in_the_state_dict_and_checked_when_loaded() -> None:
    method = _jigsaw()
    state = method.state_dict()
    assert torch.equal(state["permutations"], hamming_permutations(9, 10, seed=0))
    _jigsaw().load_state_dict(state)  # the same set: silent

    other = dict(state, permutations=hamming_permutations(9, 10, seed=4))
    fresh = _jigsaw()
    with pytest.warns(UserWarning, match="the checkpoint's set is used"):
        fresh.load_state_dict(other)
    assert torch.equal(fresh.permutations, other["permutations"])

    twice = state["permutations"].clone()
    twice[1] = twice[0]
    not_one = state["permutations"].clone()
    not_one[2, 0] = not_one[2, 1]
    for bad, why in (
        (twice, "the same permutation twice"),
        (not_one, "not a permutation"),
        (hamming_permutations(9, 12), r"holds \(12, 9\) permutations"),
    ):
        with pytest.raises(RuntimeError, match=why):
            _jigsaw().load_state_dict(dict(state, permutations=bad))


# ---------------------------------------------------------------------------------------
# Sizes: config rules, backbones on tiles and on whole images


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["views.size=28", "jigsaw.tile_size=10"], r"tile_size=10 does not fit its cell.*9 px"),
        (["views.size=30", "jigsaw.grid_size=2", "jigsaw.num_permutations=30"], "only 24"),
        (
            ["backbone.name=vit_micro", "backbone.patch_size=4", "jigsaw.tile_size=6"],
            "not a multiple of backbone.patch_size=4",
        ),
        (["train.batch_size=1"], "at least 2 puzzles"),
    ],
)
def test_impossible_puzzles_are_config_errors(overrides: list[str], match: str) -> None:
    cfg = apply_overrides(tiny_config(), ["method=jigsaw", "views.size=32", *overrides])
    with pytest.raises(ConfigError, match=match):
        cfg.validate()


def test_fashion_mnist_preset_and_a_null_tile_at_the_papers_ratio() -> None:
    preset = Config.from_yaml(CONFIGS / "jigsaw_fashion_mnist.yaml").validate()
    preset.views.mean, preset.views.std = [0.5], [0.25]
    preset.jigsaw.hidden_dim = 32
    method = build.make_method(preset, in_channels=1)
    assert isinstance(method, Jigsaw)
    assert (method.cell_size, method.tile_size, method.num_permutations) == (10, 8, 100)
    # null: 64/75 of a 10 px cell = 8.5, down to 8, a multiple of the ViT's 4 px patches
    vit = apply_overrides(tiny_config(), ["method=jigsaw", "backbone.name=vit_micro"])
    vit.views.size, vit.backbone.patch_size = 32, 4
    vit.views.mean, vit.views.std = [0.5], [0.25]
    method = build.make_method(vit.validate(), in_channels=1)
    assert isinstance(method, Jigsaw) and method.tile_size == 8


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_the_backbone_trains_on_tiles_and_encodes_whole_images(name: str) -> None:
    backbone = (
        ResNet("resnet18", 0.125, True, in_channels=1)
        if name == "resnet"
        else build_vit("vit_micro", image_size=30, patch_size=3, in_channels=1)
    )
    method = _jigsaw(size=30, perms=10, backbone=backbone)
    assert method.tile_size == (8 if name == "resnet" else 6)
    views = method.make_views(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8))
    method.training_step(views).loss.backward()
    method.eval()
    with torch.no_grad():
        whole = method.encoder(views[0])  # evaluation: whole 30 px images
    assert whole.shape == (4, backbone.feature_dim) and torch.isfinite(whole).all()


def test_method_alone_starts_from_the_papers_sgd_with_a_puzzle_that_fits() -> None:
    cfg = build_config(None, ["method=jigsaw"])
    assert (cfg.optim.name, cfg.optim.base_lr, cfg.optim.weight_decay) == ("sgd", 0.01, 5e-4)
    assert cfg.optim.warmup_epochs == 0 and cfg.train.online_linear is False


# ---------------------------------------------------------------------------------------
# It learns


def test_a_short_run_learns_to_tell_the_permutations_apart(tmp_path) -> None:
    # 3 epochs of 22 steps on digits (3 px tiles, 10 permutations), about 3 s: measured
    # accuracy 0.06 at the first step and ~0.9 over the last epoch (chance 0.1).
    cfg = tiny_config(*METHOD_OVERRIDES["jigsaw"], "train.epochs=3")
    Trainer(cfg, tmp_path / "run").fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    accuracy = [x["jigsaw_accuracy"] for x in lines if x["kind"] == "train"]
    assert np.mean(accuracy[:3]) < 0.25
    assert np.mean(accuracy[-10:]) > 0.6
