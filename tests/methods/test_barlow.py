"""Barlow Twins as a method: the projector, the loss against a NumPy recomputation from per-view
passes, gradients through both branches, the paper's optimiser groups, and a short run that
decorrelates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from selfsup import build
from selfsup.config import Config, apply_method_defaults, apply_overrides
from selfsup.methods.barlow import BarlowTwins, barlow_projector
from selfsup.train.step import TrainStep
from selfsup.views import MultiViewTransform, byol_views
from tests.conftest import train_on_fixed_views


def _mlp_barlow(weight: float = 0.0051) -> BarlowTwins:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
    recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
    return BarlowTwins(backbone, barlow_projector(32, 48, 16), recipe, weight)


def _views(method: nn.Module, batch: int = 12, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 1, 10, 10), generator=g).to(torch.uint8)
    return method.make_views(images, torch.Generator().manual_seed(seed))  # type: ignore[operator]


def _np_barlow(z1: np.ndarray, z2: np.ndarray, weight: float) -> tuple[float, float, float]:
    a = (z1 - z1.mean(0)) / np.sqrt(z1.var(0) + 1e-5)
    b = (z2 - z2.mean(0)) / np.sqrt(z2.var(0) + 1e-5)
    c = a.T @ b / len(z1)
    on = float(((np.diag(c) - 1) ** 2).sum())
    off = float((c**2).sum() - (np.diag(c) ** 2).sum())
    return on + weight * off, on, off


def test_projector_is_three_linear_layers_without_bias_bn_relu_between() -> None:
    head = barlow_projector(2048)
    assert [type(m) for m in head] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
    ]
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [8192, 8192, 8192]
    assert all(m.bias is None for m in head if isinstance(m, nn.Linear))


def test_loss_equals_numpy_recomputation_from_one_pass_per_view() -> None:
    method = _mlp_barlow(weight=0.3)
    v1, v2 = _views(method)
    out = method.training_step([v1, v2])
    with torch.no_grad():
        z1, z2 = (method.projector(method.backbone(v)).double().numpy() for v in (v1, v2))
    loss, on, off = _np_barlow(z1, z2, 0.3)
    assert out.loss.item() == pytest.approx(loss, rel=1e-4)
    assert out.logs["on_diagonal"].item() == pytest.approx(on, rel=1e-4)
    assert out.logs["off_diagonal"].item() == pytest.approx(off, rel=1e-4)
    with torch.no_grad():  # both views in one BN batch would give another loss
        z = method.projector(method.backbone(torch.cat([v1, v2]))).double().numpy()
    assert abs(_np_barlow(z[:12], z[12:], 0.3)[0] - loss) > 1e-3


def test_both_branches_get_gradients() -> None:
    method = _mlp_barlow()
    v1, v2 = _views(method)
    z2 = method.projector(method.backbone(v2))
    z2.retain_grad()
    h1 = method.backbone(v1)
    loss = method.criterion(method.projector(h1), z2)
    loss.backward()
    assert z2.grad is not None and z2.grad.abs().sum() > 0  # no stop-gradient anywhere
    method.zero_grad()
    method.training_step([v1, v2]).loss.backward()
    assert all(p.grad is not None for p in method.parameters())


def test_standalone_recipe_gives_biases_and_bn_the_papers_lower_rate() -> None:
    cfg = apply_overrides(Config(), ["method=barlow", "train.epochs=100"])
    applied = apply_method_defaults(cfg)
    assert "optim.norm_and_bias_lr_scale=0.024" in applied
    assert cfg.optim.name == "lars" and cfg.optim.base_lr == 0.2
    # The official schedule ends at 1/1000 of the peak: 0.2 x 256/256 / 1000.
    assert cfg.optim.final_lr == pytest.approx(2e-4)
    assert cfg.optim.warmup_epochs == 10.0
    cfg.views.mean, cfg.views.std = [0.5], [0.25]
    cfg.barlow.proj_hidden_dim = cfg.barlow.proj_out_dim = 16
    cfg.views.size, cfg.backbone.width = 16, 0.125
    method = build.make_method(cfg, in_channels=1)
    step = TrainStep.from_config(cfg, method, steps_per_epoch=10, device="cpu")
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    step(images, 500)  # after the warm-up
    lrs = {g["lars_exclude"]: g["lr"] for g in step.optimizer.param_groups}
    assert lrs[True] == pytest.approx(0.024 * lrs[False])  # 0.0048 vs 0.2 per 256 images


def test_training_on_fixed_views_drives_the_cross_correlation_to_the_identity() -> None:
    results = train_on_fixed_views("barlow")  # SGD 0.1, D = 32
    # Measured: loss 31.3 -> 2.4, the diagonal term 0.2 of its start near D = 32, the
    # normalised embeddings' std 0.16 (1/sqrt(32) = 0.18: spread, not collapsed).
    first, last = results[0], results[-1]
    assert last.loss.item() < 0.25 * first.loss.item()
    assert last.logs["on_diagonal"].item() < 0.1 * first.logs["on_diagonal"].item()
    assert last.logs["embedding_std"].item() > 0.1
