"""MemoryQueue: FIFO order, wrap-around, normalisation and checkpointing of MoCo's negatives."""

from __future__ import annotations

import pytest
import torch

from selfsup.nn import MemoryQueue


def fifo_view(queue: MemoryQueue) -> torch.Tensor:
    """The queue's keys from oldest to newest: rows ptr..K-1, then 0..ptr-1."""
    p = int(queue.ptr)
    return torch.cat([queue.keys[p:], queue.keys[:p]])


def unit_rows(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    return x / x.norm(dim=1, keepdim=True)


def test_initial_keys_are_random_unit_vectors() -> None:
    torch.manual_seed(0)
    queue = MemoryQueue(dim=8, size=50)
    assert queue.keys.shape == (50, 8) and queue.keys.dtype == torch.float32
    assert queue.size == 50 and queue.dim == 8
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(50))
    assert int(queue.ptr) == 0 and queue.ptr.dtype == torch.long and queue.ptr.ndim == 0
    assert queue.keys.std(dim=0).min() > 0.1  # not one repeated vector
    assert set(queue.state_dict()) == {"keys", "ptr"}


def test_enqueue_replaces_the_oldest_keys_first_with_wrap_around() -> None:
    size, dim, batch = 10, 4, 4  # 10 is not a multiple of 4: every third batch wraps
    queue = MemoryQueue(dim, size)
    history = list(queue.keys.clone())  # the initial keys count as the oldest entries
    for step in range(7):
        new = unit_rows(batch, dim, seed=step)
        queue.enqueue(new)
        history.extend(new)
        # Reference: a Python FIFO of the last `size` keys ever written, oldest first.
        expected = torch.stack(history[-size:])
        torch.testing.assert_close(fifo_view(queue), expected, rtol=0, atol=1e-6)
        assert int(queue.ptr) == (step + 1) * batch % size
    # Each key of the last batches is stored exactly once (no drops, no duplicates).
    stored = queue.keys
    for key in history[-size:]:
        matches = (stored - key).abs().amax(dim=1) < 1e-6
        assert int(matches.sum()) == 1


def test_wrapping_batch_writes_end_then_start() -> None:
    queue = MemoryQueue(dim=2, size=5)
    queue.enqueue(torch.tensor([[1.0, 0.0]] * 3))  # rows 0-2
    old_row_3 = queue.keys[3].clone()
    batch = torch.tensor([[0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]])
    queue.enqueue(batch)  # rows 3, 4, then 0
    torch.testing.assert_close(queue.keys[3:5], batch[:2])
    torch.testing.assert_close(queue.keys[0], batch[2])
    torch.testing.assert_close(queue.keys[1:3], torch.tensor([[1.0, 0.0]] * 2))
    assert int(queue.ptr) == 1
    assert not torch.equal(queue.keys[3], old_row_3)


def test_full_batch_replaces_everything() -> None:
    queue = MemoryQueue(dim=3, size=4)
    new = unit_rows(4, 3, seed=1)
    queue.enqueue(new)
    torch.testing.assert_close(queue.keys, new)
    assert int(queue.ptr) == 0


def test_enqueued_keys_are_normalised_and_detached() -> None:
    queue = MemoryQueue(dim=3, size=6)
    raw = torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.5]], requires_grad=True)
    queue.enqueue(raw)
    torch.testing.assert_close(queue.keys[:2], torch.tensor([[0.6, 0.0, 0.8], [0.0, 0.0, 1.0]]))
    assert not queue.keys.requires_grad
    queue.enqueue(torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.bfloat16))  # autocast output
    assert queue.keys.dtype == torch.float32
    torch.testing.assert_close(queue.keys[2], torch.tensor([0.0, 1.0, 0.0]))


def test_state_dict_round_trip_resumes_the_same_queue() -> None:
    queue = MemoryQueue(dim=4, size=7)
    for step in range(3):
        queue.enqueue(unit_rows(3, 4, seed=step))
    assert int(queue.ptr) == 2
    state = queue.state_dict()
    resumed = MemoryQueue(dim=4, size=7)  # different random initial keys
    assert not torch.equal(resumed.keys, queue.keys)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.keys, queue.keys) and int(resumed.ptr) == 2
    nxt = unit_rows(3, 4, seed=99)
    queue.enqueue(nxt)
    resumed.enqueue(nxt)
    assert torch.equal(resumed.keys, queue.keys) and torch.equal(resumed.ptr, queue.ptr)
    # The pointer is saved by a checkpoint written with torch.save (weights_only load).
    assert state["ptr"].dtype == torch.long


def test_bad_input_raises() -> None:
    queue = MemoryQueue(dim=4, size=5)
    with pytest.raises(ValueError, match="queue size >= the global batch size"):
        queue.enqueue(torch.randn(6, 4))
    with pytest.raises(ValueError, match=r"shape \[B, 4\]"):
        queue.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"shape \[B, 4\]"):
        queue.enqueue(torch.ones(2, 4, dtype=torch.long))
    assert int(queue.ptr) == 0  # failed calls change nothing
    for kwargs in ({"dim": 0, "size": 5}, {"dim": 4, "size": 0}, {"dim": 4, "size": 2.5}):
        with pytest.raises(ValueError, match="positive integer"):
            MemoryQueue(**kwargs)  # type: ignore[arg-type]
