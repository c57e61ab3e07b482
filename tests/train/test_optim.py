"""LARS against a NumPy reference and torch SGD; parameter groups; optimiser factory; lr rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.train.optim import LARS, build_optimizer, param_groups, scaled_lr


def numpy_lars(
    weights: list[np.ndarray],
    grad_steps: list[list[np.ndarray]],
    lrs: list[float],
    momentum: float,
    weight_decay: float,
    eta: float,
    exclude: bool,
) -> list[np.ndarray]:
    """LARS written out per tensor with NumPy (the official SimCLR/BYOL trust ratio)."""
    weights = [w.copy() for w in weights]
    buffers = [np.zeros_like(w) for w in weights]
    for grads, lr in zip(grad_steps, lrs):
        for i, (w, g) in enumerate(zip(weights, grads)):
            if exclude:
                d = g
            else:
                d = g + weight_decay * w
                w_norm, d_norm = np.linalg.norm(w), np.linalg.norm(d)
                ratio = eta * w_norm / d_norm if w_norm > 0 and d_norm > 0 else 1.0
                d = ratio * d
            buffers[i] = momentum * buffers[i] + d
            weights[i] = w - lr * buffers[i]
    return weights


def random_case(seed: int, steps: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (5,), (2, 3, 2)]
    weights = [rng.normal(size=s) for s in shapes]
    weights.append(np.zeros((3, 3)))  # zero weight: trust ratio falls back to 1
    grads = [[rng.normal(size=w.shape) for w in weights] for _ in range(steps)]
    return weights, grads


@pytest.mark.parametrize("exclude", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_lars_matches_numpy_reference(exclude: bool, momentum: float) -> None:
    weights, grads = random_case(seed=int(exclude) + 10 * int(momentum * 10), steps=3)
    lrs = [0.5, 0.3, 0.1]  # changing lr, as under warm-up/cosine
    wd, eta = 0.1, 0.02
    params = [nn.Parameter(torch.tensor(w)) for w in weights]
    opt = LARS(
        [{"params": params, "lars_exclude": exclude}],
        lr=lrs[0],
        momentum=momentum,
        weight_decay=wd,
        eta=eta,
    )
    for step_grads, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    expected = numpy_lars(weights, grads, lrs, momentum, wd, eta, exclude)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12, atol=1e-14)
    # The reference is not trivially equal to the start point.
    assert not np.allclose(expected[0], weights[0])


def test_lars_mixed_groups_each_follow_their_rule() -> None:
    weights, grads = random_case(seed=3, steps=2)
    adapted = [nn.Parameter(torch.tensor(w)) for w in weights[:2]]
    excluded = [nn.Parameter(torch.tensor(w)) for w in weights[2:]]
    opt = LARS(
        [
            {"params": adapted, "weight_decay": 0.05},
            {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
        ],
        lr=0.2,
        momentum=0.9,
        eta=0.01,
    )
    for step_grads in grads:
        for p, g in zip(adapted + excluded, step_grads):
            p.grad = torch.tensor(g)
        opt.step()
    step_grads_a = [[g for g in s[:2]] for s in grads]
    step_grads_e = [[g for g in s[2:]] for s in grads]
    exp_a = numpy_lars(weights[:2], step_grads_a, [0.2, 0.2], 0.9, 0.05, 0.01, exclude=False)
    exp_e = numpy_lars(weights[2:], step_grads_e, [0.2, 0.2], 0.9, 0.0, 0.01, exclude=True)
    for p, e in zip(adapted + excluded, exp_a + exp_e):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_excluded_group_is_exactly_torch_sgd(momentum: float) -> None:
    torch.manual_seed(0)
    model_a = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model_b = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model_b.load_state_dict(model_a.state_dict())
    # weight_decay on an excluded group is ignored: it must behave like SGD without decay.
    lars = LARS(
        [{"params": model_a.parameters(), "lars_exclude": True, "weight_decay": 0.5}],
        lr=0.1,
        momentum=momentum,
    )
    sgd = torch.optim.SGD(model_b.parameters(), lr=0.1, momentum=momentum, weight_decay=0.0)
    x = torch.randn(8, 6)
    for _ in range(3):
        for model, opt in ((model_a, lars), (model_b, sgd)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7)


def test_trust_ratio_makes_step_size_independent_of_gradient_scale() -> None:
    # Without momentum or decay the update is lr * eta * ||w|| * g / ||g||: scaling g by 1000
    # must not change it, and its norm is lr * eta * ||w||.
    torch.manual_seed(1)
    w0 = torch.randn(5, 5, dtype=torch.float64)
    g = torch.randn(5, 5, dtype=torch.float64)
    updates = []
    for scale in (1.0, 1000.0):
        p = nn.Parameter(w0.clone())
        p.grad = g * scale
        LARS([p], lr=0.5, momentum=0.0, eta=0.01).step()
        updates.append(w0 - p.detach())
    torch.testing.assert_close(updates[0], updates[1])
    assert updates[0].norm().item() == pytest.approx(0.5 * 0.01 * w0.norm().item(), rel=1e-12)


def test_zero_gradient_leaves_weight_unchanged() -> None:
    p = nn.Parameter(torch.ones(3, 3))
    p.grad = torch.zeros(3, 3)
    LARS([p], lr=1.0, momentum=0.9).step()
    assert torch.equal(p.detach(), torch.ones(3, 3))


def test_mixed_dtypes_in_one_group() -> None:
    torch.manual_seed(2)
    p32 = nn.Parameter(torch.randn(4, 3))
    p64 = nn.Parameter(torch.randn(3, 2, dtype=torch.float64))
    q32, q64 = nn.Parameter(p32.detach().clone()), nn.Parameter(p64.detach().clone())
    g32, g64 = torch.randn(4, 3), torch.randn(3, 2, dtype=torch.float64)
    p32.grad, p64.grad, q32.grad, q64.grad = g32, g64, g32.clone(), g64.clone()
    LARS([p32, p64], lr=0.3, weight_decay=0.01, eta=0.1).step()
    LARS([q32], lr=0.3, weight_decay=0.01, eta=0.1).step()
    LARS([q64], lr=0.3, weight_decay=0.01, eta=0.1).step()
    assert torch.equal(p32, q32) and torch.equal(p64, q64)


def test_state_dict_resume_continues_the_same_run() -> None:
    weights, grads = random_case(seed=4, steps=3)
    straight = [nn.Parameter(torch.tensor(w)) for w in weights]
    opt = LARS(straight, lr=0.1, weight_decay=0.01, eta=0.05)
    for step_grads in grads:
        for p, g in zip(straight, step_grads):
            p.grad = torch.tensor(g)
        opt.step()

    resumed = [nn.Parameter(torch.tensor(w)) for w in weights]
    first = LARS(resumed, lr=0.1, weight_decay=0.01, eta=0.05)
    for p, g in zip(resumed, grads[0]):
        p.grad = torch.tensor(g)
    first.step()
    second = LARS(resumed, lr=0.1, weight_decay=0.01, eta=0.05)
    second.load_state_dict(first.state_dict())
    for step_grads in grads[1:]:
        for p, g in zip(resumed, step_grads):
            p.grad = torch.tensor(g)
        second.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_closure_and_params_without_grad() -> None:
    p = nn.Parameter(torch.ones(2, 2))
    untouched = nn.Parameter(torch.ones(2))
    opt = LARS([p, untouched], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == pytest.approx(4.0)
    assert not torch.equal(p.detach(), torch.ones(2, 2))
    assert torch.equal(untouched.detach(), torch.ones(2))


def test_lars_rejects_bad_hyperparameters_and_sparse_grads() -> None:
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="lr"):
        LARS([p], lr=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        LARS([p], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        LARS([p], lr=0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="eta"):
        LARS([{"params": [p], "eta": 0.0}], lr=0.1)
    emb = nn.Embedding(4, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        LARS(emb.parameters(), lr=0.1).step()


def small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4, 2)
    )


def test_param_groups_split_conv_bn_linear() -> None:
    model = small_model()
    model[4].bias.requires_grad_(False)  # frozen: must be left out
    groups = param_groups(model, weight_decay=1e-4)
    assert len(groups) == 2
    decay, no_decay = groups
    assert decay["weight_decay"] == 1e-4 and decay["lars_exclude"] is False
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"] is True
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == ids([model[0].weight, model[4].weight])
    assert ids(no_decay["params"]) == ids([model[0].bias, model[1].weight, model[1].bias])


def test_param_groups_drop_empty_group() -> None:
    groups = param_groups(nn.Linear(3, 2, bias=False), weight_decay=0.1)
    assert len(groups) == 1 and groups[0]["lars_exclude"] is False
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(nn.Linear(3, 2), weight_decay=-0.1)


@pytest.mark.parametrize(
    ("name", "cls"), [("lars", LARS), ("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW)]
)
def test_build_optimizer(name: str, cls: type[torch.optim.Optimizer]) -> None:
    model = small_model()
    opt = build_optimizer(
        name,  # type: ignore[arg-type]
        param_groups(model, 0.05),
        lr=0.3,
        weight_decay=0.05,
        momentum=0.8,
        betas=(0.9, 0.95),
    )
    assert isinstance(opt, cls)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert all(g["lr"] == 0.3 for g in opt.param_groups)
    if name == "adamw":
        assert opt.defaults["betas"] == (0.9, 0.95)
    else:
        assert opt.defaults["momentum"] == 0.8
    model(torch.randn(2, 3, 4, 4)).sum().backward()
    opt.step()


def test_build_optimizer_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="lars, sgd, adamw"):
        build_optimizer("adam", [nn.Parameter(torch.ones(1))], lr=0.1, weight_decay=0.0)  # type: ignore[arg-type]


def test_scaled_lr_rules() -> None:
    assert scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scaled_lr(0.075, 4096, "sqrt") == pytest.approx(0.075 * 64)
    assert scaled_lr(0.075, 512, "sqrt") == pytest.approx(0.075 * math.sqrt(512))
    assert scaled_lr(1.5e-4, 256, "linear") == pytest.approx(1.5e-4)
    assert scaled_lr(0.03, 100, "none") == 0.03
    with pytest.raises(ValueError, match="linear, sqrt, none"):
        scaled_lr(0.1, 256, "log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="global_batch_size"):
        scaled_lr(0.1, 0, "linear")


def test_per_tensor_clipping_matches_the_loop_over_parameters():
    """DINO's rule written as its plain loop: each grad scaled by min(1, c / (||g|| + 1e-6))."""
    from selfsup.train.optim import clip_grad_norm_per_tensor_

    gen = torch.Generator().manual_seed(0)
    params = [torch.zeros(s, requires_grad=True) for s in [(3, 4), (7,), (2, 2, 2), (5,)]]
    scales = [10.0, 0.01, 1.0, 3.0]
    for p, scale in zip(params, scales):
        p.grad = scale * torch.randn(p.shape, generator=gen)
    expected = []
    for p in params:
        norm = p.grad.norm(2).item()
        expected.append(p.grad * min(1.0, 3.0 / (norm + 1e-6)))
    no_grad = torch.zeros(2, requires_grad=True)  # skipped, as torch's clipping does
    clip_grad_norm_per_tensor_([*params, no_grad], max_norm=3.0)
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.grad, want)
    norms = [p.grad.norm().item() for p in params]
    assert norms[0] == pytest.approx(3.0, rel=1e-5)  # the big one clipped to c
    assert norms[1] < 0.1  # the small one untouched, not shrunk by the big one
    assert no_grad.grad is None
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_per_tensor_(params, max_norm=0.0)
