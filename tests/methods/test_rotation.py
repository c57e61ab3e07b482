"""Rotation prediction (RotNet): exact rotations and their labels, the loss against a NumPy
recomputation, one backbone batch for all rotations, the features the probe sees, and a short
run that learns the task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.backbones import FeatureBackbone
from selfsup.cli.run_commands import build_config
from selfsup.methods.rotation import Rotation, rotate_batch, rotation_classifier
from selfsup.train.trainer import Trainer
from selfsup.views import MultiViewTransform, rotation_view
from tests.conftest import METHOD_OVERRIDES, tiny_config

SIDE = 8


def _method(head: str = "linear", hidden_dim: int = 32) -> Rotation:
    torch.manual_seed(0)
    backbone = FeatureBackbone(nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 16)), 16)
    recipe = MultiViewTransform([rotation_view(SIDE)], mean=[0.5], std=[0.25])
    return Rotation(backbone, recipe, head=head, hidden_dim=hidden_dim)  # type: ignore[arg-type]


def _views(method: Rotation, batch: int = 6, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 1, 10, 10), generator=g).to(torch.uint8)
    return method.make_views(images, torch.Generator().manual_seed(seed))


def _by_hand(x: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """``x [C, S, S]`` turned counter-clockwise pixel by pixel (row i, column j of the output)."""
    side = x.shape[-1]
    out = torch.empty_like(x)
    for i in range(side):
        for j in range(side):
            source = {
                0: (i, j),
                1: (j, side - 1 - i),  # 90: the right column becomes the top row
                2: (side - 1 - i, side - 1 - j),
                3: (side - 1 - j, i),  # 270: the left column becomes the top row
            }[quarter_turns]
            out[:, i, j] = x[:, source[0], source[1]]
    return out


def test_every_image_at_the_four_rotations_exact_and_labelled_by_quarter_turns() -> None:
    x = torch.randn(3, 2, 5, 5)
    rotated, labels = rotate_batch(x)
    assert rotated.shape == (12, 2, 5, 5)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # all images, then all at 90
    for row, (image, label) in enumerate(zip(rotated, labels.tolist())):
        assert torch.equal(image, _by_hand(x[row % 3], label)), (row, label)  # bit for bit
    # Counter-clockwise: the top-right pixel goes to the top-left at 90 degrees.
    marker = torch.zeros(1, 1, 4, 4)
    marker[0, 0, 0, 3] = 1.0
    turned, _ = rotate_batch(marker)
    assert turned[1, 0, 0, 0] == 1.0 and turned[2, 0, 3, 0] == 1.0 and turned[3, 0, 3, 3] == 1.0


def test_non_square_images_are_refused() -> None:
    with pytest.raises(ValueError, match="square images"):
        rotate_batch(torch.zeros(2, 1, 4, 5))


def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def test_loss_accuracy_and_features_against_a_numpy_recomputation() -> None:
    method = _method("linear")
    (view,) = _views(method)
    out = method.training_step([view])

    w = {k: v.detach().double().numpy() for k, v in method.state_dict().items()}
    x = view.double().numpy()  # [N, 1, S, S]
    images = np.concatenate([np.rot90(x, r, axes=(2, 3)) for r in range(4)])  # [4N, 1, S, S]
    labels = np.repeat(np.arange(4), len(x))
    h = images.reshape(len(images), -1) @ w["backbone.module.1.weight"].T
    h += w["backbone.module.1.bias"]
    logits = h @ w["classifier.0.weight"].T + w["classifier.0.bias"]
    expected = -_np_log_softmax(logits)[np.arange(len(labels)), labels].mean()
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    accuracy = (logits.argmax(1) == labels).mean()
    assert out.logs["rotation_accuracy"].item() == pytest.approx(accuracy)
    # The probe's features: the unrotated images' backbone features, detached.
    assert out.features is not None and not out.features.requires_grad
    np.testing.assert_allclose(out.features.numpy(), h[: len(x)], rtol=1e-5, atol=1e-6)
    assert out.embeddings is out.features


def test_all_rotations_go_through_the_backbone_as_one_batch() -> None:
    method = _method("mlp")
    shapes: list[tuple[int, ...]] = []
    method.backbone.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape)))
    (view,) = _views(method, batch=5)
    out = method.training_step([view])
    assert shapes == [(20, 1, SIDE, SIDE)]  # BatchNorm statistics over all 4N images
    out.loss.backward()
    for name, p in method.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_heads_linear_or_mlp_and_bad_arguments_are_named() -> None:
    assert [type(m) for m in rotation_classifier(16, "linear")] == [nn.Linear]
    mlp = rotation_classifier(16, "mlp", 24)
    assert [type(m) for m in mlp] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert mlp[0].out_features == 24 and mlp[-1].out_features == 4
    with pytest.raises(ValueError, match="'linear' or 'mlp'"):
        rotation_classifier(16, "conv")  # type: ignore[arg-type]
    recipe = MultiViewTransform([rotation_view(SIDE)] * 2, mean=[0.5], std=[0.25])
    with pytest.raises(ValueError, match="exactly 1 view"):
        Rotation(_method().backbone, recipe)


def test_method_alone_starts_from_the_papers_sgd() -> None:
    cfg = build_config(None, ["method=rotation"])
    o = cfg.optim
    assert (o.name, o.base_lr, o.lr_scaling, o.weight_decay) == ("sgd", 0.2, "linear", 5e-4)
    assert o.warmup_epochs == 0 and o.decay_norm_and_bias


def test_a_short_run_learns_to_tell_the_rotations_apart(tmp_path) -> None:
    # 3 epochs of 22 steps on digits, about 3 s: measured accuracy 0.23 at the first step,
    # 0.5-0.56 over the last epoch (chance 0.25).
    cfg = tiny_config(*METHOD_OVERRIDES["rotation"], "train.epochs=3")
    Trainer(cfg, tmp_path / "run").fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    accuracy = [x["rotation_accuracy"] for x in lines if x["kind"] == "train"]
    assert np.mean(accuracy[:3]) < 0.35
    assert np.mean(accuracy[-10:]) > 0.4
