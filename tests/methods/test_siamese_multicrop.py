"""SimSiam, Barlow Twins, VICReg and SwAV over local crops: each loss against its pair rule
written out here, with the passes of the official code (SimSiam, Barlow Twins and VICReg: one
per global view; SwAV: one per crop size), and the registered multi-crop defaults."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from selfsup import build
from selfsup.config import Config, apply_overrides
from selfsup.methods import BarlowTwins, SimSiam, SwAV, VICReg
from selfsup.methods.barlow import barlow_projector
from selfsup.methods.registry import get_method
from selfsup.methods.simsiam import simsiam_predictor, simsiam_projector
from selfsup.methods.swav import swav_projector
from selfsup.nn.losses import barlow_twins_loss, simsiam_loss, vicreg_loss
from selfsup.nn.sinkhorn import sinkhorn_knopp
from selfsup.views import MultiViewTransform, simclr_small_view

FEATURES, DIM, BATCH = 12, 8, 6


def _backbone() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, FEATURES))


def _recipe(local_crops: int) -> MultiViewTransform:
    spec, local = simclr_small_view(16), simclr_small_view(8)
    return MultiViewTransform([spec, spec] + [local] * local_crops, mean=[0.5], std=[0.25])


def _views(method: nn.Module) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (BATCH, 1, 16, 16), dtype=torch.uint8, generator=gen)
    return method.view_recipe(images, generator=gen)  # type: ignore[operator]


def _per_global_view(
    encode: Callable[[torch.Tensor], torch.Tensor], views: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Each global view alone, the local crops in one batch (one BN batch each)."""
    out = [encode(views[0]), encode(views[1])]
    if len(views) > 2:
        out += list(encode(torch.cat(views[2:])).chunk(len(views) - 2))
    return out


@pytest.mark.parametrize("local_crops", [0, 3])
def test_simsiam_regresses_every_other_view_onto_each_global_projection(local_crops: int) -> None:
    torch.manual_seed(0)
    method = SimSiam(
        _backbone(), simsiam_projector(FEATURES, 16, DIM), simsiam_predictor(DIM, 4),
        _recipe(local_crops),
    )  # fmt: skip
    views = _views(method)
    z = _per_global_view(lambda x: method.projector(method.backbone(x)), views)
    p = _per_global_view(lambda x: method.predictor(method.projector(method.backbone(x))), views)
    terms = [simsiam_loss(p[v], z[t]) for t in (0, 1) for v in range(len(views)) if v != t]
    expected = sum(terms) / len(terms)  # at 2 views: D(p2, z1) / 2 + D(p1, z2) / 2
    torch.testing.assert_close(method.training_step(views).loss, expected)


@pytest.mark.parametrize("kind", ["barlow", "vicreg"])
@pytest.mark.parametrize("local_crops", [0, 3])
def test_barlow_and_vicreg_average_every_pair_with_a_global_view(
    kind: str, local_crops: int
) -> None:
    torch.manual_seed(0)
    recipe, projector = _recipe(local_crops), barlow_projector(FEATURES, 16, DIM)
    method = (BarlowTwins if kind == "barlow" else VICReg)(_backbone(), projector, recipe)
    views = _views(method)
    z = _per_global_view(lambda x: method.projector(method.backbone(x)), views)
    loss = barlow_twins_loss if kind == "barlow" else vicreg_loss
    pairs = [(i, j) for i in (0, 1) for j in range(i + 1, len(views))]
    expected = sum(loss(z[i], z[j]) for i, j in pairs) / len(pairs)
    torch.testing.assert_close(method.training_step(views).loss, expected)


@pytest.mark.parametrize("local_crops", [0, 3])
def test_swav_predicts_the_global_codes_from_every_other_crop(local_crops: int) -> None:
    torch.manual_seed(0)
    method = SwAV(
        _backbone(), swav_projector(FEATURES, 16, DIM), _recipe(local_crops), num_prototypes=5,
        proj_out_dim=DIM,
    )  # fmt: skip
    views = _views(method)
    out = method.training_step(views)
    weight = method.prototypes.weight.detach()  # normalised by the step

    def scores_of(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(method.projector(method.backbone(x)), dim=1) @ weight.T

    # one pass per crop size: the 2 globals together, the locals together
    scores = list(scores_of(torch.cat(views[:2])).chunk(2))
    if local_crops:
        scores += list(scores_of(torch.cat(views[2:])).chunk(local_crops))
    codes = [sinkhorn_knopp(s.detach()) for s in scores[:2]]
    terms = [
        -(codes[t] * F.log_softmax(scores[v] / 0.1, dim=1)).sum(1).mean()
        for t in (0, 1)
        for v in range(len(views))
        if v != t
    ]
    torch.testing.assert_close(out.loss, sum(terms) / len(terms))


def test_swav_takes_six_local_crops_by_default_the_others_none() -> None:
    defaults = {
        name: get_method(name).multicrop for name in ("simsiam", "barlow", "vicreg", "swav")
    }
    assert {n: (m.count, m.scale) for n, m in defaults.items() if m is not None} == {
        "simsiam": (0, (0.05, 0.14)),
        "barlow": (0, (0.05, 0.14)),
        "vicreg": (0, (0.05, 0.14)),
        "swav": (6, (0.05, 0.14)),
    }
    cfg = apply_overrides(Config(), ["method=swav", "views.size=28"])
    specs = build.method_view_specs(cfg)
    assert [s.size for s in specs] == [28, 28] + [12] * 6  # 96/224 of the global size
    assert [s.crop_scale for s in specs[1:3]] == [(0.14, 1.0), (0.05, 0.14)]
    cfg = apply_overrides(Config(), ["method=barlow", "views.local_crops=2", "views.size=28"])
    assert len(build.method_view_specs(cfg)) == 4
