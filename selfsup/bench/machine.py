"""The machine under the benchmark: its name, its matmul peak, FLOP counting, peak memory, timing."""

from __future__ import annotations

import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "PeakMemory",
    "count_flops",
    "machine_description",
    "matmul_peak_gflops",
    "sync",
    "time_calls",
]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description(device: torch.device) -> str:
    """One line naming the processor (or GPU), the thread count and the torch version."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{_cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call of ``fn`` over ``steps`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def matmul_peak_gflops(
    device: torch.device,
    dtype: torch.dtype,
    sizes: Sequence[int] | None = None,
    seconds_per_size: float = 0.2,
) -> float:
    """The best GFLOP/s of square ``n x n`` matmuls (``2 n^3`` FLOPs each) in ``dtype``.

    Each size runs for about ``seconds_per_size`` (at least 2 timed calls after one warm-up)
    and the fastest call counts: the reference "peak" the step is compared with.
    """
    if sizes is None:
        sizes = (4096, 8192) if device.type == "cuda" else (1024, 2048)
    gen = torch.Generator(device=device).manual_seed(0)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, generator=gen).to(dtype)
        b = torch.randn(n, n, device=device, generator=gen).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        torch.matmul(a, b, out=out)
        sync(device)
        deadline = time.perf_counter() + seconds_per_size
        calls = 0
        while calls < 2 or time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            sync(device)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - start))
            calls += 1
    return best / 1e9


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (forward and backward ops) by ``FlopCounterMode``."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _rss_mib() -> float:
    """The process's peak resident set size in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


class PeakMemory:
    """Peak memory over a region: CUDA allocator peak, or the process's peak RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = (
            "CUDA max_memory_allocated"
            if device.type == "cuda"
            else "process peak RSS (ru_maxrss; includes data and Python, never decreases)"
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.start_mib = self._peak()

    def _peak(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return _rss_mib()

    def peak_mib(self) -> float:
        return self._peak()
