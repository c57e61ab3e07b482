"""A run directory written by selfsup 0.1 (checkpoint format 1) resumes as the same run."""

from __future__ import annotations

import json

import torch

from selfsup.train.checkpoint import load_checkpoint, save_checkpoint
from selfsup.train.trainer import Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config


def _as_format_1(state: dict) -> dict:
    """The method state in selfsup 0.1's names: DINO's teacher copy, its momentum, loss_fn."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("target.module.", "teacher.").replace("criterion.", "loss_fn.")
        renamed[key.replace("target.momentum", "teacher_momentum")] = value
    return renamed


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def test_a_format_1_dino_checkpoint_resumes_bitwise(tmp_path):
    extra = METHOD_OVERRIDES["dino"]
    straight = Trainer(tiny_config("train.epochs=2", *extra), tmp_path / "a")
    straight.fit()

    first = Trainer(tiny_config("train.epochs=2", "train.max_steps=30", *extra), tmp_path / "b")
    first.fit()
    path = tmp_path / "b" / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    state["format"] = "selfsup-checkpoint/1"
    state["method"] = _as_format_1(state["method"])
    assert any(k.startswith("teacher.") for k in state["method"])
    save_checkpoint(path, state)

    second = Trainer(tiny_config("train.epochs=2", *extra), tmp_path / "b")
    second.fit(resume=True)
    a, b = straight.method.state_dict(), second.method.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")
