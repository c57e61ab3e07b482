"""NT-Xent against independent references: a pure-Python loop, hand-computed values, autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.nn import NTXentLoss, nt_xent_loss


def reference_nt_xent(z_a: np.ndarray, z_b: np.ndarray, tau: float) -> float:
    """SimCLR's loss written as the paper states it: one anchor, one pair at a time."""
    views = [np.asarray(v, dtype=np.float64) for v in (*z_a, *z_b)]
    views = [v / math.sqrt(float(v @ v)) for v in views]
    two_n = len(views)
    n = two_n // 2
    total = 0.0
    for i in range(two_n):
        positive = (i + n) % two_n
        denominator = 0.0
        for k in range(two_n):
            if k != i:
                denominator += math.exp(float(views[i] @ views[k]) / tau)
        numerator = math.exp(float(views[i] @ views[positive]) / tau)
        total += -math.log(numerator / denominator)
    return total / two_n


def naive_torch_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> torch.Tensor:
    """Differentiable per-anchor loop (no masking tricks) to check gradients against."""
    z = torch.cat([z_a, z_b])
    z = z / z.norm(dim=1, keepdim=True)
    two_n = z.shape[0]
    n = two_n // 2
    per_anchor = []
    for i in range(two_n):
        others = torch.stack([z[i] @ z[k] for k in range(two_n) if k != i]) / tau
        positive = z[i] @ z[(i + n) % two_n] / tau
        per_anchor.append(torch.logsumexp(others, dim=0) - positive)
    return torch.stack(per_anchor).mean()


@pytest.mark.parametrize(
    ("n", "d", "tau"),
    [(2, 3, 0.5), (5, 8, 0.1), (16, 32, 1.0), (7, 4, 0.07), (4, 6, 0.02)],
)
def test_matches_pure_python_reference(n: int, d: int, tau: float) -> None:
    rng = np.random.default_rng(n * 100 + d)
    z_a = rng.normal(size=(n, d))
    z_b = z_a + 0.5 * rng.normal(size=(n, d))  # correlated views, as after a projector
    expected = reference_nt_xent(z_a, z_b, tau)
    got = NTXentLoss(temperature=tau)(
        torch.tensor(z_a, dtype=torch.float32), torch.tensor(z_b, dtype=torch.float32)
    )
    assert got.dtype == torch.float32 and got.ndim == 0
    assert got.item() == pytest.approx(expected, rel=2e-5, abs=1e-5)
    got64 = nt_xent_loss(torch.tensor(z_a), torch.tensor(z_b), tau)
    assert got64.dtype == torch.float64
    assert got64.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_aligned_views_orthogonal_others(tau: float) -> None:
    # a_i = b_i = e_i: positive similarity 1, the 2N - 2 negatives are orthogonal (similarity 0),
    # so every anchor has loss -log(e^{1/tau} / (e^{1/tau} + 2N - 2)) = log(1 + (2N - 2) e^{-1/tau}).
    n = 3
    z = torch.eye(n, dtype=torch.float64)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / tau))
    assert nt_xent_loss(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-12)
    assert nt_xent_loss(z.float(), z.float(), tau).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_collapsed_embeddings_give_log_2n_minus_1(n: int) -> None:
    # All views point the same way (different lengths): all 2N - 1 logits are equal.
    direction = torch.randn(1, 5)
    scales = torch.rand(2 * n, 1) + 0.5
    z = scales * direction  # [2n, 5]
    loss = nt_xent_loss(z[:n], z[n:], temperature=0.2)
    assert loss.item() == pytest.approx(math.log(2 * n - 1), rel=1e-6)


def test_gradients_match_naive_autograd() -> None:
    torch.manual_seed(0)
    z_a = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    nt_xent_loss(z_a, z_b, 0.3).backward()
    ref_a = z_a.detach().clone().requires_grad_()
    ref_b = z_b.detach().clone().requires_grad_()
    naive_torch_nt_xent(ref_a, ref_b, 0.3).backward()
    assert z_a.grad is not None and z_b.grad is not None
    torch.testing.assert_close(z_a.grad, ref_a.grad)
    torch.testing.assert_close(z_b.grad, ref_b.grad)


def test_gradcheck() -> None:
    torch.manual_seed(1)
    z_a = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nt_xent_loss(a, b, 0.5), (z_a, z_b))


def test_float32_gradients_are_finite_with_masked_self() -> None:
    # The -inf self mask must not leak NaN into the backward pass, even at tiny temperatures.
    z = torch.randn(2, 3, requires_grad=True)
    loss = nt_xent_loss(z, z * 1.01, temperature=0.01)
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and torch.isfinite(z.grad).all()


def test_symmetric_in_views() -> None:
    torch.manual_seed(2)
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    torch.testing.assert_close(nt_xent_loss(z_a, z_b), nt_xent_loss(z_b, z_a))


def test_invariant_to_scaling() -> None:
    torch.manual_seed(3)
    z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
    row_scale = torch.rand(8, 1) * 10 + 0.1
    torch.testing.assert_close(nt_xent_loss(z_a, z_b), nt_xent_loss(3.7 * z_a, 3.7 * z_b))
    torch.testing.assert_close(nt_xent_loss(z_a, z_b), nt_xent_loss(row_scale * z_a, z_b))


def test_pairing_matters() -> None:
    # The positive of a_i is b_i: shuffling b changes the loss, and a matched pairing of
    # identical views scores better than the shuffled one.
    torch.manual_seed(4)
    z = torch.randn(6, 32)
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    assert nt_xent_loss(z, z).item() < nt_xent_loss(z, z[perm]).item()


def test_float32_under_autocast() -> None:
    torch.manual_seed(5)
    z_a = torch.randn(32, 64).bfloat16()
    z_b = torch.randn(32, 64).bfloat16()
    expected = nt_xent_loss(z_a.float(), z_b.float(), 0.1)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = nt_xent_loss(z_a, z_b, 0.1)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf")])
def test_rejects_bad_temperature(tau: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=tau)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), tau)


def test_rejects_single_pair() -> None:
    with pytest.raises(ValueError, match="batch size >= 2"):
        nt_xent_loss(torch.randn(1, 3), torch.randn(1, 3))


@pytest.mark.parametrize(
    ("shape_a", "shape_b"), [((4, 3), (4, 5)), ((4, 3), (5, 3)), ((4,), (4,)), ((2, 3, 4),) * 2]
)
def test_rejects_bad_shapes(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        nt_xent_loss(torch.randn(shape_a), torch.randn(shape_b))


def test_rejects_integer_inputs() -> None:
    with pytest.raises(ValueError, match="floating point"):
        nt_xent_loss(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))


def test_module_wraps_function_and_has_no_parameters() -> None:
    loss_fn = NTXentLoss(temperature=0.25)
    z_a, z_b = torch.randn(5, 7), torch.randn(5, 7)
    torch.testing.assert_close(loss_fn(z_a, z_b), nt_xent_loss(z_a, z_b, 0.25))
    assert list(loss_fn.parameters()) == []
    assert "temperature=0.25" in repr(loss_fn)
    # Not distributed here: the gather switch must leave the single-process loss unchanged.
    torch.testing.assert_close(
        NTXentLoss(0.25, gather_distributed=True)(z_a, z_b), loss_fn(z_a, z_b)
    )
