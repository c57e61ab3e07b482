"""SwAV as a method: the loss against an independent recomputation, normalised prototypes, the
frozen first epoch, and the queue (filled from its epoch, used once full, carried by the
state dict and by a resumed run)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from selfsup.config import ConfigError
from selfsup.methods.base import Progress
from selfsup.methods.swav import SwAV, swav_projector
from selfsup.train.checkpoint import load_checkpoint, save_checkpoint
from selfsup.train.trainer import Trainer
from selfsup.views import MultiViewTransform, swav_view
from tests.conftest import METHOD_OVERRIDES, tiny_config

BATCH = 8


def _mlp_swav(**kwargs: object) -> SwAV:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
    recipe = MultiViewTransform([swav_view(8)] * 2, mean=[0.5], std=[0.25])
    options: dict[str, object] = {"num_prototypes": 10, "proj_out_dim": 16, **kwargs}
    return SwAV(backbone, swav_projector(32, 32, 16), recipe, **options)  # type: ignore[arg-type]


def _views(method: SwAV, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (BATCH, 1, 10, 10), generator=g).to(torch.uint8)
    return method.make_views(images, torch.Generator().manual_seed(seed))


def _np_sinkhorn(scores: np.ndarray, epsilon: float = 0.05, iterations: int = 3) -> np.ndarray:
    q = np.exp(scores / epsilon)
    q /= q.sum()
    b, k = q.shape
    for _ in range(iterations):
        q /= k * q.sum(0, keepdims=True)
        q /= b * q.sum(1, keepdims=True)
    return q * b


def _np_swav_loss(scores: list[np.ndarray], codes: list[np.ndarray], tau: float = 0.1) -> float:
    total = 0.0
    for t in (0, 1):
        v = 1 - t
        logits = scores[v] / tau
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        total += -(codes[t] * log_p).sum(1).mean()
    return total / 2


def test_loss_equals_an_independent_recomputation_and_prototypes_are_normalised() -> None:
    method = _mlp_swav()
    with torch.no_grad():  # as after an optimiser step: rows no longer of unit length
        method.prototypes.weight.mul_(3.0)
    v1, v2 = _views(method)
    out = method.training_step([v1, v2])
    weight = method.prototypes.weight.detach()
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(10))  # normalised by the step
    with torch.no_grad():  # the same-size crops in one backbone pass (one BN batch)
        z = F.normalize(method.projector(method.backbone(torch.cat([v1, v2]))), dim=1)
        scores = (z @ weight.T).double().numpy()
    per_crop = [scores[:BATCH], scores[BATCH:]]
    codes = [_np_sinkhorn(s) for s in per_crop]
    assert out.loss.item() == pytest.approx(_np_swav_loss(per_crop, codes), rel=1e-4)
    entropy = np.mean([-(q * np.log(q)).sum(1).mean() for q in codes])
    assert out.logs["code_entropy"].item() == pytest.approx(entropy, rel=1e-4)
    assert 0 < entropy < math.log(10)


def test_gradients_reach_prototypes_and_backbone_not_the_codes() -> None:
    method = _mlp_swav()
    out = method.training_step(_views(method))
    out.loss.backward()
    assert method.prototypes.weight.grad is not None
    assert all(p.grad is not None for p in method.backbone.parameters())
    # The codes are targets, computed without gradient even from scores that have one.
    scores = [s.detach().requires_grad_() for s in torch.randn(2, BATCH, 10).unbind()]
    codes = [method.codes(s, t) for t, s in enumerate(scores)]
    assert not any(q.requires_grad for q in codes)


def test_prototypes_are_frozen_for_the_first_epochs_steps() -> None:
    method = _mlp_swav(freeze_prototypes_epochs=1.5)
    for step, frozen in ((0, True), (14, True), (15, False), (40, False)):
        method.zero_grad()
        method.training_step(_views(method)).loss.backward()
        method.before_optimizer_step(Progress(step, 100, step // 10, 10))
        assert (method.prototypes.weight.grad is None) == frozen, step
        assert method.projector[0].weight.grad is not None


def _step(method: SwAV, step: int, steps_per_epoch: int = 2, seed: int = 0) -> torch.Tensor:
    out = method.training_step(_views(method, seed))
    method.after_step(Progress(step, 100, step // steps_per_epoch, steps_per_epoch))
    return out.loss.detach()


def test_queue_fills_from_its_epoch_and_joins_the_codes_once_full() -> None:
    method = _mlp_swav(queue_length=3 * BATCH, queue_start_epoch=1)  # 2 steps per epoch
    assert method.queue is not None and method.queue_size == 3 * BATCH
    for step in range(2):  # epoch 0: nothing enqueued
        _step(method, step)
    assert int(method.queue_rows) == 0 and not method.queue_in_use
    for step in range(2, 5):  # epoch 1 on: one batch per step, full after 3
        out = method.training_step(_views(method, step))
        assert out.logs["queue_in_use"].item() == 0.0
        z_global = out.embeddings
        method.after_step(Progress(step, 100, step // 2, 2))
    assert int(method.queue_rows) == 3 * BATCH and method.queue_in_use
    assert z_global is not None  # the last step's global-crop embeddings are the newest rows
    for crop in (0, 1):
        keys = method._queue(crop).keys
        torch.testing.assert_close(keys[2 * BATCH :], z_global[crop * BATCH : (crop + 1) * BATCH])
    # In use, the queue changes the codes of the batch: Sinkhorn spreads it over more rows.
    scores = torch.randn(BATCH, 10, generator=torch.Generator().manual_seed(0))
    with_queue = method.codes(scores, 0)
    method._queue_rows = 0  # pretend it is not full
    assert not torch.allclose(with_queue, method.codes(scores, 0))
    assert method.training_step(_views(method)).logs["queue_in_use"].item() == 0.0


def test_queue_round_trips_through_the_state_dict() -> None:
    method = _mlp_swav(queue_length=2 * BATCH, queue_start_epoch=0)
    for step in range(3):
        _step(method, step)
    state = method.state_dict()
    assert {"queue.0.keys", "queue.1.keys", "queue.0.ptr", "queue_rows"} <= set(state)
    fresh = _mlp_swav(queue_length=2 * BATCH, queue_start_epoch=0)
    assert not fresh.queue_in_use
    fresh.load_state_dict(state)
    assert fresh.queue_in_use  # the host-side count is re-read from the loaded buffer
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    torch.testing.assert_close(_step(fresh, 3, seed=7), _step(method, 3, seed=7))


def test_a_resumed_run_continues_with_the_checkpointed_queue(tmp_path) -> None:
    """The queue fills in epoch 2 (steps 22-23) and is in use at the step-30 checkpoint."""
    extra = (*METHOD_OVERRIDES["swav"], "train.epochs=2")
    straight = Trainer(tiny_config(*extra), tmp_path / "a")
    straight.fit()

    def resumed(run: str, corrupt: bool) -> Trainer:
        first = Trainer(tiny_config(*extra, "train.max_steps=30"), tmp_path / run)
        first.fit()
        ckpt = load_checkpoint(first.checkpoint_path)
        assert int(ckpt["method"]["queue_rows"]) == 128  # full, in use from step 24
        if corrupt:  # a queue lost on resume (the classic silent bug) must show
            for crop in (0, 1):
                keys = ckpt["method"][f"queue.{crop}.keys"]
                ckpt["method"][f"queue.{crop}.keys"] = F.normalize(torch.randn_like(keys), dim=1)
            save_checkpoint(first.checkpoint_path, ckpt)
        second = Trainer(tiny_config(*extra), tmp_path / run)
        second.fit(resume=True)
        return second

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [x["loss"] for x in map(json.loads, lines) if x["kind"] == "train"]

    good = resumed("b", corrupt=False)
    a, b = straight.method.state_dict(), good.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert losses("b") == losses("a")
    resumed("c", corrupt=True)
    assert losses("c")[:30] == losses("a")[:30] and losses("c")[30:] != losses("a")[30:]


def test_config_refuses_a_queue_smaller_than_a_batch() -> None:
    with pytest.raises(ConfigError, match=r"swav\.queue_length=32 is smaller than"):
        tiny_config(*METHOD_OVERRIDES["swav"], "swav.queue_length=32")
    with pytest.raises(ConfigError, match="at least 2 images"):
        tiny_config(*METHOD_OVERRIDES["swav"], "train.batch_size=1")
    tiny_config(*METHOD_OVERRIDES["swav"], "swav.queue_length=0")  # no queue: fine


def test_swav_alone_takes_the_official_batch_256_recipe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from selfsup.cli.run_commands import build_config

    cfg = build_config(None, ["method=swav", "train.batch_size=512"])  # validates
    assert "configs/swav_fashion_mnist.yaml" in capsys.readouterr().err
    o = cfg.optim
    assert (o.name, o.base_lr, o.lr_scaling, o.warmup_epochs) == ("lars", 0.6, "linear", 0.0)
    assert o.final_lr == pytest.approx(0.6 * 512 / 256 / 1000)  # 1/1000 of the peak
