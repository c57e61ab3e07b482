"""MoCo v2 InfoNCE-with-queue, MoCo v3 ctr and BYOL losses against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.nn import byol_loss, infonce_queue_loss, moco_v3_loss


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def infonce_reference(q: np.ndarray, k: np.ndarray, queue: np.ndarray, t: float) -> float:
    """Python loop over queries: -log softmax of the positive among [positive, queue]."""
    q, k = normalise(q), normalise(k)
    losses = []
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[i]) / t] + [float(q[i] @ n) / t for n in queue]
        top = max(logits)
        log_denominator = top + math.log(sum(math.exp(v - top) for v in logits))
        losses.append(log_denominator - logits[0])
    return sum(losses) / len(losses)


def ctr_reference(q: np.ndarray, k: np.ndarray, t: float) -> float:
    """MoCo v3 ctr written out: 2T * mean_i -log softmax_j(q_i.k_j / T)[i]."""
    q, k = normalise(q), normalise(k)
    total = 0.0
    for i in range(q.shape[0]):
        logits = [float(q[i] @ k[j]) / t for j in range(k.shape[0])]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return 2 * t * total / q.shape[0]


# ---------------------------------------------------------------- infonce_queue_loss


def test_infonce_matches_python_reference() -> None:
    q, k = randn(5, 8, seed=0), randn(5, 8, seed=1)
    queue = torch.nn.functional.normalize(randn(11, 8, seed=2), dim=1)
    for t in (0.07, 0.2, 1.0):
        expected = infonce_reference(q.numpy(), k.numpy(), queue.numpy(), t)
        got = infonce_queue_loss(q, k, queue, temperature=t)
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(expected, rel=1e-10)


def test_infonce_with_orthogonal_queue_hand_value() -> None:
    # q = k = e_0, queue = e_1..e_4: logits [1/T, 0, 0, 0, 0] -> log(1 + 4 exp(-1/T)).
    eye = torch.eye(5)
    t = 0.5
    loss = infonce_queue_loss(2 * eye[:1], 3 * eye[:1], eye[1:], temperature=t)
    assert loss.item() == pytest.approx(math.log(1 + 4 * math.exp(-1 / t)), rel=1e-6)
    # A query orthogonal to its key and equal to one queued key: log(1 + exp(1/T) + 3).
    loss = infonce_queue_loss(eye[1:2], eye[:1], eye[1:], temperature=t)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(1 / t) + 3), rel=1e-6)


def test_infonce_gradient_only_reaches_the_query() -> None:
    q = randn(4, 6, seed=3).requires_grad_()
    k = randn(4, 6, seed=4).requires_grad_()
    queue = torch.nn.functional.normalize(randn(9, 6, seed=5), dim=1).requires_grad_()
    infonce_queue_loss(q, k, queue).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_infonce_runs_in_float32_under_autocast() -> None:
    q, k = randn(4, 16, seed=6).float(), randn(4, 16, seed=7).float()
    queue = torch.nn.functional.normalize(randn(32, 16, seed=8).float(), dim=1)
    reference = infonce_queue_loss(q, k, queue, temperature=0.07)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = infonce_queue_loss(q.bfloat16(), k.bfloat16(), queue, temperature=0.07)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, reference, rtol=0.02, atol=0.02)


def test_infonce_bad_input() -> None:
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"queue must be floating point of shape \[K, 4\]"):
        infonce_queue_loss(q, q, torch.randn(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        infonce_queue_loss(q, q[:2], torch.randn(5, 4))
    with pytest.raises(ValueError, match="temperature"):
        infonce_queue_loss(q, q, torch.randn(5, 4), temperature=0.0)


# ---------------------------------------------------------------- moco_v3_loss


def test_moco_v3_matches_python_reference() -> None:
    q, k = randn(6, 5, seed=10), randn(6, 5, seed=11)
    for t in (0.1, 0.2, 1.0):
        got = moco_v3_loss(q, k, temperature=t)
        assert got.item() == pytest.approx(ctr_reference(q.numpy(), k.numpy(), t), rel=1e-10)
    # Single process: the distributed switch changes nothing.
    assert torch.equal(moco_v3_loss(q, k, gather_distributed=True), moco_v3_loss(q, k))


def test_moco_v3_identical_orthonormal_pairs_hand_value() -> None:
    n, t = 4, 0.2
    z = torch.eye(n)
    # Diagonal logits 1/T, off-diagonal 0: 2T log(1 + (N - 1) exp(-1/T)).
    expected = 2 * t * math.log(1 + (n - 1) * math.exp(-1 / t))
    assert moco_v3_loss(z, z, temperature=t).item() == pytest.approx(expected, rel=1e-6)
    # Collapse (all rows equal): the positive is one of N equal logits, 2T log N.
    ones = torch.ones(n, 3)
    assert moco_v3_loss(ones, ones, t).item() == pytest.approx(2 * t * math.log(n), rel=1e-6)


def test_moco_v3_keys_receive_no_gradient() -> None:
    q = randn(4, 6, seed=12).requires_grad_()
    k = randn(4, 6, seed=13).requires_grad_()
    moco_v3_loss(q, k).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0 and k.grad is None


def test_moco_v3_bad_input() -> None:
    with pytest.raises(ValueError, match="temperature"):
        moco_v3_loss(torch.randn(2, 3), torch.randn(2, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        moco_v3_loss(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="floating point"):
        moco_v3_loss(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))


# ---------------------------------------------------------------- byol_loss


def test_byol_matches_numpy_reference() -> None:
    p, z = randn(7, 9, seed=20), randn(7, 9, seed=21)
    pn, zn = normalise(p.numpy()), normalise(z.numpy())
    expected = np.mean(np.sum((pn - zn) ** 2, axis=1))  # ||p^ - z^||^2 = 2 - 2 cos
    assert byol_loss(p, z).item() == pytest.approx(float(expected), rel=1e-10)


def test_byol_hand_values() -> None:
    p = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    assert byol_loss(p, 4 * p).item() == pytest.approx(0.0, abs=1e-6)  # parallel
    assert byol_loss(p, -2 * p).item() == pytest.approx(4.0, abs=1e-6)  # opposite
    e = torch.eye(2)
    assert byol_loss(e, e.flip(0)).item() == pytest.approx(2.0, abs=1e-6)  # orthogonal


def test_byol_stop_gradient_on_target() -> None:
    p = randn(5, 4, seed=22).requires_grad_()
    z = randn(5, 4, seed=23).requires_grad_()
    byol_loss(p, z).backward()
    assert z.grad is None
    assert p.grad is not None and p.grad.abs().sum() > 0
    # The gradient is tangent to the sphere at p: no component along p (scale invariance).
    torch.testing.assert_close((p.grad * p.detach()).sum(dim=1), torch.zeros(5, dtype=p.dtype))


def test_byol_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        byol_loss(torch.randn(3, 4), torch.randn(4, 4))
