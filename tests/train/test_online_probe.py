"""The online linear probe (selfsup/train/online_probe.py): it learns, it never changes the
method (bit for bit), it resumes exactly, old checkpoints without it resume with a fresh one,
unlabelled data has none, and a step with it reads nothing back from the device. Tiny SimCLR
runs on digits (1437 train / 360 test images), fp32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from selfsup import build
from selfsup.data import TensorImageDataset
from selfsup.train.checkpoint import load_checkpoint
from selfsup.train.online_probe import ACCURACY_LOG, OnlineLinearProbe
from selfsup.train.trainer import Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config


def _records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == kind]


def _state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.method.state_dict().items()}


def _bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_online_probe_learns_above_chance(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config("train.epochs=3", "train.knn_every=1"), run).fit()
    epochs = _records(run, "epoch")
    # 10 classes: chance is 0.1 (a random classifier: 0.1 +- 0.016 on 360 queries).
    assert epochs[-1]["linear_top1"] > 0.25
    train = _records(run, "train")
    assert all(0.0 <= x[ACCURACY_LOG] <= 1.0 for x in train)
    assert train[-1][ACCURACY_LOG] > 0.12  # on augmented views, over the last epoch so far


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_the_online_probe_never_changes_the_method(tmp_path, method):
    """The key invariant: the same run with and without the probe (and the epoch-end measures)
    trains the same method state, bit for bit, and logs the same losses."""
    extra = (*METHOD_OVERRIDES[method], "train.epochs=2")
    plain = Trainer(tiny_config(*extra, "train.online_linear=false"), tmp_path / "a")
    plain.fit()
    probed = Trainer(tiny_config(*extra, "train.knn_every=1"), tmp_path / "b")
    probed.fit()
    assert plain.train_step.probe is None and probed.train_step.probe is not None
    assert probed.train_step.probe.linear.weight.abs().sum() > 0  # it did learn
    assert _bitwise_equal(_state(plain), _state(probed))
    states = [t.optimizer.state_dict()["state"] for t in (plain, probed)]
    assert states[0].keys() == states[1].keys()
    assert all(_bitwise_equal(states[0][k], states[1][k]) for k in states[0])
    losses = [[x["loss"] for x in _records(tmp_path / d, "train")] for d in "ab"]
    assert losses[0] == losses[1]


def test_a_resumed_run_continues_the_probe_exactly(tmp_path):
    straight = Trainer(tiny_config("train.epochs=2"), tmp_path / "a")
    straight.fit()
    first = Trainer(tiny_config("train.epochs=2", "train.max_steps=30"), tmp_path / "b")
    first.fit()
    second = Trainer(tiny_config("train.epochs=2"), tmp_path / "b")
    second.fit(resume=True)
    a, b = straight.train_step.probe, second.train_step.probe
    assert a is not None and b is not None
    assert _bitwise_equal(a.checkpoint_state()["module"], b.checkpoint_state()["module"])
    accuracy = [[x[ACCURACY_LOG] for x in _records(tmp_path / d, "train")] for d in "ab"]
    assert accuracy[0] == accuracy[1]


def test_a_checkpoint_without_probe_state_resumes_with_a_fresh_probe(tmp_path, capsys):
    """Checkpoints written before the probe existed resume; the probe starts fresh, the method
    continues exactly (the probe never touches it)."""
    straight = Trainer(tiny_config("train.epochs=2"), tmp_path / "a")
    straight.fit()
    first = Trainer(tiny_config("train.epochs=2", "train.max_steps=30"), tmp_path / "b")
    first.fit()
    last = tmp_path / "b" / "checkpoints" / "last.pt"
    old = load_checkpoint(last)
    del old["online_probe"]
    torch.save(old, last)
    capsys.readouterr()
    second = Trainer(tiny_config("train.epochs=2"), tmp_path / "b")
    second.fit(resume=True)
    notes = [x for x in capsys.readouterr().err.splitlines() if "online linear probe" in x]
    assert notes == [
        "note: last.pt has no online linear probe; the probe starts fresh at this step"
    ]
    assert _bitwise_equal(_state(straight), _state(second))
    assert "online_probe" in load_checkpoint(last)  # written from now on


def test_unlabelled_data_has_no_probe_and_asking_for_one_names_the_fix(tmp_path):
    images = build.train_dataset(tiny_config()).get_batch(torch.arange(256))[0]
    unlabelled = TensorImageDataset(images, None, "unlabelled", None)
    trainer = Trainer(tiny_config(), tmp_path / "a", train_set=unlabelled)
    assert trainer.train_step.probe is None
    trainer.fit()
    assert all(ACCURACY_LOG not in x for x in _records(tmp_path / "a", "train"))
    with pytest.raises(ValueError, match=r"train\.online_linear=true needs class labels .* none"):
        Trainer(tiny_config("train.online_linear=true"), tmp_path / "b", train_set=unlabelled)


def test_probe_leaves_out_unlabelled_samples_and_resets_its_accuracy():
    probe = OnlineLinearProbe(4, 3, lr=0.5)
    features = torch.randn(6, 4)
    probe.update(features, torch.full((6,), -1))
    assert int(probe.seen) == 0 and probe.linear.weight.abs().sum() == 0  # nothing to learn
    accuracy = probe.update(features, torch.tensor([0, 1, 2, -1, -1, 0]))
    assert int(probe.seen) == 4 and 0.0 <= float(accuracy) <= 1.0
    probe.update(features[:1], torch.tensor([1]))  # one image: no batch statistics, left out
    assert int(probe.seen) == 4
    probe.reset_accuracy()
    assert int(probe.seen) == 0 and float(probe.accuracy_so_far()) == 0.0


def test_a_step_with_the_probe_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """No host sync per step (on a GPU each read would wait for the device): the step with the
    probe never converts a tensor to a Python value; the trainer reads the log at logged steps."""
    trainer = Trainer(tiny_config(), tmp_path / "run")
    images, labels = next(iter(trainer.loader.iterate(0)))
    trainer.train_step(images, 0, trainer.view_generator, labels)  # first step: lazy state

    def read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a tensor was read back to the host during the step")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, read)
    result = trainer.train_step(images, 1, trainer.view_generator, labels)
    monkeypatch.undo()
    assert 0.0 <= float(result.logs[ACCURACY_LOG]) <= 1.0
