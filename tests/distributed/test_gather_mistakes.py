"""The gathered-negatives gradient test catches the two classic mistakes.

SimCLR on W processes gathers every process's projections with gradient. The backward of that
gather must hand each process the *sum* over processes of the gradient of its rows (every
process's loss uses them as negatives); DistributedDataParallel then averages. Two classic
mistakes: scaling that gradient by 1/W (gradients W times too small after DDP's average), and
not summing it at all (each process keeps only its own loss's gradient: the negatives' pull
from the other processes is lost). The same check is run with our gather and with both
mistakes; only ours matches one process holding the whole batch.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.distributed as dist

import selfsup.nn.losses.contrastive as contrastive
from selfsup.nn import NTXentLoss, gather_with_grad
from tests.distributed.gloo import on_gloo

WORLD = 2
ROWS = 4  # per process


class _ScaledGather(torch.autograd.Function):
    """Mistake 1: the summed gradient divided by the world size."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(WORLD)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad.chunk(WORLD)[dist.get_rank()] / WORLD


class _UnsummedGather(_ScaledGather):
    """Mistake 2: only this process's own gradient of its rows (no all-reduce)."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.chunk(WORLD)[dist.get_rank()].clone()


GATHERS = {
    "ours": gather_with_grad,
    "scaled_by_1/W": _ScaledGather.apply,
    "not_summed": _UnsummedGather.apply,
}


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two views of the global batch ``[W R, 6]`` and the shared projection ``[6, 5]``."""
    g = torch.Generator().manual_seed(7)
    return (
        torch.randn(WORLD * ROWS, 6, generator=g, dtype=torch.float64),
        torch.randn(WORLD * ROWS, 6, generator=g, dtype=torch.float64),
        torch.randn(6, 5, generator=g, dtype=torch.float64),
    )


def _gradients(rank: int) -> dict[str, torch.Tensor]:
    x_a, x_b, weight = _inputs()
    rows = slice(rank * ROWS, (rank + 1) * ROWS)
    grads = {}
    for name, gather in GATHERS.items():
        contrastive.gather_with_grad = gather  # the loss module's reference
        projection = weight.clone().requires_grad_()  # a parameter every process shares
        loss = NTXentLoss(0.5, gather_distributed=True)
        loss(x_a[rows] @ projection, x_b[rows] @ projection).backward()
        grad = projection.grad
        assert grad is not None
        dist.all_reduce(grad)  # DistributedDataParallel's rule: the processes' average
        grads[name] = grad / WORLD
    return grads


@pytest.fixture(scope="module")
def gathered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return on_gloo(_gradients, tmp_path_factory.mktemp("gather-mistakes"), WORLD)


def _matches_one_process(grads: list[torch.Tensor]) -> bool:
    """Every process's averaged gradient equals the one-process gradient of the whole batch."""
    x_a, x_b, weight = _inputs()
    projection = weight.clone().requires_grad_()
    NTXentLoss(0.5)(x_a @ projection, x_b @ projection).backward()
    assert projection.grad is not None
    return all(torch.allclose(g, projection.grad, rtol=1e-10, atol=1e-12) for g in grads)


def test_our_gather_matches_one_process_and_both_mistakes_do_not(
    gathered: list[dict[str, Any]],
) -> None:
    verdict = {name: _matches_one_process([r[name] for r in gathered]) for name in GATHERS}
    assert verdict == {"ours": True, "scaled_by_1/W": False, "not_summed": False}
