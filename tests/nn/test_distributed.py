"""Distributed helpers and the gathered NT-Xent loss on a real 2-process gloo group.

One spawn (module-scoped fixture) runs every collective; each process saves what it saw and
the assertions run here, in the parent, against single-process references.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from selfsup.nn import (
    NTXentLoss,
    all_reduce_mean,
    gather_no_grad,
    gather_with_grad,
    is_distributed,
    moco_v3_loss,
    rank,
    shuffle_batch,
    unshuffle_batch,
    world_size,
)
from tests.distributed.gloo import on_gloo

WORLD = 2
N_LOCAL = 3  # rows per process


def shared_inputs() -> dict[str, torch.Tensor]:
    """The global tensors; every process builds the same ones and takes its own slice."""
    g = torch.Generator().manual_seed(1234)
    return {
        "x": torch.randn(WORLD * N_LOCAL, 4, generator=g, dtype=torch.float64),
        "z_a": torch.randn(WORLD * N_LOCAL, 5, generator=g, dtype=torch.float64),
        "z_b": torch.randn(WORLD * N_LOCAL, 5, generator=g, dtype=torch.float64),
        "images": torch.randn(WORLD * N_LOCAL, 2, 3, generator=g, dtype=torch.float64),
        "q": torch.randn(WORLD * N_LOCAL, 5, generator=g, dtype=torch.float64),
        "k": torch.randn(WORLD * N_LOCAL, 5, generator=g, dtype=torch.float64),
    }


SHUFFLE_SEED = 100  # rank r seeds its generator with SHUFFLE_SEED + r


def weights_for(r: int) -> torch.Tensor:
    """Rank-dependent weights, so a wrong gradient routing is visible."""
    base = torch.arange(WORLD * N_LOCAL * 4, dtype=torch.float64).reshape(WORLD * N_LOCAL, 4)
    return base * (r + 1)


def _work(local_rank: int) -> dict[str, Any]:
    inputs = shared_inputs()
    rows = slice(local_rank * N_LOCAL, (local_rank + 1) * N_LOCAL)
    out: dict[str, Any] = {
        "is_distributed": is_distributed(),
        "rank": rank(),
        "world_size": world_size(),
    }

    x = inputs["x"][rows].clone().requires_grad_()
    gathered = gather_with_grad(x)  # [WORLD * N_LOCAL, 4]
    (gathered * weights_for(local_rank)).sum().backward()
    out["gathered"] = gathered.detach()
    out["x_grad"] = x.grad

    no_grad = gather_no_grad(x)
    out["no_grad"] = no_grad
    out["no_grad_requires_grad"] = no_grad.requires_grad

    value = torch.full((2,), float(local_rank + 1))
    out["mean"] = all_reduce_mean(value)
    out["mean_input_after"] = value

    z_a = inputs["z_a"][rows].clone().requires_grad_()
    z_b = inputs["z_b"][rows].clone().requires_grad_()
    loss = NTXentLoss(temperature=0.5, gather_distributed=True)(z_a, z_b)
    loss.backward()
    out["loss"] = loss.detach()
    out["z_a_grad"], out["z_b_grad"] = z_a.grad, z_b.grad
    out["local_loss"] = NTXentLoss(temperature=0.5)(z_a.detach(), z_b.detach())

    # Shuffle-BN: rank-dependent generators, so only rank 0's broadcast keeps ranks agreeing.
    images = inputs["images"][rows].clone().requires_grad_()
    g = torch.Generator().manual_seed(SHUFFLE_SEED + local_rank)
    shuffled, unshuffle_index = shuffle_batch(images, generator=g)
    restored = unshuffle_batch(shuffled * 2, unshuffle_index)
    (restored * weights_for(local_rank)[rows].view(N_LOCAL, 2, 2)[..., :1]).sum().backward()
    out["shuffled"] = shuffled.detach()
    out["unshuffle_index"] = unshuffle_index
    out["restored"] = restored.detach()
    out["images_grad"] = images.grad
    with torch.no_grad():  # how MoCo calls it: keys without gradient
        shuffled_ng, index_ng = shuffle_batch(images)
        out["no_grad_restored"] = unshuffle_batch(shuffled_ng, index_ng)

    q = inputs["q"][rows].clone().requires_grad_()
    k = inputs["k"][rows].clone().requires_grad_()
    ctr = moco_v3_loss(q, k, temperature=0.2, gather_distributed=True)
    ctr.backward()
    out["ctr"], out["q_grad"], out["k_grad"] = ctr.detach(), q.grad, k.grad
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return on_gloo(_work, tmp_path_factory.mktemp("gloo"), WORLD)


def test_single_process_defaults() -> None:
    assert not is_distributed() and world_size() == 1 and rank() == 0
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert torch.equal(gather_no_grad(x), x) and not gather_no_grad(x).requires_grad
    assert torch.equal(all_reduce_mean(x), x) and not all_reduce_mean(x).requires_grad
    with pytest.raises(ValueError, match="floating-point"):
        all_reduce_mean(torch.ones(2, dtype=torch.long))


def test_process_identity(results: list[dict[str, Any]]) -> None:
    for r, out in enumerate(results):
        assert out["is_distributed"] and out["rank"] == r and out["world_size"] == WORLD


def test_gather_with_grad_values_and_gradients(results: list[dict[str, Any]]) -> None:
    x_full = shared_inputs()["x"]
    # Each process's loss is sum(gathered * w_r); the gradient reaching process r's slice is
    # the sum over processes of their weights at that slice.
    summed_weights = torch.stack([weights_for(r) for r in range(WORLD)]).sum(0)
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        torch.testing.assert_close(out["gathered"], x_full)
        torch.testing.assert_close(out["x_grad"], summed_weights[rows])


def test_gather_no_grad_and_all_reduce_mean(results: list[dict[str, Any]]) -> None:
    x_full = shared_inputs()["x"]
    expected_mean = sum(r + 1 for r in range(WORLD)) / WORLD
    for r, out in enumerate(results):
        torch.testing.assert_close(out["no_grad"], x_full)
        assert not out["no_grad_requires_grad"]
        torch.testing.assert_close(out["mean"], torch.full((2,), expected_mean))
        torch.testing.assert_close(out["mean_input_after"], torch.full((2,), float(r + 1)))


def test_gathered_nt_xent_equals_global_batch_loss(results: list[dict[str, Any]]) -> None:
    inputs = shared_inputs()
    z_a = inputs["z_a"].clone().requires_grad_()
    z_b = inputs["z_b"].clone().requires_grad_()
    loss = NTXentLoss(temperature=0.5)(z_a, z_b)
    loss.backward()
    assert z_a.grad is not None and z_b.grad is not None
    # The global loss is the mean of the per-process losses (equal anchors per process).
    mean_loss = sum(out["loss"] for out in results) / WORLD
    torch.testing.assert_close(mean_loss, loss.detach())
    # Gradients: gather_with_grad sums all processes' contributions onto each slice, so the
    # local gradient is WORLD x the global one; DDP's averaging divides that back.
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        torch.testing.assert_close(out["z_a_grad"] / WORLD, z_a.grad[rows])
        torch.testing.assert_close(out["z_b_grad"] / WORLD, z_b.grad[rows])
        # Gathering changes the loss: negatives from the other process count.
        assert not torch.allclose(out["loss"], out["local_loss"])


def test_shuffle_round_trip_single_process() -> None:
    x = torch.randn(7, 3, 2, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    shuffled, index = shuffle_batch(x, generator=g)
    perm = torch.argsort(index)  # shuffled[i] = x[perm[i]]
    assert sorted(perm.tolist()) == list(range(7)) and index.dtype == torch.long
    assert not torch.equal(perm, torch.arange(7))  # a real shuffle (seeded: fixed)
    torch.testing.assert_close(shuffled, x[perm])
    restored = unshuffle_batch(shuffled, index)
    assert torch.equal(restored, x)
    # Same generator seed, same permutation; gradient flows back through the round trip.
    again, _ = shuffle_batch(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, shuffled)
    weights = torch.randn(7, 3, 2)
    (restored * weights).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, weights)
    with pytest.raises(ValueError, match="pass the index returned by shuffle_batch"):
        unshuffle_batch(shuffled[:5], index)
    with pytest.raises(ValueError, match="n >= 1"):
        shuffle_batch(torch.zeros(0, 3))


def test_shuffle_uses_rank0_permutation_across_processes(results: list[dict[str, Any]]) -> None:
    images = shared_inputs()["images"]
    index = results[0]["unshuffle_index"]
    for out in results:  # every process holds the same index
        assert torch.equal(out["unshuffle_index"], index)
    # It is rank 0's draw (rank 1's generator was seeded differently).
    expected_perm = torch.randperm(
        WORLD * N_LOCAL, generator=torch.Generator().manual_seed(SHUFFLE_SEED)
    )
    assert torch.equal(torch.argsort(index), expected_perm)
    # The slices of all processes form the globally permuted batch, in rank order...
    shuffled_global = torch.cat([out["shuffled"] for out in results])
    torch.testing.assert_close(shuffled_global, images[expected_perm])
    # ...so samples really move between processes, and the round trip restores each slice.
    assert not torch.equal(results[0]["shuffled"], images[:N_LOCAL])
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        torch.testing.assert_close(out["restored"], 2 * images[rows])
        torch.testing.assert_close(out["no_grad_restored"], images[rows])


def test_shuffle_gradient_routed_back_to_the_owner(results: list[dict[str, Any]]) -> None:
    # loss_r = sum(2 * x_r * w_r) after the round trip: d loss / d x_r = 2 w_r on process r,
    # although the rows travelled through the other process.
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        w = weights_for(r)[rows].view(N_LOCAL, 2, 2)[..., :1].expand(N_LOCAL, 2, 3)
        torch.testing.assert_close(out["images_grad"], 2 * w)


def test_gathered_moco_v3_equals_global_batch_loss(results: list[dict[str, Any]]) -> None:
    inputs = shared_inputs()
    q = inputs["q"].clone().requires_grad_()
    loss = moco_v3_loss(q, inputs["k"], temperature=0.2)
    loss.backward()
    assert q.grad is not None
    torch.testing.assert_close(sum(out["ctr"] for out in results) / WORLD, loss.detach())
    for r, out in enumerate(results):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        # Keys are constants: each process's query gradient is its own, WORLD x the global.
        torch.testing.assert_close(out["q_grad"] / WORLD, q.grad[rows])
        assert out["k_grad"] is None
        local = moco_v3_loss(inputs["q"][rows], inputs["k"][rows], temperature=0.2)
        assert not torch.allclose(out["ctr"], local)  # the other process's keys counted
