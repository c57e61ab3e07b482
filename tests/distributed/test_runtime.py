"""The distributed runtime: misconfiguration refused before training, the collectives the
trainer agrees with, CPU SyncBatchNorm, the replica check, and the elastic-restart rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from selfsup.methods.byol import BYOL, byol_predictor, byol_projector
from selfsup.nn.sync_batchnorm import CPUSyncBatchNorm, convert_sync_batchnorm
from selfsup.train.distributed import (
    agree_any,
    average_batchnorm_statistics,
    check_distributed_config,
    check_replicas_identical,
    init_distributed,
    rank_seed,
    run_on_main,
)
from selfsup.train.elastic import elastic_start
from selfsup.train.step import TrainStep
from selfsup.views import MultiViewTransform, byol_views
from tests.conftest import METHOD_OVERRIDES, tiny_config
from tests.distributed.gloo import on_gloo

WORLD = 2


# -- misconfiguration, before anything starts -------------------------------------------------------
def test_a_global_batch_not_divisible_by_the_processes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not divisible by the 4 processes.*batch_size=28"):
        check_distributed_config(tiny_config("train.batch_size=30"), world_size=4)
    check_distributed_config(tiny_config("train.batch_size=30"), world_size=1)  # one: anything


def test_split_bn_sub_batches_must_fit_the_per_process_batch() -> None:
    moco = [*METHOD_OVERRIDES["moco"], "moco.split_bn=8"]
    check_distributed_config(tiny_config(*moco, "train.batch_size=32"), world_size=2)  # 16 = 8x2
    with pytest.raises(ValueError, match=r"split_bn=8 sub-batches do not fit .* of 8 "):
        check_distributed_config(tiny_config(*moco, "train.batch_size=16"), world_size=2)
    with pytest.raises(ValueError, match=r"split_bn and train\.sync_batchnorm both set"):
        cfg = tiny_config(*moco, "train.batch_size=32", "train.sync_batchnorm=true")
        check_distributed_config(cfg, world_size=2)


def test_nccl_without_gpus_is_refused_before_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"dist_backend=nccl needs GPUs.*gloo"):
        init_distributed("cpu", "nccl")
    assert not dist.is_initialized()


def test_rank_streams_are_rank_0s_seed_and_distinct_others() -> None:
    assert rank_seed(7, 0) == 7  # one process draws what it always drew
    seeds = {rank_seed(7, r) for r in range(1, 5)}
    assert len(seeds) == 4 and 7 not in seeds and rank_seed(7, 1) == rank_seed(7, 1)


# -- the elastic-restart rule -------------------------------------------------------------------
def _torchrun_env(monkeypatch: pytest.MonkeyPatch, restart: int) -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "TORCHELASTIC_MAX_RESTARTS": "1"}
    for key, value in {**env, "TORCHELASTIC_RESTART_COUNT": str(restart)}.items():
        monkeypatch.setenv(key, value)


def test_elastic_start_resumes_only_this_commands_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tiny_config()
    plain = elastic_start(cfg, None, overwrite=True)  # outside torchrun: as asked
    assert (plain.resume, plain.overwrite) == (False, True)
    _torchrun_env(monkeypatch, restart=0)
    with pytest.raises(ValueError, match="needs the run directory named"):
        elastic_start(cfg, None, overwrite=False)
    assert not elastic_start(cfg, str(tmp_path), overwrite=False).resume  # first attempt
    _torchrun_env(monkeypatch, restart=1)
    run = tmp_path / "run"
    assert elastic_start(cfg, str(run), False).resume is False  # nothing written yet
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    again = elastic_start(cfg, str(run), False)
    assert (again.resume, again.overwrite) == (False, True)  # its own files, no checkpoint
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert elastic_start(cfg, str(run), False).resume
    other = tiny_config("train.batch_size=32")
    with pytest.raises(ValueError, match=r"another configuration \(train.batch_size"):
        elastic_start(other, str(run), False)


# -- collectives on 2 gloo processes ------------------------------------------------------------
def _collectives(rank: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # CPU SyncBatchNorm on this rank's half of the global batch.
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bn = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)).double(), "cpu")
    out["bn_type"] = type(bn[0]).__name__
    with torch.no_grad():
        bn[0].weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    local = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
    y = bn(local)
    (y * torch.arange(y.numel(), dtype=torch.float64).view_as(y)).sum().backward()
    out["y"], out["x_grad"] = y.detach(), local.grad
    out["running"] = (bn[0].running_mean.clone(), bn[0].running_var.clone())

    # The replica check: a buffer that differs is named; a per-process one may differ.
    module = nn.Module()
    module.register_buffer("same", torch.ones(3))
    module.register_buffer("mine", torch.full((2,), float(rank)))
    try:
        check_replicas_identical(module)
        out["replicas"] = "passed"
    except RuntimeError as err:
        out["replicas"] = str(err)
    check_replicas_identical(module, skip=("mine",))

    stats = nn.BatchNorm1d(2)
    stats.running_mean.fill_(float(rank))
    average_batchnorm_statistics(stats)
    out["averaged"] = stats.running_mean.clone()

    out["agreed"] = agree_any(rank == 1)

    def fails_on_main() -> int:
        raise ValueError("rank 0 could not write")

    try:
        run_on_main(fails_on_main)
    except ValueError as err:
        out["raised"] = str(err)
    out["shared"] = run_on_main(lambda: rank * 10 + 5)  # rank 0's result everywhere

    # train.compile=auto compiles a step that DistributedDataParallel already wraps: the
    # wrapper must run the compiled step from then on (eager backend: no kernels to build)
    torch.manual_seed(0)
    recipe = MultiViewTransform(byol_views(8), mean=[0.5], std=[0.25])
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
    method = BYOL(backbone, byol_projector(32, 64, 16), byol_predictor(16, 64), recipe)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01)
    step = TrainStep(method, optimizer, [0.01, 0.01], steps_per_epoch=2, data_parallel=True)
    step.compile("eager")
    assert step.data_parallel is not None
    out["ddp_step_fn_compiled"] = step.data_parallel.module.step_fn is step.compiled_step
    images = torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8)
    out["compiled_ddp_loss_finite"] = bool(torch.isfinite(step(images, 0).loss))
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return on_gloo(_collectives, tmp_path_factory.mktemp("runtime-gloo"), WORLD)


def test_cpu_sync_batchnorm_is_batchnorm_over_the_global_batch(ranks: list[dict[str, Any]]) -> None:
    x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x.requires_grad_()
    bn = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    y = bn(x)
    weights = torch.cat([torch.arange(y.numel() // 2, dtype=torch.float64)] * 2).view_as(y)
    (y * weights).sum().backward()
    assert x.grad is not None
    for r, out in enumerate(ranks):
        assert out["bn_type"] == CPUSyncBatchNorm.__name__
        rows = slice(r * 4, (r + 1) * 4)
        torch.testing.assert_close(out["y"], y.detach()[rows])
        torch.testing.assert_close(out["x_grad"], x.grad[rows])  # both ranks' losses count
        torch.testing.assert_close(out["running"][0], bn.running_mean)
        torch.testing.assert_close(out["running"][1], bn.running_var)


def test_replicas_that_differ_are_named_and_the_agreements_hold(
    ranks: list[dict[str, Any]],
) -> None:
    for out in ranks:
        assert "replicas differ between ranks (mine)" in out["replicas"]
        torch.testing.assert_close(out["averaged"], torch.full((2,), 0.5))
        assert out["agreed"] is True  # a Ctrl-C seen by rank 1 stops rank 0 as well
        assert out["raised"] == "rank 0 could not write"  # no rank waits forever
        assert out["shared"] == 5
        assert out["ddp_step_fn_compiled"] and out["compiled_ddp_loss_finite"]
