"""``selfsup bench --knn``: what the k-NN evaluation costs against the size of its bank."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from selfsup.bench.machine import PeakMemory, machine_description, sync
from selfsup.bench.report import format_knn, report
from selfsup.train.device import resolve_device

__all__ = ["run_knn_bench"]


def run_knn_bench(
    bank_sizes: Sequence[int],
    queries: int = 10000,
    dim: int = 128,
    num_classes: int = 10,
    k: int = 20,
    chunk_size: int = 1024,
    bank_chunk_size: int = 16384,
    device: str = "cpu",
    write: str | None = None,
    command: str = "selfsup bench --knn",
    json_path: str | None = None,
) -> list[dict[str, Any]]:
    """Time :func:`selfsup.eval.knn.knn_predict` on random features for each bank size.

    Reports seconds, queries/s, the bank's own size, the bound on the similarity block
    (``chunk_size x bank_chunk_size`` float32) and the peak memory of the call (CUDA allocator
    peak, or the growth of the process's peak RSS on the CPU, the bank being allocated first).
    """
    from selfsup.eval.knn import knn_predict

    if not bank_sizes or min(bank_sizes) < 1 or queries < 1 or dim < 1:
        raise ValueError(
            f"need bank sizes >= 1, queries >= 1 and dim >= 1, got banks {list(bank_sizes)}, "
            f"queries {queries}, dim {dim}"
        )
    target = resolve_device(device)
    gen = torch.Generator(device=target).manual_seed(0)
    rows: list[dict[str, Any]] = []
    for n in bank_sizes:
        bank = torch.randn(n, dim, device=target, generator=gen)
        labels = torch.randint(0, num_classes, (n,), device=target, generator=gen)
        query = torch.randn(queries, dim, device=target, generator=gen)
        knn_predict(bank[:100], labels[:100], query[:10], num_classes, k)  # warm-up
        sync(target)
        memory = PeakMemory(target)
        before = (
            memory.start_mib if target.type != "cuda" else torch.cuda.memory_allocated() / 2**20
        )
        start = time.perf_counter()
        knn_predict(bank, labels, query, num_classes, k, 0.07, chunk_size, bank_chunk_size)
        sync(target)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "bank": n,
                "queries": queries,
                "dim": dim,
                "seconds": seconds,
                "queries_per_s": queries / seconds,
                "bank_mib": n * dim * 4 / 2**20,
                "block_bound_mib": min(chunk_size, queries) * min(bank_chunk_size, n) * 4 / 2**20,
                "full_matrix_mib": n * queries * 4 / 2**20,
                "call_peak_mib": max(0.0, memory.peak_mib() - before),
                "memory_kind": memory.kind,
            }
        )
        del bank, labels, query
    header = (
        f"k-NN (k={k}, cosine, {num_classes} classes), {queries} queries of dim {dim}, query "
        f"chunk {chunk_size}, bank chunk {bank_chunk_size}, {target}; {machine_description(target)}"
    )
    report(format_knn(rows, header), rows, write, json_path, command)
    return rows
