"""SimSiam, Barlow Twins, VICReg and SwAV losses and Sinkhorn-Knopp: against plain-loop references,
hand-worked cases (perfect agreement, collapse), and the global-batch statistics of two
simulated processes (the gather of selfsup.nn.distributed patched to hand each "process" the
other's half)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.nn import distributed
from selfsup.nn.losses import (
    BarlowTwinsLoss,
    VICRegLoss,
    barlow_twins_loss,
    barlow_twins_terms,
    cross_correlation,
    off_diagonal,
    simsiam_loss,
    swapped_prediction_loss,
    vicreg_terms,
)
from selfsup.nn.sinkhorn import sinkhorn_knopp


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _hadamard(n: int) -> np.ndarray:
    """Sylvester's Hadamard matrix: +-1 entries, mutually orthogonal columns."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


# ---------------------------------------------------------------------------------------
# SimSiam: D(p, sg(z)) = -cos


def test_simsiam_loss_is_the_mean_negative_cosine_of_a_loop() -> None:
    p, z = _randn(7, 5, seed=1), _randn(7, 5, seed=2)
    expected = 0.0
    for i in range(7):
        a, b = p[i].numpy(), z[i].numpy()
        expected -= float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) / 7
    assert simsiam_loss(p, z).item() == pytest.approx(expected, abs=1e-12)


def test_simsiam_loss_hand_cases_and_stop_gradient() -> None:
    p = torch.tensor([[1.0, 2.0], [-3.0, 0.5]])
    assert simsiam_loss(p, 4 * p).item() == pytest.approx(-1.0)  # perfect agreement
    assert simsiam_loss(p, -p).item() == pytest.approx(1.0)  # opposite
    orthogonal = torch.stack([torch.tensor([-2.0, 1.0]), torch.tensor([0.5, 3.0])])
    assert simsiam_loss(p, orthogonal).item() == pytest.approx(0.0, abs=1e-7)
    p, z = _randn(4, 3).requires_grad_(), _randn(4, 3, seed=5).requires_grad_()
    simsiam_loss(p, z).backward()
    assert p.grad is not None and z.grad is None  # sg(z)
    simsiam_loss(p, z, stop_gradient=False).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # the ablation lets it through


def test_simsiam_loss_is_float32_under_autocast() -> None:
    p, z = torch.randn(4, 8), torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = simsiam_loss(p.bfloat16(), z.bfloat16())
    assert value.dtype == torch.float32


# ---------------------------------------------------------------------------------------
# Barlow Twins


def _np_barlow(za: np.ndarray, zb: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    """Plain loops: standardise each column (biased variance + 1e-5), then C and the sums."""
    n, d = za.shape

    def standardise(z: np.ndarray) -> np.ndarray:
        out = np.empty_like(z)
        for j in range(d):
            mean = sum(z[:, j]) / n
            var = sum((z[b, j] - mean) ** 2 for b in range(n)) / n
            for b in range(n):
                out[b, j] = (z[b, j] - mean) / math.sqrt(var + 1e-5)
        return out

    a, b = standardise(za), standardise(zb)
    c = np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            c[i, j] = sum(a[k, i] * b[k, j] for k in range(n)) / n
    loss = 0.0
    for i in range(d):
        for j in range(d):
            loss += (1 - c[i, j]) ** 2 if i == j else lam * c[i, j] ** 2
    return loss, c


def test_barlow_twins_loss_equals_a_plain_loop() -> None:
    za, zb = _randn(9, 6, seed=3), _randn(9, 6, seed=4) + 0.5 * _randn(9, 6, seed=3)
    expected, c = _np_barlow(za.numpy(), zb.numpy(), 0.0051)
    np.testing.assert_allclose(cross_correlation(za, zb).numpy(), c, rtol=1e-10)
    assert barlow_twins_loss(za, zb).item() == pytest.approx(expected, rel=1e-10)
    # another lambda moves only the off-diagonal weight
    assert BarlowTwinsLoss(0.5)(za, zb).item() == pytest.approx(
        _np_barlow(za.numpy(), zb.numpy(), 0.5)[0], rel=1e-10
    )


def test_barlow_twins_hand_cases_agreement_collapse_redundancy() -> None:
    d = 4
    decorrelated = torch.from_numpy(_hadamard(8)[:, 1 : d + 1])  # centred, orthogonal columns
    # Perfect agreement of decorrelated dimensions: C = I (up to BN's epsilon), loss 0.
    loss = barlow_twins_loss(decorrelated, decorrelated)
    assert loss.item() == pytest.approx(0.0, abs=1e-8)
    # Any per-dimension scale and shift is standardised away.
    scaled = decorrelated * torch.tensor([1.0, 5.0, 0.5, 2.0]) + 3.0
    assert barlow_twins_loss(decorrelated, scaled).item() == pytest.approx(0.0, abs=1e-8)
    # Collapse, a constant output: C = 0, every diagonal term costs 1.
    constant = torch.ones(8, d)
    invariance, redundancy = barlow_twins_terms(constant, constant)
    assert (invariance.item(), redundancy.item()) == (pytest.approx(d), 0.0)
    # All dimensions the same signal: C = ones, only the redundancy term is left.
    same = decorrelated[:, :1].repeat(1, d)
    invariance, redundancy = barlow_twins_terms(same, same)
    assert invariance.item() == pytest.approx(0.0, abs=1e-8)
    assert redundancy.item() == pytest.approx(d * (d - 1), rel=1e-4)
    assert off_diagonal(torch.arange(16.0).view(4, 4)).tolist() == [
        float(i) for i in range(16) if i % 5
    ]


def test_barlow_twins_needs_two_images() -> None:
    with pytest.raises(ValueError, match="at least 2 images"):
        barlow_twins_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="off_diagonal_weight"):
        BarlowTwinsLoss(-1.0)


# ---------------------------------------------------------------------------------------
# VICReg


def _np_vicreg(za: np.ndarray, zb: np.ndarray) -> tuple[float, float, float]:
    n, d = za.shape
    invariance = sum((za[b, j] - zb[b, j]) ** 2 for b in range(n) for j in range(d)) / (n * d)

    def variance(z: np.ndarray) -> float:
        total = 0.0
        for j in range(d):
            mean = sum(z[:, j]) / n
            var = sum((z[b, j] - mean) ** 2 for b in range(n)) / (n - 1)
            total += max(0.0, 1 - math.sqrt(var + 1e-4))
        return total / d

    def covariance(z: np.ndarray) -> float:
        mean = [sum(z[:, j]) / n for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    cov = sum((z[b, i] - mean[i]) * (z[b, j] - mean[j]) for b in range(n)) / (n - 1)
                    total += cov**2
        return total / d

    return invariance, (variance(za) + variance(zb)) / 2, covariance(za) + covariance(zb)


def test_vicreg_terms_equal_a_plain_loop() -> None:
    za, zb = 0.7 * _randn(10, 5, seed=6), 1.5 * _randn(10, 5, seed=7)  # some stds below 1
    expected = _np_vicreg(za.numpy(), zb.numpy())
    got = [t.item() for t in vicreg_terms(za, zb)]
    assert got == pytest.approx(list(expected), rel=1e-10)
    assert expected[1] > 0  # the hinge is active somewhere
    weighted = 25 * expected[0] + 25 * expected[1] + 1 * expected[2]
    assert VICRegLoss()(za, zb).item() == pytest.approx(weighted, rel=1e-10)


def test_vicreg_hand_cases_agreement_and_collapse() -> None:
    # Identical views, uncorrelated dimensions of std > 1: every term is 0.
    z = torch.from_numpy(2 * _hadamard(8)[:, 1:5])
    assert [t.item() for t in vicreg_terms(z, z)] == [0.0, 0.0, pytest.approx(0.0, abs=1e-12)]
    # Collapse: every std is sqrt(eps) = 0.01, the hinge costs 0.99 per dimension and branch.
    zeros = torch.zeros(8, 4)
    assert [t.item() for t in vicreg_terms(zeros, zeros)] == [0.0, pytest.approx(0.99), 0.0]
    assert VICRegLoss()(zeros, zeros).item() == pytest.approx(25 * 0.99)


# ---------------------------------------------------------------------------------------
# Two simulated processes: each holds half the batch and the gather hands it the other half


def _simulated_gather(monkeypatch: pytest.MonkeyPatch, rank: int, *full: torch.Tensor) -> None:
    """Patch distributed.gather_with_grad as process ``rank`` of 2 would see it: its own rows
    (with gradient) in their place among the other process's rows of the same tensor."""

    def gather(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        for tensor in full:
            if torch.equal(x.detach(), tensor[rank * n : (rank + 1) * n]):
                halves = list(tensor.detach().split(n))
                halves[rank] = x
                return torch.cat(halves)
        raise AssertionError("gathered a tensor that is not one of the simulated batches")

    monkeypatch.setattr(distributed, "gather_with_grad", gather)


def test_barlow_statistics_of_two_processes_equal_one_process_with_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    za, zb = _randn(8, 5, seed=8), _randn(8, 5, seed=9) + _randn(8, 5, seed=8)
    whole_a, whole_b = za.clone().requires_grad_(), zb.clone().requires_grad_()
    whole = barlow_twins_loss(whole_a, whole_b)
    whole.backward()
    assert whole_a.grad is not None
    for rank in (0, 1):
        rows = slice(4 * rank, 4 * rank + 4)
        with monkeypatch.context() as m:
            _simulated_gather(m, rank, za, zb)
            a, b = za[rows].clone().requires_grad_(), zb[rows].clone().requires_grad_()
            c = cross_correlation(a, b, gather_distributed=True)
            loss = barlow_twins_loss(a, b, gather_distributed=True)
            loss.backward()
        torch.testing.assert_close(c, cross_correlation(za, zb), rtol=1e-12, atol=1e-12)
        assert loss.item() == pytest.approx(whole.item(), rel=1e-12)
        # What DDP averages: this process's share of the whole batch's gradient.
        torch.testing.assert_close(a.grad, whole_a.grad[rows], rtol=1e-10, atol=1e-12)
    # Without the gather a process sees only its half: other statistics (the test can fail).
    half = barlow_twins_loss(za[:4], zb[:4], gather_distributed=True)
    assert abs(half.item() - whole.item()) > 1e-3


def test_vicreg_statistics_of_two_processes_equal_one_process_with_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    za, zb = 0.5 * _randn(8, 5, seed=10), 0.8 * _randn(8, 5, seed=11)
    whole_a = za.clone().requires_grad_()
    whole = vicreg_terms(whole_a, zb)
    (whole[1] + whole[2]).backward()
    assert whole_a.grad is not None
    invariances = []
    for rank in (0, 1):
        rows = slice(4 * rank, 4 * rank + 4)
        with monkeypatch.context() as m:
            _simulated_gather(m, rank, za, zb)
            a = za[rows].clone().requires_grad_()
            invariance, variance, covariance = vicreg_terms(a, zb[rows], gather_distributed=True)
            (variance + covariance).backward()
        assert variance.item() == pytest.approx(whole[1].item(), rel=1e-12)
        assert covariance.item() == pytest.approx(whole[2].item(), rel=1e-12)
        torch.testing.assert_close(a.grad, whole_a.grad[rows], rtol=1e-10, atol=1e-12)
        invariances.append(invariance.item())
    # The invariance is per process; its mean over processes is the whole batch's.
    assert np.mean(invariances) == pytest.approx(whole[0].item(), rel=1e-12)
    half = vicreg_terms(za[:4], zb[:4])
    assert abs(half[2].item() - whole[2].item()) > 1e-3  # a half batch's covariance differs


# ---------------------------------------------------------------------------------------
# Sinkhorn-Knopp


def _np_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """SwAV's algorithm written as loops over prototypes and samples."""
    b, k = scores.shape
    q = np.exp(scores / epsilon)
    q = q / q.sum()
    for _ in range(iterations):
        for j in range(k):  # every prototype's mass -> 1/K
            q[:, j] = q[:, j] / (k * q[:, j].sum())
        for i in range(b):  # every sample's mass -> 1/B
            q[i, :] = q[i, :] / (b * q[i, :].sum())
    return q * b


@pytest.mark.parametrize(("epsilon", "iterations"), [(0.05, 3), (0.1, 1), (0.5, 10)])
def test_sinkhorn_equals_the_plain_loop(epsilon: float, iterations: int) -> None:
    scores = torch.nn.functional.normalize(_randn(12, 7, seed=12), dim=1)  # cosine-like, |s| <= 1
    expected = _np_sinkhorn(scores.numpy(), epsilon, iterations)
    codes = sinkhorn_knopp(scores, epsilon, iterations)
    np.testing.assert_allclose(codes.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_sinkhorn_marginals_samples_exact_prototypes_converge() -> None:
    scores = torch.nn.functional.normalize(_randn(30, 6, seed=13), dim=1)
    b, k = scores.shape
    errors = []
    for iterations in (1, 3, 10, 300):
        plan = sinkhorn_knopp(scores, 0.05, iterations) / b  # the transport plan P
        torch.testing.assert_close(plan.sum(1), torch.full((b,), 1 / b, dtype=torch.float64))
        errors.append((plan.sum(0) - 1 / k).abs().max().item())
    assert errors == sorted(errors, reverse=True)  # the prototype marginals approach 1/K
    assert errors[-1] < 1e-9 and errors[0] > 1e-3
    # Uniform scores need no transport: uniform codes at once.
    torch.testing.assert_close(sinkhorn_knopp(torch.zeros(4, 5)), torch.full((4, 5), 0.2))


def test_sinkhorn_is_shift_invariant_sharpens_with_small_epsilon_and_has_no_gradient() -> None:
    scores = torch.nn.functional.normalize(_randn(16, 8, seed=14), dim=1).requires_grad_()
    codes = sinkhorn_knopp(scores)
    assert not codes.requires_grad
    torch.testing.assert_close(sinkhorn_knopp(scores + 3.0), codes)
    # exp(s / eps) alone overflows here (s / eps = 2000); the max shift keeps it finite
    assert torch.isfinite(sinkhorn_knopp(100 * scores.detach())).all()

    def entropy(q: torch.Tensor) -> float:
        return float(-(q * q.clamp_min(1e-30).log()).sum(1).mean())

    assert (
        entropy(sinkhorn_knopp(scores, 0.02)) < entropy(codes) < entropy(sinkhorn_knopp(scores, 1))
    )
    half = sinkhorn_knopp(scores.detach().bfloat16())
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(scores, epsilon=0.0)
    with pytest.raises(ValueError, match="iterations"):
        sinkhorn_knopp(scores, iterations=0)


# ---------------------------------------------------------------------------------------
# SwAV's swapped prediction


def test_swapped_prediction_equals_a_plain_loop() -> None:
    scores = [_randn(5, 6, seed=s).requires_grad_() for s in (20, 21, 22, 23)]  # 4 crops
    codes = [sinkhorn_knopp(scores[t].detach()) for t in (0, 1)]
    pairs = [(t, v) for t in (0, 1) for v in range(4) if v != t]
    expected = 0.0
    for t in (0, 1):
        sub = 0.0
        for v in range(4):
            if v == t:
                continue
            s, q = scores[v].detach().numpy() / 0.1, codes[t].numpy()
            for b in range(5):
                log_norm = math.log(sum(math.exp(x) for x in s[b]))
                sub -= sum(q[b, k] * (s[b, k] - log_norm) for k in range(6)) / 5
        expected += sub / 3  # the official mean over the other crops, then over t
    loss = swapped_prediction_loss(scores, codes, pairs, 0.1)
    assert loss.item() == pytest.approx(expected / 2, rel=1e-10)
    loss.backward()
    assert all(s.grad is not None for s in scores)


def test_swapped_prediction_perfect_and_uninformed_predictions() -> None:
    hard = [torch.eye(4), torch.eye(4)]  # each sample its own prototype
    # Scores that point at the coded prototype: the loss goes to 0 as they sharpen.
    sharp = swapped_prediction_loss([10 * torch.eye(4)] * 2, hard, [(0, 1), (1, 0)], 0.1)
    assert sharp.item() == pytest.approx(3 * math.exp(-100), abs=1e-12)
    # Constant scores carry no information: ln K whatever the codes.
    flat = swapped_prediction_loss([torch.zeros(4, 4)] * 2, hard, [(0, 1), (1, 0)])
    assert flat.item() == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="pair"):
        swapped_prediction_loss([torch.zeros(4, 4)] * 2, hard, [(0, 0)])
