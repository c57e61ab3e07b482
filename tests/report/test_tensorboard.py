"""--tensorboard: metrics.jsonl as event files in RUN/tensorboard, or one line naming the
install command."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from selfsup.cli import main
from selfsup.report import read_run, write_tensorboard


def test_missing_package_is_one_line_naming_pip_install(run_a, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard fails
    out = tmp_path / "rep"
    assert main(["report", str(run_a), "--tensorboard", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install tensorboard" in err and len(err.splitlines()) == 1
    assert not out.exists() and not (run_a / "tensorboard").exists()


def test_events_hold_every_logged_value_once(run_a, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    shutil.copytree(run_a, run, ignore=shutil.ignore_patterns("report"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for _ in range(2):  # converting again replaces the events, it does not add to them
        out = write_tensorboard(read_run(run))
    assert out == run / "tensorboard" and len(list(out.glob("events.out.tfevents.*"))) == 1
    events = accumulator.EventAccumulator(str(out))
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    expected = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    assert [s for s, _ in loss] == [s for s, _ in expected]
    assert [v for _, v in loss] == pytest.approx([v for _, v in expected], rel=1e-6)
    knn = [(e.step, e.value) for e in events.Scalars("epoch/knn_top1")]
    assert knn == [
        (r["step"], pytest.approx(r["knn_top1"], rel=1e-6)) for r in records if r["kind"] == "epoch"
    ]
    assert "train/lr" in events.Tags()["scalars"] and "epoch/mean_loss" in events.Tags()["scalars"]
