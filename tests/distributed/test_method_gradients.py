"""Every method, one training step on 2 gloo processes == one process with the global batch.

Two processes (forked, gloo, file:// rendezvous) each take rows ``[r B, (r+1) B)`` of the same
global views and run the real :class:`~selfsup.train.step.TrainStep` (DistributedDataParallel
around the method, SyncBatchNorm, the step's loss all-reduce, the online probe on the gathered
batch). The parent runs the same steps with the whole batch ``2B`` on one process. Then:

* the loss and every parameter gradient of the first step agree to 1e-6;
* after three steps every parameter and buffer (EMA targets, MoCo's queue, DINO's center,
  the online probe) is bitwise identical on the two ranks and matches the one-process run.

BatchNorm makes one process with ``2B`` differ from two with ``B`` by design (statistics of a
sub-batch), so the comparison uses ``train.sync_batchnorm=true`` (MoCo: ``split_bn=0``, for
the same reason). The models run in float64: in float32 these tiny BatchNorm networks amplify
the rounding of a different summation order from 1e-6 to 1e-2 within two steps, which would
hide a real error behind a loose tolerance. Randomness inside a step is aligned: MAE's masking noise by seeding the
global RNG so that rank ``r`` draws the rows of the global batch it holds; Jigsaw's puzzles are
drawn once for the global batch and each process takes its rows.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from selfsup import build
from selfsup.methods.jigsaw import Puzzles
from selfsup.nn.sync_batchnorm import convert_sync_batchnorm
from selfsup.train.step import TrainStep
from tests.conftest import METHOD_OVERRIDES, tiny_config
from tests.distributed.gloo import on_gloo

WORLD = 2
GLOBAL_BATCH = 16
STEPS = 3
METHODS = sorted(METHOD_OVERRIDES)


def run_steps(name: str, rank: int, world: int) -> dict[str, Any]:
    """STEPS steps of ``name`` on this process's rows of the global batch; what to compare."""
    cfg = tiny_config(
        *METHOD_OVERRIDES[name],
        f"train.batch_size={GLOBAL_BATCH}",
        "train.sync_batchnorm=true",
        "moco.split_bn=0",
    )
    data = build.train_dataset(cfg)
    build.resolve_normalization(cfg, data)
    torch.manual_seed(0)
    method = build.make_method(cfg, data.channels)
    convert_sync_batchnorm(method)
    method.double()  # float64: rounding (1e-7 relative in float32) must not hide a wrong term
    classes = data.num_classes if cfg.train.online_linear is not False else None
    step = TrainStep.from_config(cfg, method, steps_per_epoch=10, device="cpu", num_classes=classes)
    assert (step.data_parallel is not None) == (world > 1)
    local = GLOBAL_BATCH // world
    rows = slice(rank * local, (rank + 1) * local)
    out: dict[str, Any] = {}
    for k in range(STEPS):
        images, labels = data.get_batch(torch.arange(k * GLOBAL_BATCH, (k + 1) * GLOBAL_BATCH))
        views = step.views(images, torch.Generator().manual_seed(100 + k))  # the global views
        if name == "jigsaw":  # the global batch's puzzles, this process's rows
            whole = type(method).make_puzzles(
                method, views[0].double(), torch.Generator().manual_seed(k)
            )
            mine = Puzzles(whole.tiles[rows].double(), whole.offsets[rows], whole.labels[rows])
            method.make_puzzles = lambda images, generator=None, mine=mine: mine  # type: ignore[method-assign]
        torch.manual_seed(1000 + k)
        if name == "mae":  # skip the noise rows of the processes before this one
            torch.rand(rank * local * method.encoder.num_patches)
        result = step.update([v[rows].double() for v in views], k, labels[rows])
        if k == 0:
            out["loss"] = result.loss.clone()
            out["grads"] = {
                n: p.grad.detach().clone()
                for n, p in method.named_parameters()
                if p.grad is not None
            }
    out["state"] = {n: t.detach().clone() for n, t in method.state_dict().items()}
    if step.probe is not None:
        out["probe"] = {n: t.detach().clone() for n, t in step.probe.state_dict().items()}
    return out


def _every_method(rank: int) -> dict[str, dict[str, Any]]:
    return {name: run_steps(name, rank, WORLD) for name in METHODS}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, dict[str, Any]]]:
    return on_gloo(_every_method, tmp_path_factory.mktemp("methods-gloo"), WORLD)


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str, tol: float = 1e-6) -> None:
    """Equal to 1e-6 (the issue asks 1e-5): float64 networks, but some losses compute in float32
    (DINO, MAE, the classification pretexts), 1e-7 relative. A wrong term or a 1/world_size too
    many shows at 1e-2. The float32 online probe gets 1e-5."""
    if not expected.is_floating_point():
        assert torch.equal(actual, expected), what
        return
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


# Buffers that differ from one process by design: SwAV keeps one queue per process (official).
PER_PROCESS = {"swav": ("queue.",)}


@pytest.mark.parametrize("name", METHODS)
def test_two_processes_equal_one_with_the_global_batch(
    name: str, two_processes: list[dict[str, dict[str, Any]]]
) -> None:
    ranks = [per_rank[name] for per_rank in two_processes]
    reference = run_steps(name, rank=0, world=1)

    # Step 1: the global batch's loss and gradients, on every rank.
    assert reference["grads"], "the step produced no gradients"
    for r, got in enumerate(ranks):
        _close(got["loss"], reference["loss"], f"rank {r} loss")
        assert got["grads"].keys() == reference["grads"].keys()
        for n, g in reference["grads"].items():
            _close(got["grads"][n], g, f"rank {r} gradient of {n}")

    # After the steps: the replicas are bitwise identical, and match the one-process run.
    skip = PER_PROCESS.get(name, ())
    for n, value in ranks[0]["state"].items():
        if skip and n.startswith(skip):
            continue
        assert torch.equal(ranks[1]["state"][n], value), f"{n} differs between the ranks"
        _close(value, reference["state"][n], f"{n} after {STEPS} steps")
    if "probe" in reference:
        for n, value in reference["probe"].items():
            assert torch.equal(ranks[0]["probe"][n], ranks[1]["probe"][n]), f"probe {n}"
            _close(ranks[0]["probe"][n], value, f"probe {n} after {STEPS} steps", tol=1e-5)
