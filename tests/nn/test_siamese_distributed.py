"""Barlow Twins, VICReg and Sinkhorn-Knopp over a real 2-process gloo group equal the
single-process computation on the whole batch (values, and the gradient DDP averages)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from selfsup.nn import all_reduce_max, all_reduce_sum, sinkhorn_knopp
from selfsup.nn.losses import barlow_twins_loss, cross_correlation, vicreg_terms
from tests.distributed.gloo import on_gloo

WORLD = 2
N_LOCAL = 5


def shared_inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(99)
    z_a = torch.randn(WORLD * N_LOCAL, 4, generator=g, dtype=torch.float64)
    return {
        "z_a": z_a,
        "z_b": z_a + torch.randn(WORLD * N_LOCAL, 4, generator=g, dtype=torch.float64),
        "scores": torch.nn.functional.normalize(
            torch.randn(WORLD * N_LOCAL, 3, generator=g, dtype=torch.float64), dim=1
        ),
    }


def _work(local_rank: int) -> dict[str, Any]:
    inputs = shared_inputs()
    rows = slice(local_rank * N_LOCAL, (local_rank + 1) * N_LOCAL)
    out: dict[str, Any] = {}
    z_a = inputs["z_a"][rows].clone().requires_grad_()
    z_b = inputs["z_b"][rows].clone().requires_grad_()
    out["c"] = cross_correlation(z_a, z_b, gather_distributed=True).detach()
    barlow = barlow_twins_loss(z_a, z_b, gather_distributed=True)
    barlow.backward()
    out["barlow"], out["barlow_grad"] = barlow.detach(), z_a.grad
    z_a.grad = None
    terms = vicreg_terms(z_a, z_b, gather_distributed=True)
    (25 * terms[0] + 25 * terms[1] + terms[2]).backward()
    out["vicreg"], out["vicreg_grad"] = torch.stack(terms).detach(), z_a.grad
    out["codes"] = sinkhorn_knopp(inputs["scores"][rows], 0.05, 3, gather_distributed=True)
    value = torch.tensor([1.0, -2.0]) * (local_rank + 1)
    out["sum"], out["max"] = all_reduce_sum(value), all_reduce_max(value)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return on_gloo(_work, tmp_path_factory.mktemp("gloo_siamese"), WORLD)


def test_all_reduce_sum_and_max(results: list[dict[str, Any]]) -> None:
    for out in results:
        torch.testing.assert_close(out["sum"], torch.tensor([3.0, -6.0]))
        torch.testing.assert_close(out["max"], torch.tensor([2.0, -2.0]))


def test_barlow_twins_over_two_processes_is_the_whole_batch_loss(
    results: list[dict[str, Any]],
) -> None:
    inputs = shared_inputs()
    z_a = inputs["z_a"].clone().requires_grad_()
    loss = barlow_twins_loss(z_a, inputs["z_b"])
    loss.backward()
    assert z_a.grad is not None
    c = cross_correlation(inputs["z_a"], inputs["z_b"])
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        torch.testing.assert_close(out["c"], c)
        torch.testing.assert_close(out["barlow"], loss.detach())
        # gather_with_grad sums every process's (equal) loss gradient: WORLD x the global one,
        # which DDP's average divides back
        torch.testing.assert_close(out["barlow_grad"] / WORLD, z_a.grad[rows])


def test_vicreg_over_two_processes_is_the_whole_batch_loss(results: list[dict[str, Any]]) -> None:
    inputs = shared_inputs()
    z_a = inputs["z_a"].clone().requires_grad_()
    terms = vicreg_terms(z_a, inputs["z_b"])
    (25 * terms[0] + 25 * terms[1] + terms[2]).backward()
    assert z_a.grad is not None
    mean_invariance = sum(out["vicreg"][0] for out in results) / WORLD
    torch.testing.assert_close(mean_invariance, terms[0].detach())
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        torch.testing.assert_close(out["vicreg"][1:], torch.stack(terms[1:]).detach())
        # The local invariance (a mean over n rows, W x its share of the global mean) plus the
        # gathered terms counted by every process: W x the global gradient, as for Barlow.
        torch.testing.assert_close(out["vicreg_grad"] / WORLD, z_a.grad[rows])


def test_sinkhorn_over_two_processes_equals_the_whole_batch(results: list[dict[str, Any]]) -> None:
    whole = sinkhorn_knopp(shared_inputs()["scores"], 0.05, 3)
    torch.testing.assert_close(torch.cat([out["codes"] for out in results]), whole)
    # a half batch alone is normalised differently (the all-reduce matters)
    half = sinkhorn_knopp(shared_inputs()["scores"][:N_LOCAL], 0.05, 3)
    assert not torch.allclose(results[0]["codes"], half)
