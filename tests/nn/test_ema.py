"""EMA target: momentum schedule, make_target, the update rule and its buffer policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.nn import EMAUpdater, cosine_momentum, ema_update_, make_target


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def perturb_(module: nn.Module, seed: int) -> None:
    """Change every parameter of ``module`` (an optimiser step stand-in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype))


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_buffers()}


def run_batches_(module: nn.Module, n: int, seed: int, dtype: torch.dtype = torch.float32) -> None:
    """Forward ``n`` training batches so BatchNorm running statistics move."""
    g = torch.Generator().manual_seed(seed)
    module.train()
    with torch.no_grad():
        for _ in range(n):
            module(torch.randn(8, 3, generator=g, dtype=dtype) * 3 + 1)


# ---------------------------------------------------------------- cosine_momentum


def test_cosine_momentum_endpoints_and_formula() -> None:
    assert cosine_momentum(0.996, 0, 1000) == 0.996
    assert cosine_momentum(0.996, 1000, 1000) == 1.0
    total, base = 40, 0.99
    steps = np.arange(total + 1)
    # BYOL's tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, written independently.
    expected = 1 - (1 - base) * (np.cos(np.pi * steps / total) + 1) / 2
    got = np.array([cosine_momentum(base, int(k), total) for k in steps])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    assert np.all(np.diff(got) > 0)  # strictly increasing towards 1
    assert cosine_momentum(0.99, 10, 20) == pytest.approx(0.995)  # half-way: (base + 1) / 2


@pytest.mark.parametrize(
    ("base", "step", "total", "match"),
    [
        (1.5, 0, 10, "base momentum"),
        (-0.1, 0, 10, "base momentum"),
        (math.nan, 0, 10, "base momentum"),
        (0.9, 0, 0, "total_steps"),
        (0.9, -1, 10, "step must be"),
        (0.9, 11, 10, "step must be"),
    ],
)
def test_cosine_momentum_rejects_bad_input(base: float, step: int, total: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cosine_momentum(base, step, total)


# ---------------------------------------------------------------- make_target


def test_make_target_is_a_frozen_independent_copy() -> None:
    online = small_net()
    target = make_target(online)
    for (name, p_t), (_, p_o) in zip(target.named_parameters(), online.named_parameters()):
        assert torch.equal(p_t, p_o), name
        assert p_t.data_ptr() != p_o.data_ptr()  # own storage
        assert not p_t.requires_grad and p_o.requires_grad
    for b_t, b_o in zip(target.buffers(), online.buffers()):
        assert torch.equal(b_t, b_o) and b_t.data_ptr() != b_o.data_ptr()
    perturb_(online, seed=1)  # changing the online network leaves the copy alone
    assert not torch.equal(target[0].weight, online[0].weight)
    with pytest.raises(ValueError, match=r"nn\.Module"):
        make_target(torch.ones(2))  # type: ignore[arg-type]


def test_target_never_receives_gradients() -> None:
    online = small_net()
    target = make_target(online)
    x = torch.randn(8, 3)
    loss = (online(x) - target(x)).pow(2).sum() + target(x).sum()
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert all(p.grad is not None for p in online.parameters())
    ema_update_(target, online, 0.5)
    assert all(not p.requires_grad and p.grad is None for p in target.parameters())


# ---------------------------------------------------------------- update rule


def test_momentum_one_keeps_target_and_zero_copies_online() -> None:
    online = small_net()
    target = make_target(online)
    perturb_(online, seed=1)
    before = params(target)
    ema_update_(target, online, 1.0)
    for name, p in target.named_parameters():
        assert torch.equal(p, before[name]), name  # bitwise unchanged
    ema_update_(target, online, 0.0)
    for (name, p_t), p_o in zip(target.named_parameters(), online.parameters()):
        assert torch.equal(p_t, p_o), name  # bitwise copy


def test_three_updates_match_numpy_reference() -> None:
    online = small_net()
    target = make_target(online)
    ref = {k: v.double().numpy() for k, v in params(target).items()}
    m = 0.9
    for step in range(3):
        perturb_(online, seed=10 + step)
        ema_update_(target, online, m)
        for k, v in params(online).items():
            ref[k] = m * ref[k] + (1 - m) * v.double().numpy()
    for name, p in target.named_parameters():
        np.testing.assert_allclose(p.detach().double().numpy(), ref[name], rtol=1e-6, atol=1e-6)
    # The update really moved the target (the reference is not trivially the start point).
    assert not torch.equal(target[0].weight, make_target(small_net())[0].weight)


def test_tensor_momentum_equals_float_momentum() -> None:
    online = small_net()
    t_float, t_tensor = make_target(online), make_target(online)
    perturb_(online, seed=3)
    ema_update_(t_float, online, 0.75)
    EMAUpdater(t_tensor, online).update(torch.tensor(0.75))
    for p_a, p_b in zip(t_float.parameters(), t_tensor.parameters()):
        torch.testing.assert_close(p_a, p_b, rtol=0, atol=1e-6)
    assert not torch.equal(t_float[0].weight, online[0].weight)


def test_updater_matches_function_and_survives_to() -> None:
    online = small_net()
    target_fn, target_up = make_target(online), make_target(online)
    updater = EMAUpdater(target_up, online, buffers="copy")
    for step in range(2):
        perturb_(online, seed=20 + step)
        run_batches_(online, 1, seed=step)
        ema_update_(target_fn, online, 0.8, buffers="copy")
        updater.update(0.8)
    for a, b in zip(target_fn.state_dict().values(), target_up.state_dict().values()):
        assert torch.equal(a, b)
    # .double() replaces the buffer tensors: the updater must update the new ones.
    online.double()
    target_up.double()
    run_batches_(online, 1, seed=9, dtype=torch.float64)  # new running statistics
    perturb_(online, seed=30)
    updater.update(0.5)
    assert target_up[1].running_mean.dtype == torch.float64
    assert torch.equal(target_up[1].running_mean, online[1].running_mean)
    assert torch.equal(target_up[1].num_batches_tracked, online[1].num_batches_tracked)


# ---------------------------------------------------------------- buffer policies


def test_buffer_policies() -> None:
    online = small_net()
    run_batches_(online, 5, seed=0)  # online statistics far from the fresh target's
    m = 0.5
    results = {}
    for policy in ("keep", "copy", "ema"):
        target = small_net()  # fresh statistics: mean 0, var 1, counter 0
        start = buffers(target)
        ema_update_(target, online, m, buffers=policy)  # type: ignore[arg-type]
        results[policy] = (start, buffers(target))
    online_bufs = buffers(online)
    assert int(online_bufs["1.num_batches_tracked"]) == 5

    start, after = results["keep"]
    for k in start:
        assert torch.equal(after[k], start[k]), k

    _, after = results["copy"]
    for k in online_bufs:
        assert torch.equal(after[k], online_bufs[k]), k

    start, after = results["ema"]
    for k in ("1.running_mean", "1.running_var"):
        torch.testing.assert_close(after[k], m * start[k] + (1 - m) * online_bufs[k])
        assert not torch.equal(after[k], online_bufs[k])
    # The integer counter is copied, never averaged (averaging would give 2).
    assert after["1.num_batches_tracked"].dtype == torch.long
    assert int(after["1.num_batches_tracked"]) == 5


# ---------------------------------------------------------------- errors


def test_mismatched_modules_and_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="differs between target"):
        ema_update_(nn.Linear(2, 3), nn.Linear(2, 4), 0.9)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update_(nn.Sequential(nn.Linear(2, 2)), nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="different parameters"):
        ema_update_(nn.Linear(2, 2, bias=False), nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="differs between target"):
        ema_update_(nn.Linear(2, 2).double(), nn.Linear(2, 2), 0.9)
    with pytest.raises(ValueError, match="different buffers"):
        ema_update_(nn.BatchNorm1d(2, track_running_stats=False), nn.BatchNorm1d(2), 0.9, "copy")
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="same module"):
        EMAUpdater(net, net)
    with pytest.raises(ValueError, match="buffers policy"):
        EMAUpdater(nn.Linear(2, 2), net, buffers="average")  # type: ignore[arg-type]
    for bad in (1.01, -0.5, math.inf):
        with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
            ema_update_(nn.Linear(2, 2), net, bad)
    with pytest.raises(ValueError, match="floating-point scalar"):
        ema_update_(nn.Linear(2, 2), net, torch.ones(2))
