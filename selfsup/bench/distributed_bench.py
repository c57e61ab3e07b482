"""``selfsup bench --distributed``: what data parallelism sends, and what it buys.

* Communication volume (:func:`measure_comm`): K training steps of one method in two processes
  (``torch.multiprocessing``, gloo, ``file://`` rendezvous) through the trainer's own
  :class:`~selfsup.train.step.TrainStep` (DDP around the step). The gradient all-reduce is
  counted by a DDP communication hook (every bucket's bytes, then the usual average); every
  other collective by wrapping the ``torch.distributed`` functions that selfsup calls
  (``dist.all_reduce``, ``dist.all_gather``, ...), counting the tensors this rank contributes.
  DDP's reducer calls C++ directly, and the hook all-reduces with the unwrapped function, so
  nothing is counted twice; a collective called from DDP's Python code would be reported.
  Step 1 is warm-up (DDP rebuilds its buckets after it): steps 2..K are counted.
* Throughput (:func:`measure_throughput`): the real ``selfsup pretrain`` command, plain and
  under ``torchrun --nproc_per_node N``, images/s read from ``metrics.jsonl``.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import json
import os
import sys
import tempfile
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup import build
from selfsup.config import Config, apply_method_defaults, apply_overrides

__all__ = ["cpu_cores", "measure_comm", "method_config", "run_distributed_bench"]

# torch.distributed function -> its argument holding what this rank sends (None: not a tensor).
PAYLOAD_ARG: dict[str, str | None] = {
    "all_reduce": "tensor",
    "all_gather": "tensor",
    "all_gather_into_tensor": "input_tensor",
    "broadcast": "tensor",
    "reduce": "tensor",
    "reduce_scatter": "input_list",
    "reduce_scatter_tensor": "input",
    "all_to_all": "input_tensor_list",
    "all_to_all_single": "input",
    "gather": "tensor",
    "send": "tensor",
    "isend": "tensor",
    "barrier": None,
    "all_gather_object": None,
    "broadcast_object_list": None,
}


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def method_config(base: Config, overrides: Sequence[str], method: str) -> Config:
    """``base`` with ``overrides`` training ``method``. For a method other than the config's own,
    its paper's settings are applied too (``apply_method_defaults``, as ``selfsup pretrain
    method=X`` does without a file, e.g. MAE's ViT), except the keys ``overrides`` sets."""
    own = apply_overrides(copy.deepcopy(base), overrides).method
    cfg = apply_overrides(copy.deepcopy(base), [*overrides, f"method={method}"])
    if method != own:
        apply_method_defaults(cfg, [item.split("=", 1)[0].strip() for item in overrides])
    return cfg.validate()


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def _call_site() -> tuple[str, bool]:
    """Where a collective was called: the first frame outside torch and this file, named
    ``module.function``, with the outermost ``selfsup.nn.distributed`` helper it went through;
    and whether DDP's own Python code is on the stack."""
    frame, helper, ddp = sys._getframe(2), "", False
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        ddp = ddp or module.startswith("torch.nn.parallel")
        name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)  # 3.11+: Class.fn
        if module == "selfsup.nn.distributed":
            helper = name
        elif not module.startswith("torch") and module != __name__:
            site = f"{module.removeprefix('selfsup.')}.{name}"
            return (f"{site} via {helper}" if helper else site), ddp
        frame = frame.f_back  # type: ignore[assignment]
    return "?", ddp


class CollectiveCounter:
    """Wraps the ``torch.distributed`` collectives (as module attributes, which is how selfsup
    calls them) and counts calls and payload bytes per ``(function, call site)``."""

    def __init__(self) -> None:
        self.original = {name: getattr(dist, name) for name in PAYLOAD_ARG if hasattr(dist, name)}
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.ddp_calls = 0

    def reset(self) -> None:
        self.counts, self.ddp_calls = {}, 0

    def _wrap(self, name: str) -> Any:
        fn, arg = self.original[name], PAYLOAD_ARG[name]
        signature = inspect.signature(fn)

        def counted(*args: Any, **kwargs: Any) -> Any:
            payload = signature.bind(*args, **kwargs).arguments.get(arg) if arg else None
            site, ddp = _call_site()
            self.ddp_calls += ddp
            entry = self.counts.setdefault((name, site), [0, 0])
            entry[0] += 1
            entry[1] += _nbytes(payload)
            return fn(*args, **kwargs)

        return counted

    @contextmanager
    def patched(self) -> Iterator[CollectiveCounter]:
        for name in self.original:
            setattr(dist, name, self._wrap(name))
        try:
            yield self
        finally:
            for name, fn in self.original.items():
                setattr(dist, name, fn)


class GradientCounter:
    """A DDP communication hook: counts each gradient bucket's bytes, then averages it over
    the processes as DDP's default all-reduce does (with the unwrapped ``all_reduce``)."""

    def __init__(self, all_reduce: Any) -> None:
        self.all_reduce = all_reduce
        self.bytes = self.buckets = 0

    def reset(self) -> None:
        self.bytes = self.buckets = 0

    def hook(self, state: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
        del state
        buffer = bucket.buffer()
        self.bytes += buffer.numel() * buffer.element_size()
        self.buckets += 1
        buffer.div_(dist.get_world_size())
        work = self.all_reduce(buffer, async_op=True)
        fut: torch.futures.Future[torch.Tensor] = work.get_future().then(lambda f: f.value()[0])
        return fut


# DDP checks the hook's annotations as objects; this module's are strings (postponed).
GradientCounter.hook.__annotations__ = typing.get_type_hints(GradientCounter.hook)


def _count_in_process(cfg: Config, steps: int) -> dict[str, Any]:
    """This rank's counts over steps 2..``steps`` of ``cfg``'s method, as the trainer builds it."""
    from selfsup.nn.sync_batchnorm import convert_sync_batchnorm
    from selfsup.train.checkpoint import seed_everything
    from selfsup.train.distributed import rank_seed
    from selfsup.train.step import TrainStep

    rank, world = dist.get_rank(), dist.get_world_size()
    dataset = build.train_dataset(cfg)
    build.resolve_normalization(cfg, dataset)
    seed_everything(cfg.train.seed)
    method = build.make_method(cfg, build.input_channels(cfg, dataset))
    if cfg.train.sync_batchnorm:
        convert_sync_batchnorm(method)
    batch, local = cfg.train.batch_size, cfg.train.batch_size // world
    spe = max(1, len(dataset) // batch)
    step = TrainStep.from_config(cfg, method, spe, "cpu", dataset.num_classes)
    if step.total_steps < steps:
        raise ValueError(f"the run has {step.total_steps} steps, fewer than the {steps} to count")
    method.prepare_data(dataset)
    own_seed = rank_seed(cfg.train.seed, rank)  # every rank its own views (rank 0: the seed)
    if rank > 0:
        seed_everything(own_seed)
    generator = torch.Generator().manual_seed(own_seed)
    assert step.data_parallel is not None  # a process group of 2 exists
    collectives = CollectiveCounter()
    grads = GradientCounter(collectives.original["all_reduce"])
    step.data_parallel.register_comm_hook(None, grads.hook)
    with collectives.patched():
        for k in range(steps):
            if k == 1:  # step 1 is warm-up: DDP rebuilds its buckets after it
                collectives.reset()
                grads.reset()
            start = k * batch + rank * local
            images, labels = dataset.get_batch(torch.arange(start, start + local) % len(dataset))
            step(images, k, generator, labels)
    counted = steps - 1
    sites = [
        {"kind": kind, "site": site, "calls": calls / counted, "bytes": size / counted}
        for (kind, site), (calls, size) in sorted(collectives.counts.items())
    ]
    return {
        "method": cfg.method,
        "world_size": world,
        "global_batch": batch,
        "counted_steps": counted,
        "trainable_params": sum(p.numel() for p in method.parameters() if p.requires_grad),
        "grad_bytes": grads.bytes / counted,
        "grad_buckets": grads.buckets / counted,
        "other_bytes": sum(s["bytes"] for s in sites),
        "other_calls": sum(s["calls"] for s in sites),
        "sites": sites,
        "ddp_python_calls": collectives.ddp_calls / counted,
    }


def _comm_worker(
    rank: int, world: int, init_file: str, cfg: Config, steps: int, out: str, threads: int
) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(minutes=10),
    )
    try:
        result = _count_in_process(cfg, steps)
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def measure_comm(cfg: Config, steps: int = 3, world_size: int = 2) -> dict[str, Any]:
    """Payload bytes per process per step of ``cfg``'s training step in ``world_size`` processes
    (gloo on the CPU), over steps 2..``steps`` (step 1 is warm-up).

    Returns ``trainable_params``, ``grad_bytes`` and ``grad_buckets`` (DDP's gradient
    all-reduce), ``other_bytes`` and ``other_calls`` (every other collective), ``sites`` (per
    collective and call site: calls and bytes per step) and ``ddp_python_calls`` (collectives
    called from DDP's Python code, expected 0). A failure in a worker is raised here with its
    traceback (``torch.multiprocessing.ProcessRaisedException``).
    """
    from selfsup.train.distributed import check_distributed_config

    if steps < 2:
        raise ValueError(f"need >= 2 steps (the first is warm-up, not counted), got {steps}")
    check_distributed_config(cfg, world_size)
    threads = max(1, cpu_cores() // world_size)
    with tempfile.TemporaryDirectory(prefix="selfsup-distbench-") as tmp:
        out = Path(tmp) / "result.json"
        args = (world_size, str(Path(tmp) / "rendezvous"), cfg, steps, str(out), threads)
        mp.spawn(_comm_worker, args=args, nprocs=world_size, join=True)
        result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_distributed_bench(
    base: Config,
    overrides: Sequence[str] = (),
    methods: Sequence[str] | None = None,
    procs: Sequence[int] = (1, 2),
    steps: int = 10,
    *,
    comm_steps: int = 3,
    label: str = "demo",
    write: str | None = None,
    json_path: str | None = None,
    command: str = "selfsup bench --distributed",
) -> dict[str, Any]:
    """Both measurements, printed (and written) as markdown: the communication volume of each
    of ``methods`` (default: every method of ``selfsup.config.METHODS``) in 2 processes over ``comm_steps`` steps,
    and the throughput of ``base`` + ``overrides`` (its own method) over ``steps`` steps, plain
    and under torchrun with each of ``procs`` processes. A method that fails is reported with
    its traceback and the others go on."""
    from selfsup.bench.distributed_throughput import measure_throughput
    from selfsup.bench.machine import machine_description
    from selfsup.bench.report import format_comm, format_throughput, report
    from selfsup.config import METHODS
    from selfsup.methods.registry import get_method, method_names
    from selfsup.progress import say

    if steps < 2 or comm_steps < 2:
        raise ValueError(
            f"need >= 2 steps for each measurement (the first is warm-up), got steps={steps}, "
            f"comm_steps={comm_steps}"
        )
    registered = method_names()
    chosen = list(methods) if methods else [m for m in METHODS if m in registered]
    for name in chosen:
        get_method(name)  # an unknown name fails before anything runs, naming the known ones
    cfg = apply_overrides(copy.deepcopy(base), overrides).validate()
    comm: list[dict[str, Any]] = []
    for i, name in enumerate(chosen, 1):
        say(f"bench --distributed: {name} in 2 processes ({i}/{len(chosen)})")
        try:
            comm.append(measure_comm(method_config(base, overrides, name), comm_steps))
        except Exception as err:  # reported in the table; the other methods still run
            comm.append({"method": name, "error": f"{type(err).__name__}: {err}"})
    tag = f"{label} ({cfg.method})"
    say(f"bench --distributed: {tag} plain, then under torchrun with {procs} processes")
    throughput = measure_throughput(cfg, procs, steps, label=tag)
    cores = cpu_cores()
    machine = f"{machine_description(torch.device('cpu'))}; {cores} cores"
    data = (
        f"data {cfg.data.dataset}, {cfg.backbone.name} x{cfg.backbone.width}, views "
        f"{cfg.views.size} px, global batch {cfg.train.batch_size}"
    )
    table = "\n\n".join(
        [
            f"{machine}; config {label}, {data}.",
            format_comm(
                comm,
                f"Communication per training step, 2 processes (gloo, CPU), "
                f"{cfg.train.batch_size // 2} images per process:",
            ),
            format_throughput(throughput, f"Throughput of {tag}, {steps} steps per run:"),
        ]
    )
    result = {"machine": machine, "comm": comm, "throughput": throughput}
    report(table, result, write, json_path, command)
    return result
