"""Which curves a report draws from metrics records, and how runs overlay."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from selfsup.config import Config
from selfsup.report.curves import collect_curves, plot_curve
from selfsup.report.runs import RunRecords, read_run, run_labels
from selfsup.train.run_dir import RunStatus

Image = pytest.importorskip("PIL.Image")


def _run(label: str, train: list[dict], epoch: list[dict]) -> RunRecords:
    status = RunStatus(True, True, 10, 10)
    return RunRecords(Path(label), label, Config(), status, train=train, epoch=epoch)


def _train(step: int, **values: float) -> dict:
    return {"kind": "train", "step": step, "epoch": 1, **values}


def test_only_logged_values_are_drawn_known_ones_first():
    run = _run(
        "a",
        [_train(s, loss=5.0 - s, lr=0.1, img_per_s=100.0, zeta=1.0) for s in (1, 2)],
        [{"kind": "epoch", "step": 2, "epoch": 1, "loss": 3.0, "mean_loss": 3.5, "knn_top1": 0.5}],
    )
    keys = [c.key for c in collect_curves([run])]
    assert keys == ["loss", "mean_loss", "lr", "img_per_s", "knn_top1", "zeta"]
    assert "linear_top1" not in keys and "rankme" not in keys  # absent: no figure


def test_an_epoch_copy_of_a_method_log_is_not_drawn_twice():
    train = [_train(s, loss=1.0, momentum=0.9 + s / 100) for s in (5, 10)]
    epoch = [{"kind": "epoch", "step": 10, "epoch": 1, "mean_loss": 1.0, "momentum": 1.0}]
    epoch[0]["momentum"] = train[1]["momentum"]  # the trainer copies the last logs
    momentum = next(c for c in collect_curves([_run("a", train, epoch)]) if c.key == "momentum")
    assert [(s.label, s.dots) for s in momentum.series] == [("a", False)]


def test_an_epoch_metric_that_differs_is_drawn_as_dots_on_the_train_figure():
    train = [_train(s, loss=1.0, embedding_std=0.2) for s in (5, 10)]
    epoch = [
        {"kind": "epoch", "step": 10, "epoch": 1, "embedding_std": 0.05, "rankme": 3.0},
        {"kind": "epoch", "step": 20, "epoch": 2, "embedding_std": 0.04, "rankme": 2.0},
    ]
    curves = {c.key: c for c in collect_curves([_run("a", train, epoch)])}
    std = curves["embedding_std"].series
    assert [(s.label, s.dots, s.values) for s in std] == [
        ("a", False, [0.2, 0.2]),
        ("a (per epoch)", True, [0.05, 0.04]),
    ]
    assert curves["rankme"].series[0].steps == [10.0, 20.0]  # against the step, like the rest


def test_runs_overlay_and_a_run_without_the_value_is_left_out():
    a = _run("a", [_train(1, loss=2.0, teacher_entropy=4.0)], [])
    b = _run("b", [_train(1, loss=1.0), _train(2, loss=float("nan"))], [])
    curves = {c.key: c for c in collect_curves([a, b])}
    assert [s.label for s in curves["loss"].series] == ["a", "b"]
    assert math.isnan(curves["loss"].series[1].values[1])  # a NaN loss is a gap, kept
    assert [s.label for s in curves["teacher_entropy"].series] == ["a"]


def test_non_numbers_and_bools_are_not_curves():
    run = _run("a", [_train(1, loss=1.0, note="x", flag=True, big=float("inf"))], [])  # type: ignore[arg-type]
    assert [c.key for c in collect_curves([run])] == ["loss"]


def test_plot_writes_a_png_with_a_legend_for_several_runs(tmp_path):
    a = _run("a", [_train(s, knn_top1=0.1 * s) for s in (1, 2, 3)], [])
    b = _run("b", [_train(s, knn_top1=0.2 * s) for s in (1, 2, 3)], [])
    (curve,) = collect_curves([a, b])
    assert curve.percent
    path = plot_curve(curve, tmp_path / "x" / "knn.png")
    assert Image.open(path).format == "PNG"


def test_torn_lines_are_skipped_and_labels_tell_same_named_runs_apart(tmp_path):
    run = tmp_path / "x" / "fm"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(Config().to_yaml())
    lines = [
        '{"kind": "setup", "step": 0, "total_steps": 4}',
        '{"kind": "train", "step": 1, "loss": 2.0}',
        '{"kind": "tra',
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines))
    records = read_run(run)
    assert records.setup["total_steps"] == 4 and len(records.train) == 1 and records.eval is None
    assert run_labels([tmp_path / "x" / "fm", tmp_path / "y" / "fm"]) == ["x/fm", "y/fm"]
    assert run_labels([tmp_path / "x" / "fm", tmp_path / "y" / "other"]) == ["fm", "other"]
