"""Weighted k-nearest-neighbour classification of features (the DINO k-NN protocol)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["knn_accuracy", "knn_predict"]

_NORM_EPS = 1e-12  # F.normalize's default eps


def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    bank_chunk_size: int = 16384,
) -> Tensor:
    """Predict a class for each query by a similarity-weighted vote of its k nearest neighbours.

    Features are L2-normalised, so similarity is cosine: ``s_ij = <q_i, x_j> / (|q_i| |x_j|)``.
    For each query ``i`` with top-k neighbours ``N_k(i)`` (by ``s_ij``), class ``c`` scores

        score_ic = sum_{j in N_k(i), y_j = c} exp(s_ij / T)

    and the prediction is ``argmax_c score_ic`` (ties go to the lower class index). Each score
    row is computed as ``exp((s_ij - max_j s_ij) / T)``, the same ranking without overflow for
    small ``T``. ``k > N_train`` uses all training samples.

    Memory is bounded by the chunk sizes, not by ``Q`` or ``N_train``: queries are processed
    ``chunk_size`` at a time against the bank in blocks of ``bank_chunk_size`` rows, keeping a
    running top-k per query, so the largest temporary is one ``chunk_size x bank_chunk_size``
    similarity block (64 MiB in float32 at the defaults); the full ``Q x N_train`` matrix, and
    a normalised copy of the bank, never exist (each block is scaled by the bank rows' inverse
    norms). A bank of a million rows therefore needs the bank itself plus that block. Exact
    ties at the k-th neighbour may be broken differently from an unchunked ``topk``.

    Computation runs on ``train_features.device`` (queries are moved there chunk by chunk) in
    at least float32; predictions are returned on ``query_features.device``.

    Args:
        train_features: ``[N, D]`` features of the labelled (memory) set.
        train_labels: ``[N]`` integer labels in ``[0, num_classes)``.
        query_features: ``[Q, D]`` features to classify.
        num_classes: number of classes (>= 2).
        k: neighbours per query (DINO uses 20).
        temperature: vote temperature ``T`` (DINO uses 0.07; larger T approaches a plain vote).
        chunk_size: queries per chunk.
        bank_chunk_size: training (bank) rows per similarity block.

    Returns:
        int64 ``[Q]`` predicted classes.
    """
    _check_inputs(train_features, train_labels, query_features, num_classes, k, temperature)
    for name, size in (("chunk_size", chunk_size), ("bank_chunk_size", bank_chunk_size)):
        if size < 1:
            raise ValueError(f"{name} must be >= 1, got {size}; pass e.g. {name}=1024")
    k = min(k, train_features.shape[0])
    device = train_features.device
    dtype = torch.promote_types(train_features.dtype, torch.float32)
    # 1 / |x_j| as F.normalize computes it (norm clamped at 1e-12); [N], no copy of the bank.
    inv_norms = torch.cat(
        [
            block.to(dtype).norm(dim=1).clamp_min(_NORM_EPS).reciprocal()
            for block in train_features.split(bank_chunk_size)
        ]
    )
    memory_labels = train_labels.to(device=device, dtype=torch.int64)  # [N]
    block = min(bank_chunk_size, train_features.shape[0])
    workspace = torch.empty(
        min(chunk_size, query_features.shape[0]) * block, device=device, dtype=dtype
    )
    predictions: list[Tensor] = []
    for start in range(0, query_features.shape[0], chunk_size):
        query = query_features[start : start + chunk_size].to(device=device, dtype=dtype)
        query = F.normalize(query, dim=1)  # [c, D]
        top_sim, top_idx = _top_k_similar(query, train_features, inv_norms, k, block, workspace)
        top_labels = memory_labels[top_idx]  # [c, k]
        # top_sim[:, :1] is the row maximum; subtracting it rescales a row by a constant.
        weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)  # [c, k]
        scores = torch.zeros(query.shape[0], num_classes, device=device, dtype=dtype)
        scores.scatter_add_(1, top_labels, weights)  # [c, num_classes]
        predictions.append(scores.argmax(dim=1))
    return torch.cat(predictions).to(query_features.device)  # [Q]


def _top_k_similar(
    query: Tensor, bank: Tensor, inv_norms: Tensor, k: int, block: int, workspace: Tensor
) -> tuple[Tensor, Tensor]:
    """Cosine similarities ``[c, k]`` (descending) and bank indices ``[c, k]`` of the k nearest
    bank rows to the unit-norm ``query [c, D]``, one ``[c, block]`` similarity block at a time.

    ``workspace`` (at least ``c * block`` elements) holds every block: reusing one buffer
    avoids re-allocating (and page-faulting) a large matrix per block.
    """
    best_sim: Tensor | None = None
    best_idx: Tensor | None = None
    for start in range(0, bank.shape[0], block):
        rows = bank[start : start + block].to(query.dtype)  # [b, D]
        out = workspace[: query.shape[0] * rows.shape[0]].view(query.shape[0], rows.shape[0])
        similarity = torch.matmul(query, rows.T, out=out)  # [c, b]
        similarity.mul_(inv_norms[start : start + block])
        sim, idx = similarity.topk(min(k, similarity.shape[1]), dim=1)  # [c, <=k]
        idx += start
        if best_sim is not None and best_idx is not None:
            # Merge with the running top-k: the k best of (old k, new k) candidates.
            merged = torch.cat([best_sim, sim], dim=1)  # [c, <=2k]
            sim, order = merged.topk(min(k, merged.shape[1]), dim=1)
            idx = torch.cat([best_idx, idx], dim=1).gather(1, order)
        best_sim, best_idx = sim, idx
    assert best_sim is not None and best_idx is not None  # the bank is never empty
    return best_sim, best_idx


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    bank_chunk_size: int = 16384,
) -> float:
    """Top-1 accuracy in ``[0, 1]`` of :func:`knn_predict` on ``test_features``."""
    if test_labels.ndim != 1 or test_labels.shape[0] != test_features.shape[0]:
        raise ValueError(
            f"test_labels must be [Q] with Q={test_features.shape[0]} (one per test feature), "
            f"got shape {tuple(test_labels.shape)}; pass the labels that belong to test_features"
        )
    predictions = knn_predict(
        train_features,
        train_labels,
        test_features,
        num_classes,
        k,
        temperature,
        chunk_size,
        bank_chunk_size,
    )
    correct = predictions == test_labels.to(predictions.device)
    return correct.float().mean().item()


def _check_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    num_classes: int,
    k: int,
    temperature: float,
) -> None:
    """Raise ``ValueError`` with the fix for any malformed k-NN input."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}; pass the dataset's count")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}; DINO uses k=20")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}; DINO uses 0.07")
    for name, feats in (("train_features", train_features), ("query_features", query_features)):
        if feats.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D [N, D], got shape {tuple(feats.shape)}; flatten the encoder "
                "output with .flatten(1)"
            )
        if feats.shape[0] == 0:
            raise ValueError(f"{name} is empty; pass at least one feature vector")
        if not feats.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {feats.dtype}; call .float()")
    if train_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            f"train_features have {train_features.shape[1]} dims but query_features have "
            f"{query_features.shape[1]}; extract both with the same encoder"
        )
    if train_labels.ndim != 1 or train_labels.shape[0] != train_features.shape[0]:
        raise ValueError(
            f"train_labels must be [N] with N={train_features.shape[0]} (one per train feature), "
            f"got shape {tuple(train_labels.shape)}; pass the labels that belong to train_features"
        )
    _check_label_range("train_labels", train_labels, num_classes)


def _check_label_range(name: str, labels: Tensor, num_classes: int) -> None:
    """Raise ``ValueError`` unless ``labels`` are integers in ``[0, num_classes)``."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {labels.dtype}; call .long()")
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values in [{low}, {high}]; "
            "pass num_classes larger than the largest label, or remap the labels"
        )
