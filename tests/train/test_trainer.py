import json

import pytest
import torch

from selfsup.methods.upgrade import CHECKPOINT_FORMAT
from selfsup.train.checkpoint import CheckpointError, load_checkpoint
from selfsup.train.trainer import NonFiniteLossError, Trainer, resolve_precision
from tests.conftest import METHOD_OVERRIDES, tiny_config


def _train_lines(run_dir):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "train"]


def test_run_directory_holds_config_metrics_checkpoint_and_encoder(tmp_path, tiny):
    result = Trainer(tiny, tmp_path / "run").fit()
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "encoder.safetensors").is_file() and (run / "encoder.json").is_file()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    setup = lines[0]
    assert setup["kind"] == "setup" and "lr_rule" in setup and setup["global_batch_size"] == 64
    train = _train_lines(run)
    assert [x["step"] for x in train] == list(range(1, result.steps + 1))
    assert all({"loss", "lr", "img_per_s", "embedding_std"} <= set(x) for x in train)
    assert result.steps == 1437 // 64


def test_lr_follows_the_precomputed_warmup_cosine_schedule(tmp_path):
    cfg = tiny_config("optim.warmup_epochs=0.5", "optim.lr_scaling=linear")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    lrs = [x["lr"] for x in _train_lines(tmp_path / "run")]
    peak = 0.1 * 64 / 256
    assert trainer.peak_lr == pytest.approx(peak)
    assert lrs == pytest.approx([float(v) for v in trainer.lr_schedule[: len(lrs)]])
    assert max(lrs) == pytest.approx(peak, rel=0.1) and lrs[0] < lrs[5]


@pytest.mark.parametrize(
    "method",
    ["moco", "simsiam", "barlow", "vicreg", "swav", "rotation", "jigsaw", "colorization"],
)
def test_resume_continues_the_same_run_bitwise(tmp_path, method):
    """A run stopped by max_steps and continued is the same run (queue + pointer, EMA target,
    colour prior, schedules, RNGs). Every method, killed at any instant:
    tests/train/test_kill_resume.py."""
    extra = METHOD_OVERRIDES[method]
    straight = Trainer(tiny_config("train.epochs=2", *extra), tmp_path / "a")
    straight.fit()

    first = Trainer(tiny_config("train.epochs=2", "train.max_steps=30", *extra), tmp_path / "b")
    first.fit()  # interrupted mid-epoch 2 (22 steps per epoch)
    assert first.step == 30
    second = Trainer(tiny_config("train.epochs=2", *extra), tmp_path / "b")
    second.fit(resume=True)

    assert second.step == straight.step
    a, b = straight.method.state_dict(), second.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # metrics continue without a jump: same steps, same losses as the uninterrupted run
    la, lb = _train_lines(tmp_path / "a"), _train_lines(tmp_path / "b")
    assert [x["step"] for x in lb] == [x["step"] for x in la]
    assert [x["loss"] for x in lb] == [x["loss"] for x in la]


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    cfg = tiny_config("train.epochs=2", "train.checkpoint_every=1")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()  # a good checkpoint at the end of epoch 2
    good = torch.load(trainer.checkpoint_path, weights_only=True)["step"]

    cfg = tiny_config("train.epochs=4")
    again = Trainer(cfg, tmp_path / "run")
    original = again.method.training_step

    def poisoned(views):
        out = original(views)
        out.loss = out.loss * float("nan")
        return out

    again.method.training_step = poisoned  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        again.fit(resume=True)
    assert torch.load(trainer.checkpoint_path, weights_only=True)["step"] == good


def test_batch_larger_than_the_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="larger than the training set"):
        Trainer(tiny_config("train.batch_size=4096"), tmp_path / "run")


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        resolve_precision("fp16", cpu)


def test_weight_decay_follows_its_cosine_schedule_on_decaying_groups_only(tmp_path):
    cfg = tiny_config(
        "optim.weight_decay=0.04", "optim.final_weight_decay=0.4", "train.max_steps=5"
    )
    trainer = Trainer(cfg, tmp_path / "run")
    seen: list[list[float]] = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append([g["weight_decay"] for g in trainer.optimizer.param_groups])
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step  # type: ignore[method-assign]
    trainer.fit()
    schedule = trainer.wd_schedule
    assert schedule is not None and schedule[0] == pytest.approx(0.04)
    assert schedule[-1] == pytest.approx(0.4)
    for k, decays in enumerate(seen):
        assert decays == pytest.approx([float(schedule[k]), 0.0])  # bias/norm group stays at 0


def test_compiled_training_step_trains_the_same_state_as_eager(tmp_path):
    """train.compile wraps the forward only; the eager backend keeps the arithmetic, so the
    runs match exactly (inductor reorders float ops and is measured in bench, not here)."""
    eager = Trainer(tiny_config("train.max_steps=3"), tmp_path / "a")
    eager.fit()
    compiled = Trainer(
        tiny_config("train.max_steps=3", "train.compile=true", "train.compile_backend=eager"),
        tmp_path / "b",
    )
    assert compiled.train_step.compiled_step is not None and eager.train_step.compiled_step is None
    compiled.fit()
    a, b = eager.method.state_dict(), compiled.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_brings_the_method_state_through_the_checkpoint_upgrade(tmp_path, monkeypatch):
    trainer = Trainer(tiny_config("train.max_steps=2"), tmp_path / "run")
    trainer.fit()
    assert load_checkpoint(trainer.checkpoint_path)["format"] == CHECKPOINT_FORMAT
    seen: list[tuple[str, str, list[str]]] = []

    def upgrade(method: str, state: dict, checkpoint_format: str) -> dict:
        seen.append((method, checkpoint_format, sorted(state)))
        return state

    monkeypatch.setattr("selfsup.train.run_state.upgrade_method_state", upgrade)
    resumed = Trainer(tiny_config("train.max_steps=3"), tmp_path / "run")
    resumed.fit(resume=True)
    assert seen == [("simclr", CHECKPOINT_FORMAT, sorted(resumed.method.state_dict()))]

    def refuse(method: str, state: dict, checkpoint_format: str) -> dict:
        raise ValueError("a checkpoint of selfsup-checkpoint/0 cannot resume; start the run again")

    monkeypatch.setattr("selfsup.train.run_state.upgrade_method_state", refuse)
    with pytest.raises(CheckpointError) as info:
        Trainer(tiny_config("train.max_steps=4"), tmp_path / "run").fit(resume=True)
    assert str(info.value) == (
        "a checkpoint of selfsup-checkpoint/0 cannot resume; start the run again"
    )
