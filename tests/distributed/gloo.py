"""Run a function on a real 2-process gloo group and bring each process's results back.

The tests of collectives spawn the processes once per module (forked, so torch and selfsup
are not imported again), each joins the group over a ``file://`` rendezvous, runs ``work(rank)``
and saves what it returns; the assertions then run in the parent, against single-process
references.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["on_gloo"]


def _entry(rank: int, work: Callable[[int], Any], directory: str, world: int) -> None:
    torch.set_num_threads(1)  # as DataLoader workers do: no OpenMP pool inherited over fork
    init = f"file://{directory}/rendezvous"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.save(work(rank), Path(directory) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def on_gloo(work: Callable[[int], Any], directory: Path, world: int = 2) -> list[Any]:
    """``[work(0), work(1), ...]``, each computed in its own process of one gloo group."""
    start = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _entry, args=(work, str(directory), world), nprocs=world, join=True, start_method=start
    )
    return [torch.load(directory / f"rank{r}.pt") for r in range(world)]
