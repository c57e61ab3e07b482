"""``selfsup bench --distributed``, throughput: the real ``selfsup pretrain`` command with one
plain process and under ``torchrun --nproc_per_node N``, each process given ``cores // N``
threads, images/s read from the run's ``metrics.jsonl``.

The trainer logs the global throughput (every process's share of each global batch, counted
on rank 0), so the logged images/s of 1 and N processes compare directly.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfsup.config import Config

__all__ = ["global_images_per_s", "measure_throughput", "pretrain_command"]


def pretrain_command(processes: int | None) -> list[str]:
    """``python -m selfsup pretrain`` (``processes=None``), or the same module under
    ``torchrun --standalone --nproc_per_node processes``."""
    if processes is None:
        return [sys.executable, "-m", "selfsup", "pretrain"]
    torchrun = Path(sys.executable).parent / "torchrun"
    launcher = (
        [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    return [*launcher, "--standalone", f"--nproc_per_node={processes}", "-m", "selfsup", "pretrain"]


def global_images_per_s(records: Sequence[dict[str, Any]]) -> tuple[float, int]:
    """Global images/s over the ``train`` records of ``metrics.jsonl`` after the first (warm-up)
    window, and how many windows that is. Each record's ``img_per_s`` is the global batch's
    images over its window's time; windows may differ in length, so the rate is total images
    over total time (each window's time is its steps over its rate)."""
    train = [r for r in records if r.get("kind") == "train"]
    if len(train) < 2:
        raise ValueError(
            f"metrics.jsonl holds {len(train)} train record(s); need >= 2 (the first is "
            "warm-up): run more steps (--steps) than train.log_every"
        )
    steps = seconds = 0.0
    for before, record in itertools.pairwise(train):
        n = record["step"] - before["step"]
        steps += n
        seconds += n / record["img_per_s"]  # the window's time in units of one batch
    return steps / seconds, len(train) - 1


def _run(
    cfg_path: Path, processes: int | None, steps: int, threads: int, run_dir: Path
) -> dict[str, Any]:
    """One run of the pretrain command; its row, or the failure's last lines."""
    log_every = max(1, steps // 5)
    command = [
        *pretrain_command(processes),
        "-c",
        str(cfg_path),
        f"train.max_steps={steps}",
        f"train.log_every={log_every}",
        "train.knn_every=0",
        "train.online_linear=false",
        "train.progress=false",
        "--run-dir",
        str(run_dir),
        "--overwrite",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    row: dict[str, Any] = {
        "launcher": "python -m selfsup" if processes is None else "torchrun",
        "processes": processes or 1,
        "threads": threads,
        "command": " ".join(command),
    }
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-25:])
        return {**row, "error": f"exit code {done.returncode}:\n{tail}"}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    row["img_per_s"], row["windows"] = global_images_per_s(records)
    return row


def measure_throughput(
    cfg: Config, procs: Sequence[int], steps: int, cores: int | None = None, label: str = ""
) -> list[dict[str, Any]]:
    """Global images/s of ``steps`` steps of ``cfg`` (k-NN monitor and online probe off): a
    plain single process first (all ``cores`` threads), then ``torchrun`` with each of
    ``procs`` processes (``cores // N`` threads each). ``speedup`` is relative to the plain
    run; a failed run's row holds ``error`` with the end of its output. ``label`` names the
    config in the rows (default: its method)."""
    from selfsup.bench.distributed_bench import cpu_cores

    if steps < 2:
        raise ValueError(f"need >= 2 steps (the first logged window is warm-up), got {steps}")
    cores = cores or cpu_cores()
    rows = []
    with tempfile.TemporaryDirectory(prefix="selfsup-distbench-") as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        cfg_path.write_text(cfg.to_yaml())
        for processes in [None, *procs]:
            run_dir = Path(tmp) / f"run-{processes or 'plain'}"
            threads = max(1, cores // (processes or 1))
            row = _run(cfg_path, processes, steps, threads, run_dir)
            rows.append(
                {**row, "config": label or cfg.method, "global_batch": cfg.train.batch_size}
            )
            shutil.rmtree(run_dir, ignore_errors=True)
    base = rows[0].get("img_per_s")
    for row in rows:
        if base and "img_per_s" in row:
            row["speedup"] = row["img_per_s"] / base
    return rows
