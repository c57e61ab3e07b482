"""What a run guarantees besides SIGKILL (that is test_kill_resume.py): best-k checkpoints,
NaN/inf losses (stop or skip), full disks and unwritable run directories, Ctrl-C, and resuming at
the same position in the data. Tiny SimCLR/MoCo runs: 160 digits, batches of 16, 10 steps an
epoch."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from selfsup.methods import Progress
from selfsup.train.checkpoint import BestCheckpoints, CheckpointError, load_checkpoint
from selfsup.train.trainer import MAX_CONSECUTIVE_SKIPS, NonFiniteLossError, Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config

STEPS_PER_EPOCH = 10


def small(*overrides: str) -> Any:
    return tiny_config(
        "data.subset=160", "train.batch_size=16", "train.epochs=2", "train.keep_best=0", *overrides
    )


def _records(run_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if kind is None or x["kind"] == kind]


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.method.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _poison_loss(trainer: Trainer, steps: set[int]) -> None:
    """Make the loss NaN at these steps (numbered like metrics.jsonl: 1 = the first step)."""
    training_step = trainer.method.training_step

    def poisoned(views: list[torch.Tensor]) -> Any:
        out = training_step(views)
        if trainer.step + 1 in steps:
            out.loss = out.loss * float("nan")
        return out

    trainer.method.training_step = poisoned  # type: ignore[method-assign]


# -- best-k checkpoints ---------------------------------------------------------------------------
def test_best_checkpoints_keep_the_k_best_and_delete_the_rest(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"last")
    (tmp_path / "notes.txt").write_text("mine")
    best = BestCheckpoints(tmp_path, k=2, metric="knn_top1", higher_is_better=True)
    kept = [
        best.offer(step, 1, value, {"step": step})
        for step, value in [
            (10, 0.5),
            (20, 0.7),
            (30, 0.6),
            (40, 0.7),
            (50, 0.1),
            (60, float("nan")),
        ]
    ]
    assert kept == [True, True, True, True, False, False]
    # 0.7 at step 20 and 0.7 at step 40 (a tie keeps the earlier step first)
    assert [(e["step"], e["value"]) for e in best.entries()] == [(20, 0.7), (40, 0.7)]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best-step20.pt", "best-step40.pt", "best.json", "last.pt", "notes.txt"]
    assert load_checkpoint(tmp_path / "best-step40.pt") == {"step": 40}
    assert (tmp_path / "last.pt").read_bytes() == b"last"


def test_best_checkpoints_by_loss_replay_truncate_and_clear(tmp_path):
    best = BestCheckpoints(tmp_path, k=2, metric="mean_loss", higher_is_better=False)
    for step, value in [(10, 3.0), (20, 2.0), (30, 2.5)]:
        best.offer(step, step // 10, value, {"step": step})
    assert [e["step"] for e in best.entries()] == [20, 30]  # lowest loss first
    # A kill after writing a file but before the index leaves it unlisted: the next update
    # deletes it. Offering a listed step again (a resumed run replaying it) replaces its entry.
    (tmp_path / "best-step35.pt").write_bytes(b"orphan")
    best.offer(30, 3, 2.5, {"step": 30})
    assert sorted(p.name for p in tmp_path.glob("best-*")) == ["best-step20.pt", "best-step30.pt"]
    best.truncate(25)  # resuming at step 25 forgets what came after it
    assert [e["step"] for e in best.entries()] == [20]
    assert not (tmp_path / "best-step30.pt").exists()
    best.clear()
    assert list(tmp_path.iterdir()) == []


def test_best_index_of_another_metric_is_replaced_with_a_warning(tmp_path):
    BestCheckpoints(tmp_path, 1, "mean_loss", False).offer(10, 1, 2.0, {"step": 10})
    by_knn = BestCheckpoints(tmp_path, 1, "knn_top1", True)
    with pytest.warns(UserWarning, match="ranks checkpoints by 'mean_loss'"):
        by_knn.offer(20, 2, 0.5, {"step": 20})
    assert [p.name for p in sorted(tmp_path.glob("best-*"))] == ["best-step20.pt"]


def test_trainer_keeps_last_and_the_best_epochs_by_mean_loss(tmp_path):
    trainer = Trainer(small("train.epochs=4", "train.keep_best=2"), tmp_path / "run")
    trainer.fit()
    epochs = _records(tmp_path / "run", "epoch")
    assert [e["step"] for e in epochs] == [10, 20, 30, 40]
    train = _records(tmp_path / "run", "train")
    for e in epochs:  # mean of the epoch's ten losses
        losses = [x["loss"] for x in train if e["step"] - 10 < x["step"] <= e["step"]]
        assert e["mean_loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)
    lowest = sorted(epochs, key=lambda e: e["mean_loss"])[:2]
    checkpoints = tmp_path / "run" / "checkpoints"
    index = json.loads((checkpoints / "best.json").read_text())
    assert index["metric"] == "mean_loss" and not index["higher_is_better"]
    assert [e["step"] for e in index["checkpoints"]] == [e["step"] for e in lowest]
    assert sorted(p.name for p in checkpoints.iterdir()) == sorted(
        ["last.pt", "best.json", *(f"best-step{e['step']}.pt" for e in lowest)]
    )
    for e in lowest:
        assert load_checkpoint(checkpoints / f"best-step{e['step']}.pt")["step"] == e["step"]
    assert load_checkpoint(checkpoints / "last.pt")["step"] == 40


def test_trainer_ranks_best_checkpoints_by_online_knn_when_it_runs(tmp_path):
    cfg = small("train.epochs=3", "train.keep_best=1", "train.knn_every=1")
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.fit()
    epochs = _records(tmp_path / "run", "epoch")
    top = max(epochs, key=lambda e: (e["knn_top1"], -e["step"]))
    index = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert index["metric"] == "knn_top1"
    assert index["checkpoints"] == [
        {
            "file": f"best-step{top['step']}.pt",
            "step": top["step"],
            "epoch": top["epoch"],
            "value": top["knn_top1"],
        }
    ]
    assert result.knn_accuracy == epochs[-1]["knn_top1"]


def test_keep_best_zero_writes_last_only(tmp_path):
    Trainer(small(), tmp_path / "run").fit()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["last.pt"]


# -- NaN / inf --------------------------------------------------------------------------------------
def test_stop_names_the_step_and_causes_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = small("train.log_every=5", "train.checkpoint_every_steps=3")
    trainer = Trainer(cfg, tmp_path / "run")
    _poison_loss(trainer, {7})
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "loss became NaN/inf at step 7" in message  # the exact step, found at step 9's save
    assert f"lr {float(trainer.lr_schedule[6]):.3g}" in message and "precision fp32" in message
    assert "optim.base_lr" in message and "simclr.temperature=0.5" in message
    assert "fp16" in message and "train.on_nonfinite=skip" in message
    assert "last good checkpoint" in message and "step 6" in message
    last = load_checkpoint(trainer.checkpoint_path)
    assert last["step"] == 6
    assert all(torch.isfinite(v).all() for v in last["method"].values() if v.is_floating_point())
    assert [x["step"] for x in _records(tmp_path / "run", "train")] == [5]


def test_stop_never_writes_a_checkpoint_after_a_nan_between_logged_steps(tmp_path):
    """A NaN at the epoch's last step, with no metrics line in the epoch, used to reach the
    epoch-end checkpoint; now the checkpoint refuses it."""
    trainer = Trainer(small("train.log_every=100"), tmp_path / "run")
    _poison_loss(trainer, {10})
    with pytest.raises(NonFiniteLossError, match=r"at step 10.*no checkpoint had been written"):
        trainer.fit()
    assert not trainer.checkpoint_path.exists()


def test_skip_leaves_the_method_state_exactly_as_before_the_bad_step(tmp_path):
    """MoCo: parameters, BN statistics, the queue and its pointer, the key encoder all unchanged
    by the skipped step; no optimiser step and no after_step for it; the skip is logged."""
    cfg = small(*METHOD_OVERRIDES["moco"], "train.on_nonfinite=skip")
    trainer = Trainer(cfg, tmp_path / "run")
    _poison_loss(trainer, {4})
    before: dict[int, dict[str, torch.Tensor]] = {}
    training_step = trainer.method.training_step

    def recording(views: list[torch.Tensor]) -> Any:
        before[trainer.step + 1] = _state(trainer)
        return training_step(views)

    trainer.method.training_step = recording  # type: ignore[method-assign]
    hooks: list[int] = []
    after_step = trainer.method.after_step

    def counting(progress: Progress) -> None:
        hooks.append(progress.step + 1)
        after_step(progress)

    trainer.method.after_step = counting  # type: ignore[method-assign]
    result = trainer.fit()

    assert _equal(before[4], before[5])  # step 4 changed nothing
    assert not _equal(before[3], before[4]) and not _equal(before[5], before[6])
    assert 4 not in hooks and len(hooks) == 19
    assert result.steps == 20 and result.skipped_steps == 1
    skip = _records(tmp_path / "run", "skip")
    assert [(x["step"], x["reason"]) for x in skip] == [(4, "non-finite loss")]
    assert math.isnan(skip[0]["loss"])
    assert [x["skipped_steps"] for x in _records(tmp_path / "run", "train")][2:4] == [0, 1]


def test_skip_catches_nan_gradients_with_a_finite_loss(tmp_path):
    trainer = Trainer(small("train.on_nonfinite=skip", "train.max_steps=5"), tmp_path / "run")
    weight = next(trainer.method.projector.parameters())
    weight.register_hook(lambda g: g * float("nan") if trainer.step + 1 == 3 else g)
    result = trainer.fit()
    skip = _records(tmp_path / "run", "skip")
    assert [(x["step"], x["reason"]) for x in skip] == [(3, "non-finite gradients")]
    assert math.isfinite(skip[0]["loss"]) and result.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in trainer.method.parameters())


def test_skip_gives_up_after_too_many_bad_steps_in_a_row(tmp_path):
    cfg = small("train.on_nonfinite=skip", "train.epochs=4", "train.checkpoint_every_steps=5")
    trainer = Trainer(cfg, tmp_path / "run")
    _poison_loss(trainer, set(range(8, 100)))
    with pytest.raises(NonFiniteLossError, match=f"{MAX_CONSECUTIVE_SKIPS} steps in a row"):
        trainer.fit()
    assert trainer.skipped_steps == MAX_CONSECUTIVE_SKIPS
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 25  # skipped steps change nothing
    assert len(_records(tmp_path / "run", "skip")) == MAX_CONSECUTIVE_SKIPS


def test_a_run_with_skipped_steps_resumes_bitwise(tmp_path):
    straight = Trainer(small("train.on_nonfinite=skip"), tmp_path / "a")
    _poison_loss(straight, {4, 15})
    straight.fit()
    first = Trainer(small("train.on_nonfinite=skip", "train.max_steps=12"), tmp_path / "b")
    _poison_loss(first, {4, 15})
    first.fit()
    second = Trainer(small("train.on_nonfinite=skip"), tmp_path / "b")
    _poison_loss(second, {4, 15})
    result = second.fit(resume=True)
    assert result.skipped_steps == straight.skipped_steps == 2
    assert _equal(_state(straight), _state(second))
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")


def _comparable(run_dir: Path) -> list[str]:
    """metrics.jsonl without its timings, one JSON text a line (so that NaN equals NaN)."""
    volatile = ("img_per_s", "wall_time_s", "ran_steps")  # per session, like wall time
    # compile records too: each session decides train.compile=auto after timing its own steps
    return [
        json.dumps({k: v for k, v in x.items() if k not in volatile})
        for x in _records(run_dir)
        if x["kind"] != "compile"
    ]


# -- disk errors ------------------------------------------------------------------------------------
def test_disk_full_during_a_checkpoint_keeps_the_previous_one_bitwise(tmp_path, monkeypatch):
    trainer = Trainer(small("train.checkpoint_every_steps=3"), tmp_path / "run")
    real_save = torch.save
    previous: list[bytes] = []

    def full_disk(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and obj.get("step") == 6:
            previous.append(trainer.checkpoint_path.read_bytes())
            Path(f).write_bytes(b"\0" * 100)  # part of it made it to disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError) as info:
        trainer.fit()
    message = str(info.value)
    assert "\n" not in message
    assert "checkpoint of step 6 not written" in message and str(trainer.checkpoint_path) in message
    assert "No space left on device" in message and "intact" in message
    assert "free disk space" in message
    assert trainer.checkpoint_path.read_bytes() == previous[0]  # bit for bit
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 3
    assert [p.name for p in trainer.checkpoint_path.parent.iterdir()] == ["last.pt"]


def test_disk_full_while_logging_metrics_is_a_clear_error(tmp_path, monkeypatch):
    trainer = Trainer(small("train.checkpoint_every_steps=3"), tmp_path / "run")
    real_open = open

    def full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if Path(path).name == "metrics.jsonl" and mode == "a" and trainer.step >= 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("selfsup.train.metrics.open", full_disk, raising=False)
    with pytest.raises(CheckpointError, match=r"could not append to .*metrics.jsonl \(No space"):
        trainer.fit()
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 3


def _never_trains(trainer: Trainer) -> list[int]:
    calls: list[int] = []
    training_step = trainer.method.training_step

    def counting(views: list[torch.Tensor]) -> Any:
        calls.append(trainer.step)
        return training_step(views)

    trainer.method.training_step = counting  # type: ignore[method-assign]
    return calls


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_an_unwritable_run_directory_fails_before_training(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o500)
    try:
        trainer = Trainer(small(), run_dir)
        calls = _never_trains(trainer)
        with pytest.raises(CheckpointError, match=r"is not writable.*Permission denied"):
            trainer.fit()
        assert calls == []
    finally:
        run_dir.chmod(0o700)


def test_an_unwritable_run_directory_fails_before_training_simulated(tmp_path, monkeypatch):
    """The same as root, where permissions do not stop writes: creating a file is refused."""
    trainer = Trainer(small(), tmp_path / "run")
    calls = _never_trains(trainer)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(CheckpointError) as info:
        trainer.fit()
    assert str(info.value) == (
        f"run directory {tmp_path / 'run'} is not writable (Permission denied); fix its "
        "permissions or choose another one (run_dir=PATH, or --run-dir)"
    )
    assert calls == [] and not (tmp_path / "run" / "metrics.jsonl").exists()


# -- Ctrl-C -----------------------------------------------------------------------------------------
def _interrupt_at(trainer: Trainer, step: int, times: int = 1) -> None:
    """Deliver SIGINT (what Ctrl-C sends) ``times`` times during ``after_step`` of ``step``."""
    after_step = trainer.method.after_step

    def interrupting(progress: Progress) -> None:
        if progress.step + 1 == step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
        after_step(progress)

    trainer.method.after_step = interrupting  # type: ignore[method-assign]


@pytest.fixture
def sigint_enabled():
    """Ctrl-C as in a terminal: a background job of a non-interactive shell (CI runners,
    `cmd &`) starts with SIGINT ignored, which the trainer rightly leaves ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_saves_the_current_step_and_resumes_bitwise(tmp_path, capsys, sigint_enabled):
    straight = Trainer(small("train.checkpoint_every_steps=3"), tmp_path / "a")
    straight.fit()
    handler = signal.getsignal(signal.SIGINT)
    first = Trainer(small("train.checkpoint_every_steps=3"), tmp_path / "b")
    _interrupt_at(first, 7)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    assert "checkpoint saved at step 7" in capsys.readouterr().err
    assert load_checkpoint(first.checkpoint_path)["step"] == 7
    second = Trainer(small("train.checkpoint_every_steps=3"), tmp_path / "b")
    second.fit(resume=True)
    assert _equal(_state(straight), _state(second))
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_previous_checkpoint(
    tmp_path, capsys, sigint_enabled
):
    trainer = Trainer(small("train.checkpoint_every_steps=3"), tmp_path / "run")
    _interrupt_at(trainer, 8, times=2)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 6  # not the half-done step 8
    assert "stopped at once: the last good checkpoint" in capsys.readouterr().err


# -- position in the data ---------------------------------------------------------------------------
def _recorded_batches(trainer: Trainer) -> list[torch.Tensor]:
    batches: list[torch.Tensor] = []
    make_views = trainer.method.make_views

    def recording(images: torch.Tensor, generator: Any = None) -> list[torch.Tensor]:
        batches.append(images.clone())
        return make_views(images, generator)

    trainer.method.make_views = recording  # type: ignore[method-assign]
    return batches


def test_resume_mid_epoch_continues_with_the_same_images_in_the_same_order(tmp_path):
    straight = Trainer(small(), tmp_path / "a")
    expected = _recorded_batches(straight)
    straight.fit()
    Trainer(small("train.max_steps=13"), tmp_path / "b").fit()  # stops 3 steps into epoch 2
    resumed = Trainer(small(), tmp_path / "b")
    got = _recorded_batches(resumed)
    resumed.fit(resume=True)
    assert len(got) == 7
    assert all(torch.equal(x, y) for x, y in zip(got, expected[13:]))


def test_resume_refuses_another_batch_size_or_model(tmp_path):
    Trainer(small("train.max_steps=3"), tmp_path / "run").fit()
    with pytest.raises(CheckpointError, match=r"batch_size=16.*batch_size=32.*own data"):
        Trainer(small("train.batch_size=32"), tmp_path / "run").fit(resume=True)
    # the message names the option that changed the model, with both values
    with pytest.raises(
        CheckpointError, match=r"another model.*simclr.proj_out_dim=8 \(was 16\).*resume without"
    ):
        Trainer(small("simclr.proj_out_dim=8"), tmp_path / "run").fit(resume=True)
    with pytest.raises(CheckpointError, match=r"backbone.width=0.25 \(was 0.125\)"):
        Trainer(small("backbone.width=0.25"), tmp_path / "run").fit(resume=True)


def test_resume_without_a_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="start without --resume"):
        Trainer(small(), tmp_path / "run").fit(resume=True)
