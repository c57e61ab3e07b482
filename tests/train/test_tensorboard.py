"""Training mirrors metrics.jsonl into TensorBoard event files, and a resume purges the events
after its checkpoint like it cuts metrics.jsonl back."""

from __future__ import annotations

import pytest

from selfsup.train.trainer import Trainer
from tests.conftest import tiny_config

pytest.importorskip("tensorboard", reason="the tensorboard package is an optional extra")


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {
        # by step: several event files (one per session) may be read in any order
        tag: sorted((e.step, e.value) for e in events.Scalars(tag))
        for tag in events.Tags()["scalars"]
    }


def test_training_writes_event_files_and_resume_purges_replayed_steps(tmp_path):
    run = tmp_path / "run"
    cfg = ("train.tensorboard=true", "train.epochs=2", "data.subset=256", "train.log_every=2")
    Trainer(tiny_config(*cfg, "train.max_steps=6"), run).fit()
    first = _scalars(run)
    assert [s for s, _ in first["train/loss"]] == [2, 4, 6]
    assert "epoch/mean_loss" in first and "train/lr" in first
    Trainer(tiny_config(*cfg), run).fit(resume=True)  # 8 steps in all: 7 and 8 are new
    assert [s for s, _ in _scalars(run)["train/loss"]] == [2, 4, 6, 8]  # none lost or twice


def test_steps_replayed_after_a_resume_are_not_logged_twice(tmp_path):
    """As after a kill: events were written past the checkpoint the run resumes from."""
    run = tmp_path / "run"
    cfg = ("train.tensorboard=true", "train.epochs=2", "data.subset=256", "train.log_every=1")
    Trainer(tiny_config(*cfg, "train.max_steps=4"), run).fit()
    at_step_4 = (run / "checkpoints" / "last.pt").read_bytes()
    Trainer(tiny_config(*cfg, "train.max_steps=6"), run).fit(resume=True)  # events 5 and 6
    (run / "checkpoints" / "last.pt").write_bytes(at_step_4)  # back to step 4: 5, 6 replay
    Trainer(tiny_config(*cfg), run).fit(resume=True)
    assert [s for s, _ in _scalars(run)["train/loss"]] == [1, 2, 3, 4, 5, 6, 7, 8]
    # the resumed writer marks steps >= 5 as purged (TensorBoard's restart marker)
    assert 5 in _session_starts(run)


def _session_starts(run_dir) -> list[int]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    steps = []
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                steps.append(event.step)
    return steps


def test_tensorboard_off_writes_nothing(tmp_path):
    Trainer(tiny_config("train.max_steps=2"), tmp_path / "run").fit()
    assert not (tmp_path / "run" / "tensorboard").exists()
