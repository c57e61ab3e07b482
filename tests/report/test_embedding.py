"""The 2-D embedding map: the seeded subset, the reduction (UMAP when installed, else t-SNE),
and the note when a run has no labelled evaluation data."""

from __future__ import annotations

import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from selfsup import build
from selfsup.report import build_report, embedding
from selfsup.report.embedding import reduce_2d, subset_indices


def test_subset_is_seeded_distinct_sorted_and_capped():
    a, b = subset_indices(1000, 50, seed=3), subset_indices(1000, 50, seed=3)
    assert torch.equal(a, b) and len(a.unique()) == 50
    assert torch.equal(a, a.sort().values) and int(a.max()) < 1000
    assert not torch.equal(a, subset_indices(1000, 50, seed=4))
    assert torch.equal(subset_indices(7, 50), torch.arange(7))
    with pytest.raises(ValueError, match="max_points"):
        subset_indices(10, 0)


def test_tsne_keeps_separate_classes_separate(monkeypatch):
    monkeypatch.setattr(embedding, "_umap", lambda: None)  # t-SNE even where umap is installed
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64)) * 5
    labels = np.repeat(np.arange(3), 40)
    features = centres[labels] + rng.normal(size=(120, 64)) * 0.5
    coords, how = reduce_2d(features, seed=0)
    assert how == "t-SNE" and coords.shape == (120, 2)
    # Nearest neighbour in the map (other than the point itself) has the same class.
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1) + np.eye(120) * 1e9
    assert (labels[d.argmin(1)] == labels).mean() > 0.95


def test_umap_is_used_when_importable(monkeypatch):
    seen = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def fit_transform(self, x):
            return np.zeros((len(x), 2)) + 7

    monkeypatch.setitem(sys.modules, "umap", SimpleNamespace(UMAP=FakeUMAP))
    coords, how = reduce_2d(np.random.default_rng(0).normal(size=(20, 8)), seed=5)
    assert how == "UMAP" and (coords == 7).all()
    assert seen["random_state"] == 5 and seen["n_components"] == 2


def test_no_labelled_eval_data_is_a_note_not_an_error(run_a, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(run_a, run, ignore=shutil.ignore_patterns("report"))
    monkeypatch.setattr(build, "eval_datasets", lambda cfg: None)
    page = build_report([run], embedding_points=100, log=lambda _: None)
    html = page.read_text()
    assert "no embedding map: no labelled evaluation data for data.dataset=digits" in html
    assert not list(page.parent.glob("*_embedding.png"))
