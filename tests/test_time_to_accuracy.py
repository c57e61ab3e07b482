"""`selfsup bench --time-to-accuracy`: the schedule sized to a budget, the clock that excludes
evaluations, the marks, the table and figure; and train.total_steps, which it relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selfsup import build
from selfsup.bench import time_to_accuracy as tta
from selfsup.bench.time_to_accuracy import MarkClock, MarkResult, TimedRun
from selfsup.bench.time_to_accuracy_report import format_time_to_accuracy, plot_time_to_accuracy
from selfsup.cli import main
from selfsup.eval.run import evaluate_run
from selfsup.train.trainer import Trainer
from tests.conftest import TINY_CLI_OVERRIDES, tiny_config


def test_planned_steps_and_default_marks() -> None:
    # 0.85 * 60 s * 100 img/s / 10 per step = 510 steps
    assert tta.planned_steps_for(60, 100, 10) == 510
    assert tta.planned_steps_for(0.001, 1, 256) == 1  # at least one step
    with pytest.raises(ValueError, match="positive"):
        tta.planned_steps_for(0, 100, 10)
    assert tta.default_marks(10) == [0, 1, 2, 5, 10]
    assert tta.default_marks(3) == [0, 1, 2, 3]
    assert tta.default_marks(0.5) == [0, 0.5]


class _FakeTrainer:
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.step = 0
        self.stopped_at: int | None = None

    def stop_after_step(self) -> None:
        self.stopped_at = self.step


def test_mark_clock_excludes_evaluation_time_and_stops_at_the_budget(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(tta.time, "perf_counter", lambda: now[0])
    taken: list[MarkResult] = []

    def evaluate(trainer) -> float:
        now[0] += 500.0  # a slow evaluation: must not count as training time
        return 50.0 + trainer.step

    clock = MarkClock([0, 1, 2], budget_s=120, evaluate=evaluate, record=taken.append)
    trainer = _FakeTrainer()
    for step in range(1, 10):
        now[0] += 25.0  # each step trains 25 s
        trainer.step = step
        clock(trainer)  # type: ignore[arg-type]
        if trainer.stopped_at is not None:
            break
    # 1 min is passed after step 3 (75 s), 2 min after step 5 (125 s), where the run stops
    assert [(m.minutes, m.step, m.train_s) for m in taken] == [(1, 3, 75.0), (2, 5, 125.0)]
    assert [m.knn_top1 for m in taken] == [53.0, 55.0]
    assert all(m.eval_s == 500.0 for m in taken)
    assert trainer.stopped_at == 5
    assert clock.elapsed() == 125.0


def test_total_steps_sizes_every_schedule_and_ends_with_a_partial_epoch(tmp_path) -> None:
    # digits: 1437 training images at batch 64 = 22 steps per epoch; 30 steps = 1.36 epochs
    cfg = tiny_config("train.epochs=50", "train.total_steps=30", "optim.warmup_epochs=0.5")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.total_steps == trainer.last_step == 30
    assert len(trainer.lr_schedule) == 30
    assert trainer.lr_schedule[-1] == pytest.approx(cfg.optim.final_lr, abs=1e-3)
    result = trainer.fit()
    assert result.steps == 30
    records = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records if r["kind"] == "epoch"] == [22, 30]
    assert records[0]["total_steps"] == 30


def test_a_budgeted_run_measures_the_marks_and_the_saved_encoder(tmp_path) -> None:
    cfg = tiny_config("train.epochs=1000")  # the budget, not the epochs, sets the length
    data = build.train_dataset(cfg)
    splits = tta.labelled_splits(cfg)
    run = tta.run_time_to_accuracy(
        cfg, "tiny", 0.02, tmp_path / "run", [0, 0.01, 0.02], data, splits, linear=True
    )
    assert [m.minutes for m in run.marks] == [0, 0.01, 0.02]
    assert run.marks[0].step == 0 and run.marks[0].train_s == 0
    assert run.marks[-1].train_s >= 0.01 * 60  # taken at or past its mark
    assert run.final_planned_steps is not None and 0 < run.steps <= run.final_planned_steps
    # each re-planning is recorded, and the last one is the schedule the run followed
    assert all(total > step for _, step, total in run.fits)
    assert [total for _, _, total in run.fits][-1:] in ([], [run.final_planned_steps])
    assert TimedRun.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    assert all(0 <= m.knn_top1 <= 100 for m in run.marks)
    # the last mark is the encoder the run saved, measured as `selfsup eval knn` measures it
    (row,) = evaluate_run(tmp_path / "run", ("knn",), baselines=False, cache=False)
    assert row.knn is not None
    assert run.marks[-1].step == run.steps
    assert 100 * row.knn == pytest.approx(run.marks[-1].knn_top1, abs=1e-6)
    # the linear probe at the end is `selfsup eval linear` on the saved encoder
    (probe,) = evaluate_run(tmp_path / "run", ("linear",), baselines=False, cache=False)
    assert probe.linear is not None and run.linear_s is not None
    assert run.linear_top1 == pytest.approx(100 * probe.linear, abs=1e-6)
    # the run's own throughput is kept beside the calibrated one
    assert run.batch_size == cfg.train.batch_size and run.run_img_per_s is not None
    assert run.run_img_per_s == pytest.approx(run.steps * run.batch_size / run.train_s)


def _run(name: str, seed: int, points: list[tuple[float, float]]) -> TimedRun:
    run = TimedRun(name, seed, 2.0, 500.0, 3.0, 100, 50, steps=100, machine="test CPU")
    run.marks = [MarkResult(m, 60 * m, int(50 * m), acc, 10.0) for m, acc in points]
    return run


def test_table_reports_the_mean_and_half_spread_over_seeds_and_the_figure_is_written(
    tmp_path,
) -> None:
    runs = [
        _run("simclr", 0, [(0, 70.0), (1, 80.0), (2, 84.0)]),
        _run("simclr", 1, [(0, 72.0), (1, 81.0), (2, 86.0)]),
        _run("byol", 0, [(0, 69.0), (2, 82.5)]),
    ]
    table = format_time_to_accuracy(runs, pixels_knn=85.7)
    lines = table.splitlines()
    assert lines[0].startswith("| preset | seeds | random init | 1 min | 2 min |")
    assert "| simclr | 0,1 | 71.00 ± 1.00 | 80.50 ± 0.50 | 85.00 ± 1.00 | 500 |" in table
    assert "| byol | 0 | 69.00 |  | 82.50 |" in table
    assert "test CPU" in table and "85.70%" in table
    png = plot_time_to_accuracy(runs, tmp_path / "fig/tta.png", pixels_knn=85.7)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_has_the_final_linear_probe_when_measured() -> None:
    runs = [_run("simclr", 0, [(0, 70.0), (2, 84.0)]), _run("simclr", 1, [(0, 72.0), (2, 86.0)])]
    runs[0].linear_top1, runs[1].linear_top1 = 85.0, 86.0
    table = format_time_to_accuracy(runs, pixels_knn=85.7, pixels_linear=84.45)
    assert table.splitlines()[0].startswith(
        "| preset | seeds | random init | 2 min | linear (end) |"
    )
    assert "| simclr | 0,1 | 71.00 ± 1.00 | 85.00 ± 1.00 | 85.50 ± 0.50 | 500 |" in table
    assert "raw pixels 84.45%" in table
    assert "linear" not in format_time_to_accuracy(runs[:0] or [_run("a", 0, [(0, 1.0)])])


def test_table_shows_the_runs_own_throughput_beside_the_calibrated_one() -> None:
    runs = [_run("simclr", 0, [(0, 70.0), (2, 84.0)]), _run("simclr", 1, [(0, 72.0), (2, 86.0)])]
    for run, seconds in zip(runs, (100.0, 125.0)):  # 100 steps of 500 images: 500 and 400 img/s
        run.batch_size, run.train_s = 500, seconds
    assert runs[0].run_img_per_s == pytest.approx(500.0)
    table = format_time_to_accuracy(runs)
    assert "img/s calibrated → run" in table.splitlines()[0]
    assert "| 85.00 ± 1.00 | 500 → 450 |" in table
    old = _run("byol", 0, [(0, 69.0)])  # a record from before the batch size was kept
    assert old.run_img_per_s is None
    assert "| 69.00 | 500 | 100 (2.00) |" in format_time_to_accuracy([old])
    # a preset whose seeds mix old and new records shows only the calibrated mean
    mixed = [runs[0], _run("simclr", 2, [(0, 71.0), (2, 85.0)])]
    assert "| 500 | 100 (2.00) |" in format_time_to_accuracy(mixed)
    # a record read back from --json keeps both
    again = TimedRun.from_dict(runs[0].to_dict())
    assert again.batch_size == 500 and again.run_img_per_s == pytest.approx(500.0)


def test_cli_time_to_accuracy_writes_table_json_and_png(tmp_path, capsys) -> None:
    results = tmp_path / "RESULTS.md"
    args = [
        "bench",
        "--time-to-accuracy",
        "0.01",
        "--marks",
        "0,0.01",
        "--seeds",
        "0,1",
        "--write",
        str(results),
        "--json",
        str(tmp_path / "runs.jsonl"),
        "--runs-dir",
        str(tmp_path / "runs"),
        *_TINY,
    ]
    assert main(args) == 0
    text = results.read_text()
    assert "| demo | 0,1 |" in text and "time_to_accuracy.png" in text
    assert (tmp_path / "time_to_accuracy.png").exists()
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["run"]["seed"] for line in lines] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo-seed0", "demo-seed1"]
    # the recorded runs draw the same table again without training
    table = text[text.index("| preset |") : text.index("Machine:")]
    replotted = tmp_path / "again.md"
    replot = ["bench", "--replot", str(tmp_path / "runs.jsonl"), "--write", str(replotted)]
    assert main([*replot, *_TINY]) == 0
    assert table in replotted.read_text()


_TINY = [*TINY_CLI_OVERRIDES, "train.batch_size=64", "train.progress=false"]


def test_cli_refuses_bad_time_to_accuracy_arguments(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--time-to-accuracy", "1", "--marks", "0,-1"])
    assert exc.value.code == 2
    assert ">= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="several -c configs only"):
        main(["bench", "-c", "a.yaml", "-c", "b.yaml"])
    with pytest.raises(ValueError, match="marks must lie in"):
        tta.run_time_to_accuracy(tiny_config(), "x", 1.0, tmp_path / "r", [0, 2])


def test_schedule_lengths_agree_for_total_steps() -> None:
    cfg = tiny_config("train.total_steps=7")
    assert cfg.train.planned_steps(22) == 7 and cfg.train.planned_epochs(22) == 1
    cfg = tiny_config("train.epochs=3")
    assert cfg.train.planned_steps(22) == 66 and cfg.train.planned_epochs(22) == 3
    assert np.isclose(cfg.train.planned_steps(22) / 22, 3)
