"""What a training run prints on stderr: plan, duration estimate, plain lines or the bar, the
online k-NN phase. A fake clock (one second per reading) makes the cadence deterministic."""

import re

import pytest
import torch

from selfsup import progress
from selfsup.data import TensorImageDataset
from selfsup.train import knn_monitor
from selfsup.train.progress_report import TrainProgress
from selfsup.train.trainer import Trainer
from tests.conftest import tiny_config

STEP_LINE = re.compile(
    r"step (\d+)/22 \(epoch 1/1\) loss \d+\.\d{4} lr [\d.e-]+ \d+ img/s, elapsed \S+, ETA \S+"
)


@pytest.fixture
def clock(monkeypatch):
    readings = iter(float(i) for i in range(1, 10**6))
    monkeypatch.setattr(progress, "now", lambda: next(readings))


def _fit(tmp_path, *overrides: str) -> Trainer:
    trainer = Trainer(tiny_config(*overrides), tmp_path / "run")  # digits: 22 steps of 64
    trainer.fit()
    return trainer


def test_plain_lines_at_the_cadence_when_not_a_terminal(tmp_path, clock, capsys):
    _fit(tmp_path, "train.progress=null", "train.progress_every_s=4")
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("step ")]
    assert lines and all(STEP_LINE.fullmatch(line) for line in lines), lines
    steps = [int(STEP_LINE.fullmatch(line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert 3 <= len(steps) < 22 and steps == sorted(steps) and steps[-1] == 22  # + the last step
    assert "\r" not in captured.err  # no bar
    assert "step " not in captured.out


def test_plan_and_estimate_lines_start_every_run(tmp_path, clock, capsys):
    _fit(tmp_path, "train.progress=false", "train.progress_every_s=0")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (
        "plan: simclr, resnet18 x0.125, digits (1437 images), 1 epoch x 22 steps = 22 steps, "
        "batch 64, cpu, fp32, compile: auto, decided after 10 timed steps"
    )
    assert re.fullmatch(r"estimated duration: \d+s for 22 steps at \d+ img/s", lines[1])
    # auto's decision, once, after its timed steps: off, by the row of this kind of CPU (SimCLR
    # measured no faster compiled without AMX; with AMX faster, but 11 steps cannot pay it back)
    decided = [line for line in lines if line.startswith("compile: ")]
    assert len(decided) == 1 and re.fullmatch(
        r"compile: off \(auto: (simclr ran 0\.87x as fast compiled when measured here|"
        r"11 steps would save ~\d+s, too little to pay back ~1m17s of compiling)\)",
        decided[0],
    ), decided
    assert not any(line.startswith("step ") for line in lines)  # progress_every_s=0: no lines


def test_the_loss_is_synced_only_for_a_printed_line(tmp_path, clock, monkeypatch):
    reports: list[int] = []
    original = TrainProgress.report
    monkeypatch.setattr(
        TrainProgress,
        "report",
        lambda self, step, *a: (reports.append(step), original(self, step, *a)),
    )
    _fit(tmp_path, "train.progress=false", "train.progress_every_s=0")
    assert len(reports) == 1  # the estimate; no per-step line, so no per-step sync


def test_progress_true_forces_the_bar_when_not_a_terminal(tmp_path, clock, capsys):
    _fit(tmp_path, "train.progress=true", "train.progress_every_s=1")
    err = capsys.readouterr().err
    assert "\repoch 1/1:" in err  # tqdm drew the bar on the (non-terminal) stderr
    assert not any(line.startswith("step ") for line in err.splitlines())  # the bar replaces lines


def _digits_like(n: int, name: str) -> TensorImageDataset:
    gen = torch.Generator().manual_seed(n)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=gen)
    return TensorImageDataset(images, torch.arange(n) % 10, name, 10)


def test_online_knn_uses_the_bounded_subset_and_says_so(tmp_path, monkeypatch, capsys):
    counted: list[int] = []
    original = knn_monitor.extract_features

    def counting(encoder, batches, *args, **kwargs):
        feats, labels = original(encoder, batches, *args, **kwargs)
        counted.append(len(labels))
        return feats, labels

    monkeypatch.setattr(knn_monitor, "extract_features", counting)
    cfg = tiny_config("train.knn_every=1")
    eval_sets = (_digits_like(6000, "bank"), _digits_like(2500, "queries"))
    trainer = Trainer(cfg, tmp_path / "run", eval_sets=eval_sets)
    capsys.readouterr()
    accuracy = trainer.online_knn()
    assert counted == [5000, 2000]  # the defaults, below both split sizes
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "online 20-NN (5000 bank / 2000 queries): extracting features ..."
    assert re.fullmatch(
        rf"online 20-NN \(5000 bank / 2000 queries\): top-1 {100 * accuracy:.2f}% in \d+\.\d s",
        err[-1],
    )
