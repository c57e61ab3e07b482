"""k-NN over a bank split into blocks: same predictions as the NumPy loop, bounded temporaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from selfsup.eval.knn import knn_predict
from tests.eval.test_knn import make_data, reference_knn


@pytest.mark.parametrize("bank_chunk_size", [1, 7, 20, 64, 149, 10_000])
@pytest.mark.parametrize("k", [1, 5, 20, 149])
def test_bank_blocks_match_numpy_loop(bank_chunk_size: int, k: int) -> None:
    train, labels, queries = make_data(seed=k + bank_chunk_size)
    expected = reference_knn(train.numpy(), labels.numpy(), queries.numpy(), 5, k, 0.07)
    got = knn_predict(
        train, labels, queries, 5, k=k, chunk_size=16, bank_chunk_size=bank_chunk_size
    )
    np.testing.assert_array_equal(got.numpy(), expected)


def test_unnormalised_low_precision_bank_matches_numpy_loop() -> None:
    """Blocks of a bfloat16 bank are scaled by float32 inverse norms, never copied whole."""
    train, labels, queries = make_data(seed=4, dtype=torch.float32)
    train = (train * torch.linspace(0.5, 3.0, train.shape[0]).unsqueeze(1)).bfloat16()
    expected = reference_knn(
        train.double().numpy(), labels.numpy(), queries.double().numpy(), 5, 20, 0.07
    )
    got = knn_predict(train, labels, queries, 5, chunk_size=8, bank_chunk_size=32)
    assert (got.numpy() == expected).mean() >= 0.95  # bf16 rounding may flip near-ties


class _LargestMatrix(TorchDispatchMode):
    """Records the number of elements of the largest matrix (>= 2 dims) any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.ndim >= 2:
                self.largest = max(self.largest, t.numel())
        return out


def test_memory_is_bounded_by_the_chunk_sizes_not_the_bank() -> None:
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(5000, 4, generator=g), torch.randn(300, 4, generator=g)
    labels = torch.randint(0, 3, (5000,), generator=g)
    mode = _LargestMatrix()
    with mode:
        blocked = knn_predict(bank, labels, queries, 3, chunk_size=32, bank_chunk_size=100)
    # The bank [5000, 4] is only read in blocks; besides [N] vectors (inverse norms) the largest
    # new tensor is one 32 x 100 similarity block, far below the 300 x 5000 matrix of an
    # unchunked search (and no normalised [5000, 4] copy of the bank is made).
    assert mode.largest <= 32 * 100
    full = knn_predict(bank, labels, queries, 3, chunk_size=300, bank_chunk_size=5000)
    torch.testing.assert_close(blocked, full)


def test_rejects_bad_bank_chunk_size() -> None:
    train, labels, queries = make_data(seed=1)
    with pytest.raises(ValueError, match="bank_chunk_size"):
        knn_predict(train, labels, queries, 5, bank_chunk_size=0)
