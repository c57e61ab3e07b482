"""The epoch-end measures (selfsup/train/epoch_monitor.py): collapse metrics on the online
k-NN's features in the epoch records, their ranges, the warning for a collapsed encoder, and
their bounded cost. Tiny SimCLR runs on digits (1437 train / 360 test images), fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from selfsup import build
from selfsup.eval import features as features_module
from selfsup.train.epoch_monitor import ALIGNMENT_IMAGES, EpochMonitor
from selfsup.train.trainer import Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config

COLLAPSE_KEYS = {"feature_std", "rankme", "rankme_ratio", "uniformity", "alignment"}


def _records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == kind]


def test_epoch_records_hold_collapse_metrics_in_their_ranges(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny_config("train.epochs=2", "train.knn_every=1"), run).fit()
    epochs = _records(run, "epoch")
    assert len(epochs) == 2
    for record in epochs:
        assert COLLAPSE_KEYS | {"knn_top1", "linear_top1"} <= set(record)
        assert 0.1 < record["feature_std"] <= 1.0  # healthy: above the collapse threshold
        assert 1.0 <= record["rankme"] <= 64  # ResNet x0.125: 64 features, 360 queries
        assert record["rankme_ratio"] == pytest.approx(record["rankme"] / 64)
        assert -8.0 <= record["uniformity"] < 0.0
        assert 0.0 < record["alignment"] < 4.0
        assert "warnings" not in record  # a healthy run raises none
    err = capsys.readouterr().err
    assert "collapse metrics (360 features, 2 x 256 views), epoch 2: feature std" in err


def test_a_constant_encoder_gets_the_complete_collapse_warning(tmp_path, capsys):
    cfg = tiny_config("data.subset=320", "train.batch_size=32", "train.knn_every=1")
    trainer = Trainer(cfg, tmp_path / "run")
    # A network whose output is the same for every image (its shape and dtype unchanged).
    trainer.method.encoder.register_forward_hook(lambda module, args, out: torch.ones_like(out))
    trainer.fit()
    (record,) = _records(tmp_path / "run", "epoch")
    assert record["feature_std"] < 0.01 and record["rankme"] == pytest.approx(1.0, abs=0.01)
    assert record["uniformity"] == pytest.approx(0.0, abs=1e-6) and record["alignment"] < 1e-6
    assert any(w.startswith("encoder features: complete collapse") for w in record["warnings"])
    lines = capsys.readouterr().err.splitlines()
    warned = [x for x in lines if x.startswith("warning (epoch 1): encoder features: complete")]
    assert len(warned) == 1


def test_collapse_metrics_reuse_the_knn_features_and_cost_two_bounded_view_sets(monkeypatch):
    """The k-NN's features are extracted once; the only extra passes are 2 x ALIGNMENT_IMAGES
    views, whatever the split sizes."""
    counted: list[int] = []
    original = features_module.extract_features

    def counting(*args: Any, **kwargs: Any) -> Any:
        feats, labels = original(*args, **kwargs)
        counted.append(len(labels))
        return feats, labels

    # the view passes (eval.collapse.two_view_features) look it up in eval.features at call time
    monkeypatch.setattr(features_module, "extract_features", counting)
    cfg = tiny_config("train.knn_every=1", "train.knn_train_samples=600")
    build.resolve_normalization(cfg, build.train_dataset(cfg))
    eval_sets = build.eval_datasets(cfg)
    assert eval_sets is not None
    encoder = build.make_backbone(cfg, 1)
    measures = EpochMonitor(cfg, eval_sets, torch.device("cpu"))(encoder, 1)
    assert counted == [ALIGNMENT_IMAGES, ALIGNMENT_IMAGES]  # the k-NN's own are not re-done
    assert set(measures.record) >= COLLAPSE_KEYS and "linear_top1" not in measures.record


def test_a_one_view_method_gets_its_alignment_from_two_draws_of_its_view():
    """MAE has one view: alignment compares two draws of it; fixed generators, so two calls
    give the same numbers (and touch no global random state)."""
    cfg = tiny_config(*METHOD_OVERRIDES["mae"])
    build.resolve_normalization(cfg, build.train_dataset(cfg))
    eval_sets = build.eval_datasets(cfg)
    assert eval_sets is not None and len(build.method_view_specs(cfg)) == 1
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 16))
    monitor = EpochMonitor(cfg, eval_sets, torch.device("cpu"))
    rng = torch.get_rng_state()
    first, second = monitor(encoder, 1).record, monitor(encoder, 2).record
    assert torch.equal(rng, torch.get_rng_state())
    assert 0.0 < first["alignment"] < 4.0 and first == second


def test_collapse_metrics_can_be_switched_off(tmp_path):
    cfg = tiny_config("train.knn_every=1", "train.collapse_metrics=false")
    Trainer(cfg, tmp_path / "run").fit()
    (record,) = _records(tmp_path / "run", "epoch")
    assert "knn_top1" in record and not COLLAPSE_KEYS & set(record)
