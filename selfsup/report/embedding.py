"""A 2-D map of a run's test embeddings, coloured by class.

The run's evaluated encoder embeds a fixed, seeded subset of the labelled evaluation test split
(the same images for every run and every report); the L2-normalised features (as k-NN
compares them) go through PCA to at most 50 dimensions and then UMAP when the ``umap`` package
is importable, else scikit-learn's t-SNE. Classes that form separate islands are what a linear
probe and k-NN can read; one mixed cloud is what a random encoder gives.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from selfsup import build
from selfsup.data import iterate_batches
from selfsup.eval.features import extract_features
from selfsup.eval.run_encoder import RunEncoder

__all__ = ["embed_subset", "plot_embedding", "reduce_2d", "subset_indices"]


def subset_indices(size: int, max_points: int, seed: int = 0) -> Tensor:
    """``min(size, max_points)`` distinct indices of ``range(size)``, seeded, in order."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if size <= max_points:
        return torch.arange(size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=generator)[:max_points].sort().values


def embed_subset(
    run: RunEncoder, max_points: int, device: str | torch.device = "cpu", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str] | None] | str:
    """Features ``[n, D]``, labels ``[n]`` and class names of the seeded test subset, or a
    one-line reason when the run has no labelled evaluation data."""
    cfg = run.cfg
    sets = build.eval_datasets(cfg)
    if sets is None:
        return (
            f"no labelled evaluation data for data.dataset={cfg.data.dataset}; set "
            "data.eval_dataset (e.g. fashion_mnist) or use an image folder with class sub-folders"
        )
    test = sets[1]
    indices = subset_indices(len(test), max_points, seed)
    batches = iterate_batches(test, cfg.eval.batch_size, device, indices)
    feats, labels = extract_features(
        run.encoder.to(device), batches, build.eval_transform(cfg), device
    )
    return feats.numpy(), labels.numpy(), test.class_names


def _umap() -> Any | None:
    """The ``umap`` module (``pip install umap-learn``) when it is installed."""
    try:
        return importlib.import_module("umap")
    except ImportError:
        return None


def reduce_2d(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of ``features`` ``[n, D]`` (n >= 3) and the name of the method used."""
    x = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    n = len(x)
    if x.shape[1] > 50 and n > 50:
        from sklearn.decomposition import PCA

        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    umap = _umap()
    if umap is not None:
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(x)), "UMAP"
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(x)), "t-SNE"


def plot_embedding(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: list[str] | None,
    title: str,
    path: Path,
) -> Path:
    """Scatter ``coords`` ``[n, 2]`` coloured by ``labels``, a legend of the classes."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    classes = sorted(int(c) for c in np.unique(labels))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for i, c in enumerate(classes):
        keep = labels == c
        name = class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
        ax.scatter(coords[keep, 0], coords[keep, 1], s=6, color=cmap(i % cmap.N), label=name)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 20:
        ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
