"""BYOL: loss against a NumPy forward pass, stop-gradient, the EMA rule, and the collapse ablation."""

from __future__ import annotations

import copy
import functools
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.backbones import ResNet
from selfsup.data import EpochLoader, TensorImageDataset, load_dataset
from selfsup.methods.base import Progress
from selfsup.methods.byol import BYOL, byol_predictor, byol_projector
from selfsup.train.optim import build_optimizer, param_groups, scaled_lr
from selfsup.train.schedules import constant_schedule
from selfsup.train.step import TrainStep
from selfsup.views import MultiViewTransform, byol_views
from tests.conftest import requires_fashion_mnist

SIDE = 8  # view side of the small unit-test models


def _mlp_byol(
    momentum_base: float = 0.99,
    schedule: str = "cosine",
    predictor: nn.Module | None = None,
) -> BYOL:
    """BYOL on an MLP backbone (8x8 grey views -> 32 features), small enough for NumPy."""
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 32))
    recipe = MultiViewTransform(byol_views(SIDE), mean=[0.5], std=[0.25])
    return BYOL(
        backbone,
        byol_projector(32, 48, 16),
        byol_predictor(16, 48) if predictor is None else predictor,
        recipe,
        momentum_base=momentum_base,
        momentum_schedule=schedule,  # type: ignore[arg-type]
    )


def _views(method: BYOL, batch: int = 12, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 1, 10, 10), generator=g).to(torch.uint8)
    return method.make_views(images, torch.Generator().manual_seed(seed))


def _numpy_params(module: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


def _np_head(x: np.ndarray, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Linear - BatchNorm(batch statistics, biased variance) - ReLU - Linear, no biases."""
    h = x @ w[f"{prefix}0.weight"].T
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * w[f"{prefix}1.weight"] + w[f"{prefix}1.bias"]
    h = np.maximum(h, 0.0)
    return h @ w[f"{prefix}3.weight"].T


def _np_projection(x: np.ndarray, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """Backbone (Flatten, Linear) then projector, from a state dict with ``prefix``."""
    flat = x.reshape(len(x), -1)
    h = flat @ w[f"{prefix}backbone.1.weight"].T + w[f"{prefix}backbone.1.bias"]
    return _np_head(h, w, f"{prefix}projector.")


def _np_loss(p: np.ndarray, z: np.ndarray) -> float:
    cos = (p * z).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(z, axis=1))
    return float(np.mean(2.0 - 2.0 * cos))


def _target_as_online_names(method: BYOL) -> dict[str, np.ndarray]:
    """The target's state dict renamed to the online layout (target.0 -> backbone...)."""
    w = _numpy_params(method.target.module)
    renamed = {}
    for key, value in w.items():
        index, _, rest = key.partition(".")
        renamed[f"{('backbone', 'projector')[int(index)]}.{rest}"] = value
    return renamed


# ---------------------------------------------------------------------------------------
# Heads


def test_heads_are_linear_bn_relu_linear_with_paper_sizes() -> None:
    projector, predictor = byol_projector(2048), byol_predictor()
    for head, (d_in, d_hidden, d_out) in (
        (projector, (2048, 4096, 256)),
        (predictor, (256, 4096, 256)),
    ):
        assert [type(m) for m in head] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
        assert (head[0].in_features, head[0].out_features) == (d_in, d_hidden)
        assert head[1].num_features == d_hidden
        assert (head[3].in_features, head[3].out_features) == (d_hidden, d_out)
        # BN cancels a hidden bias; the official heads end in a Linear without bias
        assert head[0].bias is None and head[3].bias is None


# ---------------------------------------------------------------------------------------
# Loss and gradients


def test_loss_equals_numpy_recomputation_with_per_view_batch_norm() -> None:
    method = _mlp_byol()
    with torch.no_grad():  # a target different from the online network, as after training
        for p in method.target.parameters():
            p.add_(0.3 * torch.randn_like(p))
    v1, v2 = _views(method)
    online = _numpy_params(method)
    target = _target_as_online_names(method)
    out = method.training_step([v1, v2])

    x1, x2 = v1.double().numpy(), v2.double().numpy()
    z1, z2 = _np_projection(x1, online, ""), _np_projection(x2, online, "")
    p1, p2 = _np_head(z1, online, "predictor."), _np_head(z2, online, "predictor.")
    t1, t2 = _np_projection(x1, target, ""), _np_projection(x2, target, "")
    expected = _np_loss(p1, t2) + _np_loss(p2, t1)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    # Embeddings: the online projections of both views, detached.
    assert out.embeddings is not None and not out.embeddings.requires_grad
    np.testing.assert_allclose(
        out.embeddings.numpy(), np.concatenate([z1, z2]), rtol=1e-4, atol=1e-5
    )
    # The collapse metric: mean over dimensions of the std of the L2-normalised projections.
    both_z = np.concatenate([z1, z2])
    unit_z = both_z / np.linalg.norm(both_z, axis=1, keepdims=True)
    expected_std = float(np.mean(np.std(unit_z, axis=0, ddof=1)))
    assert out.logs["embedding_std"].item() == pytest.approx(expected_std, rel=1e-4)
    # Concatenating the views into one BatchNorm batch would give another loss.
    both = np.concatenate([x1, x2])
    z_cat = _np_projection(both, online, "")
    p_cat, t_cat = _np_head(z_cat, online, "predictor."), _np_projection(both, target, "")
    n = len(x1)
    concatenated = _np_loss(p_cat[:n], t_cat[n:]) + _np_loss(p_cat[n:], t_cat[:n])
    assert abs(concatenated - expected) > 1e-3


def test_stop_gradient_only_online_parameters_get_gradients() -> None:
    method = _mlp_byol()
    method.training_step(_views(method)).loss.backward()
    for name, p in method.target.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    for module in (method.backbone, method.projector, method.predictor):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # The optimiser sees exactly the online parameters.
    optimised = {id(p) for group in param_groups(method, 1e-6) for p in group["params"]}
    online = [*method.backbone.parameters(), *method.projector.parameters()]
    online += list(method.predictor.parameters())
    assert optimised == {id(p) for p in online}


def test_step_works_under_cpu_autocast_with_a_float32_loss() -> None:
    method = _mlp_byol()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.training_step(_views(method))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()


# ---------------------------------------------------------------------------------------
# EMA target


def test_ema_rule_on_parameters_and_target_keeps_its_batch_norm_statistics() -> None:
    method = _mlp_byol(momentum_base=0.9, schedule="constant")
    with torch.no_grad():
        for p in [*method.backbone.parameters(), *method.projector.parameters()]:
            p.add_(torch.randn_like(p))
        bn = method.target[1][1]  # the target projector's BatchNorm
        assert isinstance(bn, nn.BatchNorm1d)
        assert bn.running_mean is not None and bn.running_var is not None
        running_mean, running_var = bn.running_mean, bn.running_var
        running_mean.fill_(7.0)
        running_var.fill_(3.0)
    online = {
        **{f"module.0.{k}": v.clone() for k, v in method.backbone.named_parameters()},
        **{f"module.1.{k}": v.clone() for k, v in method.projector.named_parameters()},
    }
    before = {k: v.clone() for k, v in method.target.named_parameters()}
    method.after_step(Progress(step=0, total_steps=10, epoch=0, steps_per_epoch=10))
    for name, p in method.target.named_parameters():
        expected = 0.9 * before[name] + 0.1 * online[name]
        torch.testing.assert_close(p, expected, rtol=0, atol=1e-6, msg=name)
    assert bn.running_mean is running_mean and bn.running_var is running_var
    assert torch.all(running_mean == 7.0) and torch.all(running_var == 3.0)
    assert method.target.momentum.item() == pytest.approx(0.9)


def test_cosine_momentum_per_step_reaches_one_at_the_last_step() -> None:
    method = _mlp_byol(momentum_base=0.99)
    total = 20
    method.configure_schedules(total, steps_per_epoch=total)
    assert method.target.schedule is not None
    taus = method.target.schedule.tolist()
    for k, tau in enumerate(taus):  # tau after step k: k + 1 steps done
        assert tau == pytest.approx(1 - 0.01 * (math.cos(math.pi * (k + 1) / total) + 1) / 2)
    assert all(a < b for a, b in itertools.pairwise(taus))
    assert taus[0] > 0.99 and taus[-1] == 1.0
    # The last update leaves the target where it is, however far the online network moved.
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = [p.clone() for p in method.target.parameters()]
    method.after_step(Progress(total - 1, total, 0, total))
    assert all(torch.equal(a, b) for a, b in zip(before, method.target.parameters()))
    assert method.target.momentum.item() == 1.0
    constant = _mlp_byol(0.99, "constant")
    constant.configure_schedules(total, steps_per_epoch=total)
    assert constant.target.schedule is not None and constant.target.schedule[-1] == 0.99


def test_momentum_one_freezes_the_target_during_training() -> None:
    method = _mlp_byol(momentum_base=1.0, schedule="constant")
    start = copy.deepcopy(method.target.state_dict())
    online_start = [p.clone() for p in method.backbone.parameters()]
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    for step in range(3):
        optimizer.zero_grad()
        method.training_step(_views(method, seed=step)).loss.backward()
        optimizer.step()
        method.after_step(Progress(step, 3, 0, 3))
    assert any(not torch.equal(a, b) for a, b in zip(online_start, method.backbone.parameters()))
    for key, value in method.target.state_dict().items():
        if "running" in key or "num_batches" in key:
            continue  # the target's own BN statistics follow the batches it sees
        assert torch.equal(value, start[key]), key


def test_momentum_zero_without_predictor_copies_the_online_network() -> None:
    method = _mlp_byol(momentum_base=0.0, schedule="constant", predictor=nn.Identity())
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.training_step(_views(method)).loss.backward()
    optimizer.step()
    method.after_step(Progress(0, 5, 0, 5))
    online = [*method.backbone.parameters(), *method.projector.parameters()]
    assert all(torch.equal(t, o) for t, o in zip(method.target.parameters(), online))
    assert not any(t is o for t, o in zip(method.target.parameters(), online))


def test_state_dict_round_trip_and_deepcopy_keep_the_ema_pairing() -> None:
    method = _mlp_byol(momentum_base=0.5, schedule="constant")
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    method.after_step(Progress(0, 4, 0, 4))
    state = method.state_dict()
    assert "target.momentum" in state and any(k.startswith("target.module.0.") for k in state)
    fresh = _mlp_byol(momentum_base=0.5, schedule="constant")
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    # The copy's EMA moves its own target, not the original's.
    clone = copy.deepcopy(method)
    with torch.no_grad():
        for p in clone.backbone.parameters():
            p.add_(1.0)
    clone.after_step(Progress(1, 4, 0, 4))
    for key, value in method.state_dict().items():
        assert torch.equal(value, state[key]), key
    weight = "module.0.1.weight"  # the target backbone's Linear
    assert not torch.equal(clone.target.get_parameter(weight), method.target.get_parameter(weight))


def test_momentum_log_is_a_snapshot_of_the_latest_update() -> None:
    method = _mlp_byol(momentum_base=0.99)
    out = method.training_step(_views(method))
    assert out.logs["target_momentum"].item() == pytest.approx(0.99)
    method.after_step(Progress(4, 10, 0, 10))
    assert out.logs["target_momentum"].item() == pytest.approx(0.99)  # not aliased
    later = method.training_step(_views(method)).logs["target_momentum"]
    assert later.item() == pytest.approx(1 - 0.01 * (math.cos(math.pi * 5 / 10) + 1) / 2)


def test_encoder_is_the_online_backbone() -> None:
    method = _mlp_byol()
    assert method.encoder is method.backbone


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"momentum_base": 1.5}, "momentum_base"),
        ({"momentum_base": float("nan")}, "momentum_base"),
        ({"momentum_schedule": "linear"}, "momentum_schedule"),
        ({"views": 1}, "needs 2 global views"),
    ],
)
def test_rejects_bad_arguments_naming_them(kwargs: dict[str, object], match: str) -> None:
    kwargs = dict(kwargs)
    views = int(kwargs.pop("views", 2))  # type: ignore[call-overload]
    recipe = MultiViewTransform(byol_views(SIDE)[:1] * views, mean=[0.5], std=[0.25])
    with pytest.raises(ValueError, match=match):
        BYOL(nn.Flatten(), nn.Identity(), nn.Identity(), recipe, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Collapse: the failure mode BYOL's predictor and slow target prevent


@functools.cache
def _fashion_mnist_1024() -> TensorImageDataset:
    full = load_dataset("fashion_mnist", "train")
    assert isinstance(full, TensorImageDataset)
    return TensorImageDataset(full.images[:1024], full.labels[:1024], "fashion_mnist_1024", 10)


def _train_fashion_mnist(collapse: bool, steps: int = 40) -> tuple[list[float], list[float]]:
    """``steps`` LARS steps on 1024 Fashion-MNIST images at 16 px; (embedding_std, loss) per step."""
    data = _fashion_mnist_1024()
    torch.manual_seed(0)
    backbone = ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)
    method = BYOL(
        backbone,
        byol_projector(backbone.feature_dim, 128, 32),
        nn.Identity() if collapse else byol_predictor(32, 128),
        MultiViewTransform(byol_views(16), mean=[0.286], std=[0.353]),
        momentum_base=0.0 if collapse else 0.99,
        momentum_schedule="constant" if collapse else "cosine",
    )
    batch = 128
    lr = scaled_lr(0.2 * 6, batch, "linear")  # 0.6 * B / 256: a short run needs a high rate
    optimizer = build_optimizer("lars", param_groups(method, 1.5e-6), lr=lr, weight_decay=1.5e-6)
    loader = EpochLoader(data, batch, seed=0)
    step = TrainStep(method, optimizer, constant_schedule(lr, steps), loader.steps_per_epoch())
    generator = torch.Generator().manual_seed(0)
    method.train()
    stds: list[float] = []
    losses: list[float] = []
    epoch = 0
    while len(stds) < steps:
        for images, _ in loader.iterate(epoch):
            result = step(images, len(stds), generator)
            stds.append(result.logs["embedding_std"].item())
            losses.append(result.loss.item())
            if len(stds) == steps:
                break
        epoch += 1
    return stds, losses


@pytest.mark.slow
@requires_fashion_mnist
def test_without_predictor_and_momentum_the_projections_collapse_byol_does_not() -> None:
    collapsed_std, collapsed_loss = _train_fashion_mnist(collapse=True)
    byol_std, byol_loss = _train_fashion_mnist(collapse=False)
    # Same initialisation and views: both start spread out (1/sqrt(32) = 0.18 is uniform).
    assert collapsed_std[0] == pytest.approx(byol_std[0]) and byol_std[0] > 0.1
    collapsed_end, byol_end = np.mean(collapsed_std[-5:]), np.mean(byol_std[-5:])
    # Measured over seeds 0-3: collapsed 0.003-0.005, BYOL 0.12-0.15.
    assert collapsed_end < 0.02
    assert np.mean(collapsed_loss[-5:]) < 0.05  # the trivial solution: a constant output
    assert byol_end > 0.09 and byol_end > 5 * collapsed_end
    assert np.mean(byol_loss[-5:]) < 0.75 * byol_loss[0]  # BYOL learns without collapsing
