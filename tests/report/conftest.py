"""Tiny finished, evaluated runs on digits, trained once for all report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfsup.eval.run import evaluate_run
from selfsup.train.trainer import Trainer
from tests.conftest import tiny_config

pytest.importorskip("matplotlib")

# Two epochs (online k-NN after each), a train record every 5 steps: 44 steps of 64 digits.
RUN = ("train.epochs=2", "train.knn_every=1", "train.log_every=5")


def train_run(path: Path, *overrides: str, evaluate: bool = True) -> Path:
    """Train a tiny run into ``path`` (and evaluate it: k-NN, linear probe, baselines)."""
    Trainer(tiny_config(*RUN, *overrides), path).fit()
    if evaluate:
        evaluate_run(path)
    return path


@pytest.fixture(scope="package")
def run_a(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("runs") / "simclr_a")


@pytest.fixture(scope="package")
def run_b(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("runs") / "simclr_b", "train.seed=1")


def snapshot(root: Path, skip: str = "report") -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file under ``root`` outside ``root / skip``."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != skip
    }
