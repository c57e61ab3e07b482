"""A run killed with SIGKILL at any instant resumes to the same run, bit for bit.

A child process (``kill_child.run``) trains a tiny deterministic CPU run and dies: for every
method in the middle of a step at a seeded random step; for one method (the write paths are the
same for all) while writing a checkpoint (half-written temporary file, or complete but not
renamed), while writing a best-k checkpoint, or when the parent kills it at an instant of its
own. The parent then checks what the kill left on disk
(the previous checkpoint loads and is the expected step), resumes the run from disk and compares
it with an uninterrupted run of the same config: the method's tensors, the last checkpoint
(optimiser, scaler, every RNG, trainer state), the best-k checkpoints and ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from selfsup.train.checkpoint import load_checkpoint
from selfsup.train.trainer import Trainer
from tests.train import kill_child
from tests.train.kill_child import CHECKPOINT_STEPS, TOTAL_STEPS, kill_config

METHODS = ("simclr", "moco", "mocov3", "byol", "mae", "dino", "simsiam", "barlow", "vicreg", "swav")
VOLATILE = {"img_per_s", "wall_time_s", "ran_steps"}  # per session: may differ


def _seeded(name: str) -> random.Random:
    return random.Random(f"selfsup-kill-{name}")


# Every method resumes bitwise equal: a kill in the middle of a step at a seeded random step
# (after the first checkpoint). The write paths do not depend on the method, so each is killed
# once, with SimCLR: a torn temporary file, a complete one not yet renamed (both of last.pt at a
# seeded random checkpoint step), and the best-k checkpoint written before last.pt at the end.
SCENARIOS = [
    *[
        (m, "in_step", _seeded(m).randint(CHECKPOINT_STEPS[0] + 1, TOTAL_STEPS), "last.pt")
        for m in METHODS
    ],
    ("simclr", "mid_write", _seeded("write-simclr").choice(CHECKPOINT_STEPS[1:]), "last.pt"),
    ("simclr", "before_rename", _seeded("write-moco").choice(CHECKPOINT_STEPS[1:]), "last.pt"),
    ("simclr", "before_rename", 20, "best-step20.pt"),
]
# A guard against a hung child, not a speed bound: far above a child's run on a busy machine.
HANG_GUARD_S = 900


@pytest.fixture(scope="module", autouse=True)
def _restore_determinism() -> Any:
    """These runs set train.deterministic, which switches torch globally: undo it afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture(scope="module")
def forkserver() -> Any:
    """Children forked from a server that imported torch and selfsup once (a fork, not a 5 s
    interpreter start, per kill)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.train.kill_child"])
    return context


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted run of each method, trained once per module on first use."""
    cache: dict[str, dict[str, Any]] = {}

    def get(method: str) -> dict[str, Any]:
        if method not in cache:
            run_dir = tmp_path_factory.mktemp(f"reference-{method}")
            trainer = Trainer(kill_config(method), run_dir)
            trainer.fit()
            cache[method] = _snapshot(trainer, run_dir)
        return cache[method]

    return get


def _snapshot(trainer: Trainer, run_dir: Path) -> dict[str, Any]:
    checkpoints = run_dir / "checkpoints"
    best = json.loads((checkpoints / "best.json").read_text())["checkpoints"]
    return {
        "method": {k: v.clone() for k, v in trainer.method.state_dict().items()},
        "last": _without_config(load_checkpoint(checkpoints / "last.pt")),
        "best": best,
        "best_files": {
            e["file"]: _without_config(load_checkpoint(checkpoints / e["file"])) for e in best
        },
        "metrics": _metrics(run_dir),
    }


def _without_config(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "config"}  # holds the run directory's path


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # compile records are per session too: each decides train.compile when it starts or has
    # timed its own steps
    return [
        {k: v for k, v in x.items() if k not in VOLATILE} for x in records if x["kind"] != "compile"
    ]


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Paths at which two nested checkpoints differ; tensors are compared bit for bit."""
    if isinstance(a, torch.Tensor):
        same = (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(_bits(a), _bits(b))
        )
        return [] if same else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [f"{where} (keys)"]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list | tuple):
        if not isinstance(b, list | tuple) or len(a) != len(b):
            return [f"{where} (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}/{i}")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def _assert_same_run(expected: dict[str, Any], trainer: Trainer, run_dir: Path) -> None:
    got = _snapshot(trainer, run_dir)
    assert trainer.step == TOTAL_STEPS
    assert _differences(expected["method"], got["method"]) == []
    assert _differences(expected["last"], got["last"]) == []  # optimiser, RNGs, trainer state
    assert "online_probe" in got["last"]  # the online linear probe (digits have labels) too
    assert got["best"] == expected["best"]
    assert _differences(expected["best_files"], got["best_files"]) == []
    assert got["metrics"] == expected["metrics"]  # same steps, same losses, no line twice
    leftovers = [p.name for p in run_dir.rglob("*.tmp")]
    assert leftovers == []  # the temporary files of the killed write were removed


def _start(forkserver: Any, run_dir: Path, method: str, point: str, step: int, target: str) -> Any:
    child = forkserver.Process(
        target=kill_child.run,
        args=(str(run_dir), method, point, step, target),
        kwargs={
            "threads": torch.get_num_threads(),
            "matmul_precision": torch.get_float32_matmul_precision(),
        },
    )
    child.start()
    return child


@pytest.mark.parametrize(
    ("method", "point", "step", "target"),
    SCENARIOS,
    ids=[f"{m}-{p}-{t.removesuffix('.pt')}-step{s}" for m, p, s, t in SCENARIOS],
)
def test_a_killed_run_resumes_bitwise(forkserver, reference, tmp_path, method, point, step, target):
    expected = reference(method)
    run_dir = tmp_path / "run"
    child = _start(forkserver, run_dir, method, point, step, target)
    child.join(timeout=HANG_GUARD_S)
    assert child.exitcode == -signal.SIGKILL, (
        f"the child should die by SIGKILL, got {child.exitcode}"
    )

    # What the kill left: the newest checkpoint before the kill, complete and loadable.
    checkpoints = run_dir / "checkpoints"
    saved = max(s for s in CHECKPOINT_STEPS if s < step)
    assert load_checkpoint(checkpoints / "last.pt")["step"] == saved
    temporary = list(checkpoints.glob(f".{target}.*.tmp"))
    if point in ("mid_write", "before_rename"):
        assert len(temporary) == 1  # the kill hit the write it was meant to hit
    if target.startswith("best-"):
        assert not (checkpoints / target).exists()
        index = checkpoints / "best.json"
        best = json.loads(index.read_text())["checkpoints"] if index.exists() else []
        assert all(e["step"] < step for e in best)

    resumed = Trainer(kill_config(method), run_dir)
    resumed.fit(resume=True)
    _assert_same_run(expected, resumed, run_dir)


def test_a_run_killed_at_an_instant_the_parent_picks_resumes_bitwise(
    forkserver, reference, tmp_path
):
    """The parent sends SIGKILL as soon as step 8 is logged: the child may be anywhere (in a
    step, writing metrics, writing the checkpoint of step 9). The child waits at step
    ``kill_child.STALL_STEP``, so a slow parent still kills it before the run ends."""
    expected = reference("simclr")
    run_dir = tmp_path / "run"
    child = _start(forkserver, run_dir, "simclr", "none", 0, "last.pt")
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + HANG_GUARD_S
    while child.is_alive() and time.monotonic() < deadline:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if any('"kind": "train", "step": 8,' in line for line in lines):
            os.kill(child.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    child.join(timeout=HANG_GUARD_S)
    assert child.exitcode == -signal.SIGKILL, "the run ended before the parent could kill it"

    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] >= 6
    resumed = Trainer(kill_config("simclr"), run_dir)
    resumed.fit(resume=True)
    _assert_same_run(expected, resumed, run_dir)
