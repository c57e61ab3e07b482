"""MoCo v2 and v3 against hand recomputations (NumPy InfoNCE), the EMA rule and the queue."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from selfsup.backbones import ResNet
from selfsup.methods import Progress
from selfsup.methods import moco as moco_module
from selfsup.methods.moco import MoCo, moco_v2_projector
from selfsup.methods.mocov3 import MoCoV3, moco_v3_predictor, moco_v3_projector
from selfsup.nn.batchnorm import SplitBatchNorm2d
from selfsup.views import MultiViewTransform, ViewSpec

FEATURES, HIDDEN, DIM = 64, 32, 16  # ResNet-18 at width 0.125: 64 features


def _recipe(views: int = 2) -> MultiViewTransform:
    spec = ViewSpec(size=16, crop_scale=(0.5, 1.0), blur_p=0.0)
    return MultiViewTransform([spec] * views, mean=[0.5], std=[0.25])


def _backbone() -> ResNet:
    return ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)


def _moco(split_bn: int = 0, queue_size: int = 32, momentum: float = 0.9, seed: int = 0) -> MoCo:
    torch.manual_seed(seed)
    return MoCo(
        _backbone(),
        moco_v2_projector(FEATURES, HIDDEN, DIM),
        _recipe(),
        temperature=0.2,
        queue_size=queue_size,
        momentum=momentum,
        split_bn=split_bn,
        proj_out_dim=DIM,
    )


def _mocov3(momentum_base: float = 0.9, temperature: float = 0.5) -> MoCoV3:
    torch.manual_seed(0)
    return MoCoV3(
        _backbone(),
        moco_v3_projector(FEATURES, HIDDEN, DIM),
        moco_v3_predictor(DIM, HIDDEN),
        _recipe(),
        temperature=temperature,
        momentum_base=momentum_base,
    )


def _views(method: MoCo | MoCoV3, n: int = 8, seed: int = 1) -> list[Tensor]:
    images = torch.randint(
        0, 256, (n, 1, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )
    return method.make_views(images, torch.Generator().manual_seed(seed))


def _online_parameters(method: nn.Module, names: tuple[str, ...]) -> list[nn.Parameter]:
    return [p for name in names for p in getattr(method, name).parameters()]


def _perturb_online(method: nn.Module, names: tuple[str, ...]) -> None:
    """Move the online weights away from the target's, as an optimiser step would."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in _online_parameters(method, names):
            p.add_(torch.randn(p.shape, generator=gen))


def _numpy_normalize(x: Tensor) -> np.ndarray:
    a = x.detach().double().numpy()
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _numpy_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    top = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


def _numpy_infonce_queue(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> float:
    u, v, negatives = _numpy_normalize(q), _numpy_normalize(k), queue.double().numpy()
    logits = np.concatenate([(u * v).sum(1, keepdims=True), u @ negatives.T], axis=1)
    return _numpy_cross_entropy(logits / temperature, np.zeros(len(u), dtype=int))


def _numpy_ctr(q: Tensor, k: Tensor, temperature: float) -> float:
    u, v = _numpy_normalize(q), _numpy_normalize(k)
    return 2 * temperature * _numpy_cross_entropy(u @ v.T / temperature, np.arange(len(u)))


# -- MoCo v2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("split_bn", [0, 2])
def test_moco_loss_is_numpy_infonce_of_queries_against_key_and_queue(split_bn, monkeypatch):
    method = _moco(split_bn=split_bn)
    shuffles: list[tuple[Tensor, Tensor]] = []
    real_shuffle = moco_module.shuffle_batch

    def recording_shuffle(x: Tensor) -> tuple[Tensor, Tensor]:
        shuffled, unshuffle = real_shuffle(x)
        shuffles.append((shuffled, unshuffle))
        return shuffled, unshuffle

    monkeypatch.setattr(moco_module, "shuffle_batch", recording_shuffle)
    x_q, x_k = _views(method)
    queue_before = method.queue.keys.clone()
    out = method.training_step([x_q, x_k])

    # By hand: query view through backbone + projector; key view, shuffled as recorded,
    # through the key encoder, then put back in the original order.
    ((shuffled, unshuffle),) = shuffles
    perm = torch.argsort(unshuffle)
    assert torch.equal(shuffled, x_k[perm])
    with torch.no_grad():
        q = method.projector(method.backbone(x_q))  # [8, 16]
        k = method.target(x_k[perm])[unshuffle]  # [8, 16]
    expected = _numpy_infonce_queue(q, k, queue_before, temperature=0.2)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(method.queue.keys, queue_before)  # nothing enqueued before after_step
    assert out.embeddings is not None and not out.embeddings.requires_grad
    torch.testing.assert_close(out.embeddings, q)
    assert set(out.logs) == {"embedding_std"}


def test_moco_keys_stay_aligned_with_their_images_through_the_shuffle():
    # In eval mode BatchNorm is per-sample, so each key must equal the key encoder's output
    # for its own image: a wrong unshuffle would permute the rows.
    method = _moco(split_bn=2, queue_size=8).eval()
    x_q, x_k = _views(method)
    method.training_step([x_q, x_k])
    method.after_step(Progress(0, 10, 0, 10))
    with torch.no_grad():
        expected = nn.functional.normalize(method.target(x_k), dim=1)
    torch.testing.assert_close(method.queue.keys, expected)


def test_moco_key_encoder_gets_no_gradient_and_the_query_encoder_does():
    method = _moco(split_bn=2)
    out = method.training_step(_views(method))
    out.loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in method.target.parameters())
    online = _online_parameters(method, ("backbone", "projector"))
    assert all(p.grad is not None for p in online)
    assert all(p.grad.abs().sum() > 0 for p in online if p.grad is not None)
    assert {id(p) for p in method.parameters() if p.requires_grad} == {id(p) for p in online}


def test_moco_after_step_is_ema_of_parameters_with_the_configured_momentum():
    method = _moco(momentum=0.9)
    method.training_step(_views(method))  # target BN statistics move away from the online's
    _perturb_online(method, ("backbone", "projector"))
    target_before = {k: v.clone() for k, v in method.target.module.state_dict().items()}
    online = {
        **{f"0.{k}": v.clone() for k, v in method.backbone.state_dict().items()},
        **{f"1.{k}": v.clone() for k, v in method.projector.state_dict().items()},
    }
    method.after_step(Progress(0, 10, 0, 10))
    target = method.target.module.state_dict()
    for name in ("0.conv1.weight", "0.layer4.1.bn2.bias", "1.0.weight", "1.2.bias"):
        expected = 0.9 * target_before[name] + 0.1 * online[name]
        torch.testing.assert_close(target[name], expected, rtol=1e-6, atol=1e-6)
        assert not torch.allclose(target[name], target_before[name])
    # Buffers are not averaged: the key encoder keeps its own BatchNorm statistics.
    for name in ("0.bn1.running_mean", "0.bn1.running_var", "0.bn1.num_batches_tracked"):
        assert torch.equal(target[name], target_before[name])


def test_moco_queue_receives_the_keys_of_each_step_oldest_first():
    method = _moco(queue_size=12)  # batch 8: the second step wraps around
    keys = []
    for step in range(2):
        x_q, x_k = _views(method, seed=10 + step)
        method.training_step([x_q, x_k])
        with torch.no_grad():  # plain BN over the whole batch: shuffle-invariant
            keys.append(nn.functional.normalize(method.target(x_k), dim=1))
        method.after_step(Progress(step, 10, 0, 10))
    first, second = keys
    queue = method.queue.keys
    torch.testing.assert_close(queue[8:12], second[:4], atol=1e-5, rtol=1e-5)  # then wraps
    torch.testing.assert_close(queue[0:4], second[4:], atol=1e-5, rtol=1e-5)  # over the oldest
    torch.testing.assert_close(queue[4:8], first[4:], atol=1e-5, rtol=1e-5)  # still queued
    assert int(method.queue.ptr) == 4


def test_moco_queue_and_pointer_survive_a_state_dict_round_trip():
    method = _moco(queue_size=12)
    method.training_step(_views(method))
    method.after_step(Progress(0, 10, 0, 10))
    state = method.state_dict()
    assert {"queue.keys", "queue.ptr"} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = _moco(queue_size=12, seed=123)
    assert not torch.equal(restored.queue.keys, method.queue.keys)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.queue.keys, method.queue.keys)
    assert int(restored.queue.ptr) == int(method.queue.ptr) == 8
    # Both continue identically: the next keys land at the restored pointer.
    new_keys = nn.functional.normalize(torch.randn(8, DIM), dim=1)
    for m in (method, restored):
        m.queue.enqueue(new_keys)
    assert torch.equal(restored.queue.keys, method.queue.keys)
    assert int(restored.queue.ptr) == 4


def test_moco_uses_split_batchnorm_on_one_process_in_both_encoders():
    method = _moco(split_bn=4)
    for encoder in (method.backbone, method.target):
        norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
        assert norms and all(isinstance(m, SplitBatchNorm2d) for m in norms)
        assert {m.num_splits for m in norms} == {4}
    plain = _moco(split_bn=0)
    assert not any(isinstance(m, SplitBatchNorm2d) for m in plain.modules())


def test_moco_split_batchnorm_normalises_sub_batches_independently():
    method = _moco(split_bn=2)
    torch.manual_seed(0)  # the same initial weights as the method's backbone
    plain = _backbone()
    x = _views(method)[0]
    with torch.no_grad():
        out = method.backbone(x)  # [8, 64]
        # Reference: plain BatchNorm on each sub-batch of the strided split separately.
        assert torch.allclose(out[0::2], plain(x[0::2]), atol=1e-5)
        assert torch.allclose(out[1::2], plain(x[1::2]), atol=1e-5)
        assert not torch.allclose(out, plain(x), atol=1e-3)


def test_moco_under_bf16_autocast_enqueues_float32_unit_keys():
    method = _moco(queue_size=8)
    views = _views(method)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method.training_step(views)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    method.after_step(Progress(0, 10, 0, 10))
    assert method.queue.keys.dtype == torch.float32
    torch.testing.assert_close(method.queue.keys.norm(dim=1), torch.ones(8))


# -- MoCo v3 ---------------------------------------------------------------------------------


def test_mocov3_loss_is_the_symmetric_numpy_contrastive_loss():
    method = _mocov3(temperature=0.5)
    x1, x2 = _views(method)
    out = method.training_step([x1, x2])
    with torch.no_grad():  # by hand, one forward pass per view as in the method
        q1 = method.predictor(method.projector(method.backbone(x1)))
        q2 = method.predictor(method.projector(method.backbone(x2)))
        k1, k2 = method.target(x1), method.target(x2)
    expected = _numpy_ctr(q1, k2, 0.5) + _numpy_ctr(q2, k1, 0.5)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    # Symmetric: swapping the views gives the same loss.
    assert method.training_step([x2, x1]).loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.embeddings is not None and out.embeddings.shape == (16, DIM)
    torch.testing.assert_close(out.embeddings, torch.cat([q1, q2]))
    assert set(out.logs) == {"embedding_std", "target_momentum"}


def test_mocov3_gradient_reaches_backbone_projector_and_predictor_only():
    method = _mocov3()
    method.training_step(_views(method)).loss.backward()
    online = _online_parameters(method, ("backbone", "projector", "predictor"))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in online)
    assert all(not p.requires_grad and p.grad is None for p in method.target.parameters())
    assert {id(p) for p in method.parameters() if p.requires_grad} == {id(p) for p in online}


def test_mocov3_momentum_follows_the_cosine_and_reaches_one_at_the_end():
    method = _mocov3(momentum_base=0.9)
    total = 4
    _perturb_online(method, ("backbone", "projector"))
    before = method.target[0].conv1.weight.clone()
    online = method.backbone.conv1.weight.detach().clone()
    method.after_step(Progress(0, total, 0, total))
    m0 = 1 - 0.1 * (math.cos(math.pi * 1 / 4) + 1) / 2  # after step 0: m_1 = 0.98535...
    assert method.target.momentum.item() == pytest.approx(m0, abs=1e-6)
    torch.testing.assert_close(method.target[0].conv1.weight, m0 * before + (1 - m0) * online)
    # half-way (after step 1, m_2): (base + 1) / 2
    for step, expected in ((1, 0.95), (2, 1 - 0.1 * (math.cos(3 * math.pi / 4) + 1) / 2)):
        method.after_step(Progress(step, total, 0, total))
        assert method.target.momentum.item() == pytest.approx(expected, abs=1e-6)
    frozen = method.target[0].conv1.weight.clone()
    method.after_step(Progress(total - 1, total, 0, total))  # the last step: m = 1 exactly
    assert method.target.momentum.item() == 1.0
    assert torch.equal(method.target[0].conv1.weight, frozen)


def test_mocov3_heads_follow_the_official_layout():
    projector = moco_v3_projector(FEATURES, HIDDEN, DIM, num_layers=2)  # official ResNet
    assert [type(m).__name__ for m in projector] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d",
    ]  # fmt: skip
    assert not projector[-1].affine
    assert all(m.bias is None for m in projector if isinstance(m, nn.Linear))
    predictor = moco_v3_predictor(DIM, HIDDEN)
    assert isinstance(predictor[-1], nn.Linear) and predictor[-1].bias is None
    assert isinstance(moco_v3_predictor(DIM, HIDDEN, last_batch_norm=True)[-1], nn.BatchNorm1d)
    v2 = moco_v2_projector(FEATURES, HIDDEN, DIM)
    assert [type(m).__name__ for m in v2] == ["Linear", "ReLU", "Linear"]
    assert all(m.bias is not None for m in v2 if isinstance(m, nn.Linear))


# -- both ------------------------------------------------------------------------------------


def _tiny_backbone() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, FEATURES))


def _tiny(kind: str, views: int = 2, **kwargs: Any) -> MoCo | MoCoV3:
    if kind == "moco":
        head = moco_v2_projector(FEATURES, HIDDEN, DIM)
        return MoCo(_tiny_backbone(), head, _recipe(views), proj_out_dim=DIM, **kwargs)
    heads = moco_v3_projector(FEATURES, HIDDEN, DIM), moco_v3_predictor(DIM, HIDDEN)
    return MoCoV3(_tiny_backbone(), *heads, _recipe(views), **kwargs)


@pytest.mark.parametrize("kind", ["moco", "mocov3"])
def test_wrong_number_of_views_is_refused(kind):
    with pytest.raises(ValueError, match=r"needs 2 global views .*, the recipe makes 1"):
        _tiny(kind, views=1)
    method = _tiny(kind)
    x = torch.zeros(4, 1, 16, 16)
    with pytest.raises(ValueError, match=r"needs 2 global views .*, got 1"):
        method.training_step([x])


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("moco", {"temperature": 0.0}, "temperature must be a finite number > 0"),
        ("moco", {"momentum": 1.5}, "momentum must be in"),
        ("moco", {"queue_size": 0}, "queue_size must be a positive integer"),
        ("moco", {"split_bn": -1}, "split_bn must be an integer >= 0"),
        ("mocov3", {"temperature": math.inf}, "temperature must be a finite number > 0"),
        ("mocov3", {"momentum_base": -0.1}, "momentum_base must be in"),
    ],
)
def test_bad_hyperparameters_name_the_problem(kind, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _tiny(kind, **kwargs)


def _smooth_random_images(n: int, seed: int = 0) -> Tensor:
    """``n`` random 4x4 patterns upsampled to 20x20: distinct images that survive cropping."""
    patterns = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    return (nn.functional.interpolate(patterns, size=20, mode="bilinear") * 255).to(torch.uint8)


_EASY_VIEWS = MultiViewTransform(
    [ViewSpec(size=16, crop_scale=(0.6, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0, blur_p=0.0)]
    * 2,
    mean=[0.5],
    std=[0.25],
)


def test_moco_optimisation_steps_reduce_the_loss_against_fixed_keys():
    # MoCo v2's loss first rises while the queue fills and drops only after many steps (it
    # did on Fashion-MNIST); what a few steps must show is that the gradient of the method
    # lowers its loss for fixed keys: key encoder and queue are held (no after_step).
    images = _smooth_random_images(48)
    torch.manual_seed(0)
    method = MoCo(
        _backbone(),
        moco_v2_projector(FEATURES, HIDDEN, DIM),
        _EASY_VIEWS,
        queue_size=32,
        momentum=0.99,
        split_bn=2,
        proj_out_dim=DIM,
    )
    view_gen = torch.Generator().manual_seed(1)
    for step, start in enumerate((16, 32)):  # queue <- real keys of the other 32 images
        method.training_step(method.make_views(images[start : start + 16], view_gen))
        method.after_step(Progress(step, 2, 0, 2))
    views = method.make_views(images[:16], view_gen)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01)
    losses = []
    for _ in range(16):
        out = method.training_step(views)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    # Means of three steps: single steps jump by ~0.2 (3.35 at the start, ~2.47 at the end).
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_mocov3_a_few_optimisation_steps_reduce_the_loss():
    images = _smooth_random_images(16)
    torch.manual_seed(0)
    method = MoCoV3(
        _backbone(),
        moco_v3_projector(FEATURES, HIDDEN, DIM),
        moco_v3_predictor(DIM, HIDDEN),
        _EASY_VIEWS,
        temperature=0.2,
        momentum_base=0.9,
    )
    optimizer = torch.optim.SGD(
        [p for p in method.parameters() if p.requires_grad], lr=0.2, momentum=0.9
    )
    steps, losses = 20, []
    view_gen = torch.Generator().manual_seed(1)
    for step in range(steps):  # the full loop: new views, optimiser step, EMA
        out = method.training_step(method.make_views(images, view_gen))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        method.after_step(Progress(step, steps, step, 1))
        losses.append(out.loss.item())
    # 2 * T * ln(16) * 2 = 2.22 is the loss of uniform logits; it starts above that.
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
