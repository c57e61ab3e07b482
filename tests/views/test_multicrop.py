"""Multi-crop for every two-view method: the pairs, the per-resolution forward, the config, and
each method's loss over local crops against formulas written out here."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup import build
from selfsup.config import Config, ConfigError, apply_overrides
from selfsup.methods import BYOL, MoCo, MoCoV3, SimCLR
from selfsup.views import (
    MultiViewTransform,
    crop_pairs,
    forward_by_size,
    simclr_small_view,
    size_groups,
)
from tests.conftest import tiny_config

FEATURES, DIM, BATCH = 12, 8, 6


@pytest.mark.parametrize("num_views", [2, 3, 6, 10])
def test_pairs_follow_the_two_rules(num_views):
    targets = crop_pairs(num_views)
    assert len(targets) == 2 * (num_views - 1)
    assert all(t in (0, 1) and q != t for t, q in targets)
    assert len(set(targets)) == len(targets)
    symmetric = crop_pairs(num_views, symmetric=True)
    # every unordered pair that touches a global crop, once
    expected = {frozenset(p) for p in itertools.combinations(range(num_views), 2) if min(p) < 2}
    assert {frozenset(p) for p in symmetric} == expected and len(symmetric) == len(expected)
    with pytest.raises(ValueError, match="at least 2 views"):
        crop_pairs(1)


def test_forward_by_size_runs_one_pass_per_resolution_and_keeps_the_view_order():
    calls: list[int] = []

    def net(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x.flatten(1).mean(1, keepdim=True)

    views = [torch.full((2, 1, 8, 8), float(i)) for i in range(2)]
    views += [torch.full((2, 1, 4, 4), float(i)) for i in range(2, 5)]
    out = forward_by_size(net, views)
    assert calls == [4, 6]  # the globals together, the locals together
    assert [float(o[0, 0]) for o in out] == [0.0, 1.0, 2.0, 3.0, 4.0]
    calls.clear()
    forward_by_size(net, views, separate=2)
    assert calls == [2, 2, 6]
    assert size_groups(views[:2] + views[:1]) == [(0, 3)]


def test_local_crops_come_from_the_config_after_the_global_views():
    cfg = tiny_config("views.size=16", "views.local_crops=3", "views.local_size=8")
    specs = build.method_view_specs(cfg)
    assert [s.size for s in specs] == [16, 16, 8, 8, 8]
    assert specs[2].crop_scale == (0.05, 0.14)  # SwAV's multi-crop scale for SimCLR
    assert specs[0].crop_scale == simclr_small_view(16).crop_scale
    cfg = tiny_config("views.size=16", "views.local_crops=2", "views.local_crop_scale=[0.1,0.3]")
    specs = build.method_view_specs(cfg)
    assert [s.size for s in specs] == [16, 16, 8, 8]  # null size: 96/224 of 16 -> 8 px minimum
    assert specs[3].crop_scale == (0.1, 0.3)
    assert len(build.method_view_specs(tiny_config())) == 2  # off by default


def test_dino_takes_eight_local_crops_by_default_at_96_224_of_the_size():
    cfg = apply_overrides(Config(), ["method=dino", "views.size=64"])
    specs = build.method_view_specs(cfg)
    assert [s.size for s in specs] == [64, 64] + [27] * 8
    assert specs[2].crop_scale == (0.05, 0.4) and specs[2].blur_p == 0.5


def test_old_dino_keys_move_to_views_and_an_old_override_names_the_new_key():
    old = Config().to_dict()
    old["method"] = "dino"
    del old["views"]["local_crops"], old["views"]["local_size"], old["views"]["local_crop_scale"]
    old["dino"].update(num_local_crops=4, local_size=12, local_crop_scale=[0.05, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = Config.from_dict(old)
    assert (cfg.views.local_crops, cfg.views.local_size) == (4, 12)
    assert cfg.views.local_crop_scale == [0.05, 0.3]
    old["method"] = "simclr"  # DINO's defaults in another method's file never applied
    assert Config.from_dict(old).views.local_crops is None
    with pytest.raises(ConfigError, match=r"dino.num_local_crops is now views.local_crops"):
        apply_overrides(Config(), ["dino.num_local_crops=4"])


# -- each method's loss over local crops, against the formulas written out --------------------
def _backbone() -> nn.Module:
    # no BatchNorm: the reference below need not reproduce per-resolution batch statistics
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, FEATURES))


def _recipe(local_crops: int) -> MultiViewTransform:
    spec = simclr_small_view(16)
    local = simclr_small_view(8)
    return MultiViewTransform([spec, spec] + [local] * local_crops, mean=[0.5], std=[0.25])


def _views(method: nn.Module) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (BATCH, 1, 16, 16), dtype=torch.uint8, generator=gen)
    return method.view_recipe(images, generator=gen)  # type: ignore[operator]


def _nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / tau
    sim.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, positives)


def _ctr(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / tau
    return 2 * tau * F.cross_entropy(logits, torch.arange(q.shape[0]))


def _regression(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()


@pytest.mark.parametrize("local_crops", [0, 3])
def test_simclr_averages_nt_xent_over_every_pair_with_a_global_view(local_crops):
    torch.manual_seed(0)
    method = SimCLR(_backbone(), nn.Linear(FEATURES, DIM), _recipe(local_crops), 0.5)
    views = _views(method)
    z = [method.projector(method.backbone(x)) for x in views]
    pairs = [(i, j) for i in range(len(z)) for j in range(i + 1, len(z)) if i < 2]
    expected = sum(_nt_xent(z[i], z[j], 0.5) for i, j in pairs) / len(pairs)
    assert torch.allclose(method.training_step(views).loss, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["byol", "mocov3"])
@pytest.mark.parametrize("local_crops", [0, 2])
def test_target_network_methods_regress_every_other_view_onto_each_global(kind, local_crops):
    torch.manual_seed(0)
    recipe = _recipe(local_crops)
    heads = nn.Linear(FEATURES, DIM), nn.Linear(DIM, DIM)
    method: BYOL | MoCoV3 = (
        BYOL(_backbone(), *heads, recipe) if kind == "byol" else MoCoV3(_backbone(), *heads, recipe)
    )
    with torch.no_grad():  # a target different from the online network
        for p in method.target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    views = _views(method)
    online = [method.predictor(method.projector(method.backbone(x))) for x in views]
    targets = [method.target(x).detach() for x in views[:2]]
    terms = [
        _regression(online[v], targets[t]) if kind == "byol" else _ctr(online[v], targets[t], 1.0)
        for t in (0, 1)
        for v in range(len(views))
        if v != t
    ]
    expected = 2 * sum(terms) / len(terms)  # the paper's sum of 2 terms at 2 views
    assert torch.allclose(method.training_step(views).loss, expected, atol=1e-5)


@pytest.mark.parametrize("local_crops", [0, 2])
def test_moco_v2_makes_every_local_crop_a_query_of_the_same_key(local_crops):
    torch.manual_seed(0)
    method = MoCo(
        _backbone(), nn.Linear(FEATURES, DIM), _recipe(local_crops), 0.2, 32, split_bn=0,
        proj_out_dim=DIM,
    )  # fmt: skip
    views = _views(method)
    queue = method.queue.keys.clone()  # [K, D]
    k = F.normalize(method.target(views[1]).detach(), dim=1)
    queries = [views[0], *views[2:]]
    terms = []
    for x in queries:
        q = F.normalize(method.projector(method.backbone(x)), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / 0.2
        terms.append(F.cross_entropy(logits, torch.zeros(BATCH, dtype=torch.long)))
    expected = sum(terms) / len(terms)
    assert torch.allclose(method.training_step(views).loss, expected, atol=1e-5)


def test_methods_without_local_crops_refuse_them_and_a_simclr_run_trains_with_them(tmp_path):
    from selfsup.train.trainer import Trainer

    cfg = tiny_config("views.local_crops=2", "train.max_steps=3")
    Trainer(cfg, tmp_path / "run").fit()
    assert (tmp_path / "run" / "encoder.safetensors").exists()
    cfg = tiny_config("method=mae", "backbone.name=vit_micro", "backbone.patch_size=2")
    cfg.views.local_crops = 2
    with pytest.raises(ConfigError, match="mae takes no local crops"):
        cfg.validate()
