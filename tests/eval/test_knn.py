"""Weighted k-NN: against a NumPy loop of the DINO formula, a hand-worked case, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from selfsup.eval.knn import knn_accuracy, knn_predict


def reference_knn(
    train: np.ndarray,
    train_labels: np.ndarray,
    queries: np.ndarray,
    num_classes: int,
    k: int,
    temperature: float,
) -> np.ndarray:
    """One query at a time: cosine similarity, k largest, sum exp(sim / T) per class, argmax."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    k = min(k, len(train))
    predictions = []
    for query in queries:
        query = query / np.linalg.norm(query)
        sims = [float(np.dot(query, row)) for row in train]
        neighbours = sorted(range(len(train)), key=lambda j: -sims[j])[:k]
        scores = [0.0] * num_classes
        for j in neighbours:
            scores[int(train_labels[j])] += math.exp(sims[j] / temperature)
        predictions.append(int(np.argmax(scores)))
    return np.array(predictions, dtype=np.int64)


def make_data(
    seed: int, n: int = 150, q: int = 40, d: int = 16, c: int = 5, dtype=torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g, dtype=dtype)
    labels = torch.randint(0, c, (n,), generator=g)
    # Overlapping clusters: votes are close, so the weighting decides many predictions.
    train = centers[labels] + 1.5 * torch.randn(n, d, generator=g, dtype=dtype)
    queries = centers[torch.randint(0, c, (q,), generator=g)] + 1.5 * torch.randn(
        q, d, generator=g, dtype=dtype
    )
    return train, labels, queries


@pytest.mark.parametrize("k", [1, 5, 20, 149, 500])
@pytest.mark.parametrize("temperature", [0.02, 0.07, 0.5])
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_matches_numpy_loop(k: int, temperature: float, chunk_size: int) -> None:
    train, labels, queries = make_data(seed=k)
    expected = reference_knn(train.numpy(), labels.numpy(), queries.numpy(), 5, k, temperature)
    got = knn_predict(
        train, labels, queries, 5, k=k, temperature=temperature, chunk_size=chunk_size
    )
    assert got.dtype == torch.int64
    assert got.shape == (queries.shape[0],)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_matches_numpy_loop_float32() -> None:
    train, labels, queries = make_data(seed=3, dtype=torch.float32)
    expected = reference_knn(
        train.double().numpy(), labels.numpy(), queries.double().numpy(), 5, 20, 0.07
    )
    got = knn_predict(train, labels, queries, 5)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_reference_sees_the_weighting() -> None:
    """The random data must be a real test: weighted votes differ from plain majority votes."""
    train, labels, queries = make_data(seed=20)
    weighted = reference_knn(train.numpy(), labels.numpy(), queries.numpy(), 5, 20, 0.02)
    plain = reference_knn(train.numpy(), labels.numpy(), queries.numpy(), 5, 20, 1e6)
    assert (weighted != plain).any()


def unit(angle_deg: float) -> list[float]:
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def test_hand_computed_weighted_vote_beats_majority() -> None:
    # Query on the x-axis. Neighbours by cosine: class 0 at 0 deg (sim 1), class 1 at +-36.87 deg
    # (sim 0.8 each), class 0 at 180 deg (sim -1, outside the top 3).
    train = torch.tensor([unit(0), unit(36.87), unit(-36.87), unit(180)], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    query = torch.tensor([[2.0, 0.0]], dtype=torch.float64)  # length does not matter
    # T = 0.07: class 0 scores e^(1/0.07) = 1.6e6, class 1 scores 2 e^(0.8/0.07) = 1.8e5 -> 0,
    # although two of the three neighbours are class 1.
    assert math.exp(1 / 0.07) > 2 * math.exp(0.8 / 0.07)
    assert knn_predict(train, labels, query, 2, k=3, temperature=0.07).tolist() == [0]
    # T = 1: class 0 scores e = 2.72, class 1 scores 2 e^0.8 = 4.45 -> the majority wins.
    assert math.exp(1.0) < 2 * math.exp(0.8)
    assert knn_predict(train, labels, query, 2, k=3, temperature=1.0).tolist() == [1]
    # k = 1: only the nearest point votes.
    assert knn_predict(train, labels, query, 2, k=1, temperature=1.0).tolist() == [0]


def test_chunking_does_not_change_predictions() -> None:
    train, labels, queries = make_data(seed=7, n=300, q=257, dtype=torch.float32)
    full = knn_predict(train, labels, queries, 5, chunk_size=10_000)
    for chunk_size in (1, 3, 64, 256, 257):
        torch.testing.assert_close(
            knn_predict(train, labels, queries, 5, chunk_size=chunk_size), full
        )


def test_k_larger_than_train_uses_all() -> None:
    train, labels, queries = make_data(seed=1, n=30)
    torch.testing.assert_close(
        knn_predict(train, labels, queries, 5, k=1000), knn_predict(train, labels, queries, 5, k=30)
    )


def test_invariant_to_feature_norms() -> None:
    train, labels, queries = make_data(seed=2)
    g = torch.Generator().manual_seed(0)
    scaled_train = train * (
        0.1 + 10 * torch.rand(train.shape[0], 1, generator=g, dtype=train.dtype)
    )
    scaled_queries = queries * (
        0.1 + 10 * torch.rand(queries.shape[0], 1, generator=g, dtype=queries.dtype)
    )
    torch.testing.assert_close(
        knn_predict(scaled_train, labels, scaled_queries, 5),
        knn_predict(train, labels, queries, 5),
    )


def test_tiny_temperature_does_not_overflow() -> None:
    # exp(1 / 1e-3) overflows float32; the prediction must still be the nearest neighbour's label.
    train, labels, queries = make_data(seed=4, dtype=torch.float32)
    got = knn_predict(train, labels, queries, 5, k=20, temperature=1e-3)
    torch.testing.assert_close(got, knn_predict(train, labels, queries, 5, k=1))


def test_knn_accuracy() -> None:
    train, labels, queries = make_data(seed=5)
    query_labels = torch.randint(
        0, 5, (queries.shape[0],), generator=torch.Generator().manual_seed(1)
    )
    # The fraction of queries whose NumPy-loop prediction (k = 20, T = 0.07) is their label.
    predictions = reference_knn(train.numpy(), labels.numpy(), queries.numpy(), 5, 20, 0.07)
    expected = float(np.mean(predictions == query_labels.numpy()))
    assert 0 < expected < 1  # random query labels: some right, some wrong
    assert knn_accuracy(train, labels, queries, query_labels, 5) == pytest.approx(expected)
    # Each training point is its own nearest neighbour: k = 1 on the training set is perfect.
    assert knn_accuracy(train, labels, train, labels, 5, k=1) == 1.0


def test_clustered_data_is_classified_well() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 32, generator=g) * 5
    train_labels = torch.arange(400) % 4
    test_labels = torch.arange(100) % 4
    train = centers[train_labels] + torch.randn(400, 32, generator=g)
    test = centers[test_labels] + torch.randn(100, 32, generator=g)
    assert knn_accuracy(train, train_labels, test, test_labels, 4) > 0.95


def _valid() -> dict:
    train, labels, queries = make_data(seed=0, n=20, q=5)
    return {
        "train_features": train,
        "train_labels": labels,
        "query_features": queries,
        "num_classes": 5,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"k": 0}, "k must be"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"train_labels": torch.zeros(19, dtype=torch.int64)}, "train_labels must be"),
        ({"train_labels": torch.full((20,), 5)}, r"\[0, 5\)"),
        ({"train_labels": torch.full((20,), -1)}, r"\[0, 5\)"),
        ({"train_labels": torch.zeros(20)}, "integer"),
        ({"train_features": torch.zeros(0, 16, dtype=torch.float64)}, "empty"),
        ({"query_features": torch.zeros(0, 16, dtype=torch.float64)}, "empty"),
        ({"query_features": torch.zeros(3, 8, dtype=torch.float64)}, "dims"),
        ({"query_features": torch.zeros(3, 4, 4)}, "2-D"),
        ({"train_features": torch.zeros(20, 16, dtype=torch.int64)}, "floating"),
    ],
)
def test_bad_input_raises(change: dict, message: str) -> None:
    kwargs = _valid() | change
    with pytest.raises(ValueError, match=message):
        knn_predict(**kwargs)


def test_accuracy_label_length_mismatch() -> None:
    train, labels, queries = make_data(seed=0, n=20, q=5)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(train, labels, queries, torch.zeros(4, dtype=torch.int64), 5)
