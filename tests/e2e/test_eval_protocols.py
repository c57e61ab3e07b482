"""`selfsup eval` protocols end to end on a tiny digits run: label subsets, fine-tuning beside
training from scratch, transfer to another dataset, the feature cache, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfsup.cli import main
from tests.e2e.test_cli import TINY

FAST = ["eval.finetune_epochs=2", "eval.finetune_batch_size=64", "eval.probe_epochs=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("protocols") / "run"
    assert main(["pretrain", *TINY, "train.knn_every=0", "--run-dir", str(out)]) == 0
    return out


def _results(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "eval.json").read_text())["results"]


def test_finetune_with_10_percent_of_the_labels_beside_training_from_scratch(run_dir, capsys):
    # overrides after the flags are overrides too
    assert main(["eval", "finetune", str(run_dir), "--labels", "10%", *FAST]) == 0
    out, err = capsys.readouterr()
    assert "selfsup simclr" in out and "supervised from scratch" in out and "finetune 10%" in out
    assert "finetune (10% labels): lr" in err and "scoring the test split (once)" in err
    entries = [r for r in _results(run_dir) if r["protocol"] == "finetune"]
    assert {r["candidate"] for r in entries} == {"selfsup simclr", "supervised from scratch"}
    for entry in entries:
        assert entry["labels"] == "10%" and entry["train_images"] == 142  # sum of per-class rounds
        assert entry["selection"]["on"].startswith("stratified validation part")
        assert len(entry["selection"]["candidates"]) == 2  # both lrs scored on validation
        assert entry["test_split"].startswith("test (scored once")
    scratch = next(r for r in entries if r["candidate"] == "supervised from scratch")
    assert scratch["settings"]["supervised_from_scratch"] is True
    # one subset file, shared by both candidates, exactly stratified
    (subset_file,) = (run_dir / "labels").iterdir()
    assert {r["label_subset"] for r in entries} == {str(subset_file)}


def test_feature_protocols_on_subsets_and_the_cache(run_dir, capsys):
    args = ["eval", "all", str(run_dir), "eval.linear_epochs=3", "--labels", "10%,100%"]
    assert main(args) == 0
    first = {(r["candidate"], r["protocol"], r["labels"]): r["top1"] for r in _results(run_dir)}
    assert ("raw pixels", "knn", "10%") in first and ("selfsup simclr", "linear", "100%") in first
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("from the feature cache") == 4  # 2 encoders x (train, test)
    assert "extracting" not in err
    again = {(r["candidate"], r["protocol"], r["labels"]): r["top1"] for r in _results(run_dir)}
    assert {k: again[k] for k in first} == first  # same numbers from the cached features


def _write_split(root: Path, split: str, count: int, rng: np.random.Generator) -> None:
    for label in ("a", "b", "c"):
        folder = root / split / label
        folder.mkdir(parents=True)
        shade = {"a": 40, "b": 128, "c": 220}[label]
        for i in range(count):
            pixels = np.clip(rng.normal(shade, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{i}.png")


def test_transfer_to_an_rgb_folder_of_another_size(run_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "other"
    _write_split(data, "train", 20, rng)
    _write_split(data, "test", 6, rng)
    args = ["eval", "knn", str(run_dir), "--data", "folder", "--data-dir", str(data)]
    assert main(args) == 0  # RGB 12x12 into a 1-channel 8x8 encoder: converted and resized
    entry = next(r for r in _results(run_dir) if r["dataset"] == f"folder:{data}")
    assert entry["protocol"] == "knn" and entry["top1"] > 0.5  # shades separate trivially


def test_bad_label_input_is_refused_and_changes_nothing(run_dir, tmp_path, capsys):
    assert main(["eval", "knn", str(run_dir)]) == 0
    before = (run_dir / "eval.json").read_bytes()
    assert main(["eval", "knn", str(run_dir), "--labels", "0.1%"]) == 2
    assert "fewer than the 10 classes; use a larger fraction" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"fraction": 0.1, "seed": 0, "indices": [0, 1], "num_images": 50}))
    assert main(["eval", "knn", str(run_dir), "--labels", str(other)]) == 2
    assert "was made for other labels" in capsys.readouterr().err
    assert main(["eval", "knn", str(run_dir), "--data", "nope"]) == 2
    assert (run_dir / "eval.json").read_bytes() == before
