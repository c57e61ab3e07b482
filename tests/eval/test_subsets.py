"""Label subsets: exactly stratified, seeded, the same for every encoder, tied to their labels."""

from __future__ import annotations

import json

import pytest
import torch

from selfsup.eval.subsets import (
    load_subset,
    parse_fraction,
    stratified_split,
    stratified_subset,
    subset_for,
)

LABELS = torch.tensor([0] * 500 + [1] * 300 + [2] * 150 + [3] * 49 + [4] * 1)  # 1000, skewed


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_subsets_are_exactly_stratified(fraction):
    indices = stratified_subset(LABELS, 5, fraction, seed=0)
    counts = torch.bincount(LABELS[indices], minlength=5).tolist()
    expected = [max(1, round(fraction * n)) for n in (500, 300, 150, 49, 1)]
    assert counts == expected
    assert indices.tolist() == sorted(set(indices.tolist()))  # sorted, no repeats


def test_subsets_are_reproducible_and_depend_on_the_seed_only():
    a = stratified_subset(LABELS, 5, 0.1, seed=3)
    assert torch.equal(a, stratified_subset(LABELS, 5, 0.1, seed=3))
    assert not torch.equal(a, stratified_subset(LABELS, 5, 0.1, seed=4))
    # a larger fraction is drawn by the same per-class permutations: 1% is inside 10%
    small = set(stratified_subset(LABELS, 5, 0.02, seed=3).tolist())
    assert small <= set(a.tolist())


def test_a_subset_smaller_than_the_classes_is_refused_with_the_fix():
    with pytest.raises(
        ValueError,
        match=r"0.1% of 1000 labelled images is 1.0 images, fewer "
        r"than the 5 classes; use a larger fraction \(at least 0.5%\)",
    ):
        stratified_subset(LABELS, 5, 0.001, seed=0)
    with pytest.raises(ValueError, match=r"classes \[5\] have no training image"):
        stratified_subset(LABELS, 6, 0.5, seed=0)


def test_subset_files_are_written_read_back_and_refused_for_other_labels(tmp_path):
    first = subset_for(LABELS, 5, 0.1, 0, "toy", tmp_path)
    assert first.path == tmp_path / "toy-10%-seed0.json"
    data = json.loads(first.path.read_text())
    assert data["indices"] == first.indices.tolist() and data["num_images"] == 1000
    again = subset_for(LABELS, 5, 0.1, 0, "toy", tmp_path)  # read back, not redrawn
    assert torch.equal(again.indices, first.indices)
    other = LABELS.flip(0)
    with pytest.raises(ValueError, match=r"was made for other labels.*not this training split"):
        load_subset(first.path, other)
    with pytest.raises(ValueError, match="not a selfsup label subset file"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        load_subset(bad, LABELS)


def test_validation_split_holds_out_per_class_and_keeps_one_for_training():
    fit, val = stratified_split(LABELS, 5, 0.1, seed=0)
    assert sorted(fit.tolist() + val.tolist()) == list(range(1000))
    assert torch.bincount(LABELS[val], minlength=5).tolist() == [50, 30, 15, 5, 0]


@pytest.mark.parametrize(
    ("text", "value"), [("1%", 0.01), ("10%", 0.1), ("100%", 1.0), ("0.5", 0.5)]
)
def test_fractions_parse(text, value):
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0%", "150%", "ten", "-1"])
def test_bad_fractions_are_refused(text):
    with pytest.raises(ValueError, match="label fraction"):
        parse_fraction(text)
