"""SimSiam: the heads, the symmetrised loss against an independent recomputation, the
stop-gradient, the predictor's fixed learning rate, and the collapse without stop-gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.backbones import ResNet
from selfsup.data import EpochLoader, load_dataset
from selfsup.eval.collapse import rankme
from selfsup.methods.simsiam import SimSiam, simsiam_predictor, simsiam_projector
from selfsup.train.optim import build_optimizer, param_groups
from selfsup.train.schedules import constant_schedule
from selfsup.train.step import TrainStep
from selfsup.views import MultiViewTransform, moco_v2_view


def _mlp_simsiam(stop_gradient: bool = True) -> SimSiam:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32))
    recipe = MultiViewTransform([moco_v2_view(8)] * 2, mean=[0.5], std=[0.25])
    return SimSiam(
        backbone,
        simsiam_projector(32, 48, 16),
        simsiam_predictor(16, 4),
        recipe,
        stop_gradient=stop_gradient,
    )


def _views(method: SimSiam, batch: int = 12, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 1, 10, 10), generator=g).to(torch.uint8)
    return method.make_views(images, torch.Generator().manual_seed(seed))


def _np_d(p: np.ndarray, z: np.ndarray) -> float:
    cos = (p * z).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(z, axis=1))
    return float(-cos.mean())


def test_heads_follow_the_paper() -> None:
    projector, predictor = simsiam_projector(2048), simsiam_predictor()
    assert [type(m) for m in projector] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
    ]
    assert all(m.bias is None for m in projector if isinstance(m, nn.Linear))
    assert projector[-1].affine is False and projector[1].affine is True  # output BN: no affine
    assert (projector[0].out_features, projector[6].out_features) == (2048, 2048)
    # The predictor is a bottleneck 2048 -> 512 -> 2048 with BN + ReLU on its hidden layer.
    assert [type(m) for m in predictor] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert (predictor[0].in_features, predictor[0].out_features) == (2048, 512)
    assert predictor[3].out_features == 2048 and predictor[3].bias is not None
    assert len(simsiam_projector(512, num_layers=2)) == 5  # the paper's CIFAR variant


def test_loss_is_the_symmetrised_negative_cosine_with_one_pass_per_view() -> None:
    method = _mlp_simsiam()
    v1, v2 = _views(method)
    out = method.training_step([v1, v2])
    with torch.no_grad():  # an independent recomputation: each view its own BN batch
        z1, z2 = (method.projector(method.backbone(v)) for v in (v1, v2))
        p1, p2 = method.predictor(z1), method.predictor(z2)
    expected = 0.5 * _np_d(p1.numpy(), z2.numpy()) + 0.5 * _np_d(p2.numpy(), z1.numpy())
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.embeddings is not None
    torch.testing.assert_close(out.embeddings, torch.cat([z1, z2]))
    with torch.no_grad():  # one BN batch of both views would give another loss
        z = method.projector(method.backbone(torch.cat([v1, v2])))
        p = method.predictor(z)
    n = len(v1)
    joint = 0.5 * _np_d(p[:n].numpy(), z[n:].numpy()) + 0.5 * _np_d(p[n:].numpy(), z[:n].numpy())
    assert abs(joint - expected) > 1e-4


def test_stop_gradient_targets_receive_no_gradient_and_the_ablation_lets_it_through() -> None:
    grads = {}
    for stop in (True, False):
        method = _mlp_simsiam(stop_gradient=stop)
        method.training_step(_views(method)).loss.backward()
        grads[stop] = [p.grad.clone() for p in method.projector.parameters()]
    # Same weights and views: only the target branch's gradient differs.
    assert any(not torch.allclose(a, b) for a, b in zip(grads[True], grads[False]))
    # With stop-gradient the gradient is that of D(p1, z2.detach()) / 2 + D(p2, z1.detach()) / 2.
    method = _mlp_simsiam()
    v1, v2 = _views(method)
    z1, z2 = (method.projector(method.backbone(v)) for v in (v1, v2))
    p1, p2 = method.predictor(z1), method.predictor(z2)
    cos = nn.functional.cosine_similarity
    manual = -0.5 * (cos(p1, z2.detach()).mean() + cos(p2, z1.detach()).mean())
    manual.backward()
    for expected, got in zip([p.grad for p in method.projector.parameters()], grads[True]):
        torch.testing.assert_close(got, expected)


def test_the_predictor_is_declared_at_a_fixed_learning_rate() -> None:
    method = _mlp_simsiam()
    assert method.param_group_options() == {"predictor": {"fixed_lr": True}}
    method.fixed_predictor_lr = False
    assert method.param_group_options() == {}
    with pytest.raises(ValueError, match="needs 2 global views"):
        method.training_step(_views(method)[:1])


def _train_digits(stop_gradient: bool, steps: int = 40) -> tuple[list[float], list[float], dict]:
    """``steps`` SGD steps (lr 0.5, batch 64) on scikit-learn's digits with a small ResNet:
    (embedding_std, loss) per step and the effective ranks of the final projections/features."""
    torch.manual_seed(0)
    backbone = ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)
    method = SimSiam(
        backbone,
        simsiam_projector(backbone.feature_dim, 64, 64),
        simsiam_predictor(64, 16),
        MultiViewTransform([moco_v2_view(8)] * 2, mean=[0.3], std=[0.3]),
        stop_gradient=stop_gradient,
    )
    groups = param_groups(method, 1e-4, True, options=method.param_group_options())
    optimizer = build_optimizer("sgd", groups, lr=0.5, weight_decay=1e-4)
    loader = EpochLoader(load_dataset("digits", "train"), 64, seed=0)
    step = TrainStep(method, optimizer, constant_schedule(0.5, steps), loader.steps_per_epoch())
    generator = torch.Generator().manual_seed(0)
    stds: list[float] = []
    losses: list[float] = []
    epoch = 0
    while len(stds) < steps:
        for images, _ in loader.iterate(epoch):
            result = step(images, len(stds), generator)
            stds.append(result.logs["embedding_std"].item())
            losses.append(result.loss.item())
            if len(stds) == steps:
                break
        epoch += 1
    with torch.no_grad():
        images, _ = next(iter(loader.iterate(0)))
        h = method.backbone(step.views(images, torch.Generator().manual_seed(3))[0])
        ranks = {"z": rankme(method.projector(h)), "h": rankme(h)}
    return stds, losses, ranks


def test_without_stop_gradient_simsiam_collapses_with_it_it_does_not() -> None:
    collapsed_std, collapsed_loss, collapsed_rank = _train_digits(stop_gradient=False)
    std, loss, rank = _train_digits(stop_gradient=True)
    assert collapsed_std[0] == pytest.approx(std[0])  # same start: 1/sqrt(64) = 0.125
    # The trivial solution: both views agree (the loss goes to its minimum -1) because every
    # projection carries one signal. The projector's last BN keeps each dimension's variance
    # at 1, so the collapse is to one direction (effective rank ~1 of 64) rather than to a
    # point, and the normalised std falls without reaching 0. Measured over seeds 0-2:
    # without stop-gradient rank 1.1-1.5, loss -0.86 to -0.92, std 0.05-0.06; with it rank
    # 8-14, loss -0.37 to -0.53, std 0.10-0.11.
    assert np.mean(collapsed_loss[-5:]) < -0.8 < np.mean(loss[-5:])
    assert collapsed_rank["z"] < 2.0 < 4.0 < rank["z"]
    assert collapsed_rank["h"] < 0.5 * rank["h"]  # the backbone's features collapse with it
    assert np.mean(collapsed_std[-5:]) < 0.75 * np.mean(std[-5:])


def test_simsiam_alone_takes_the_papers_sgd(capsys: pytest.CaptureFixture[str]) -> None:
    from selfsup.cli.run_commands import build_config

    cfg = build_config(None, ["method=simsiam"])  # validates
    assert "configs/simsiam_fashion_mnist.yaml" in capsys.readouterr().err
    o = cfg.optim
    assert (o.name, o.base_lr, o.lr_scaling, o.weight_decay) == ("sgd", 0.05, "linear", 1e-4)
    assert o.decay_norm_and_bias and o.warmup_epochs == 0.0 and cfg.backbone.zero_init_residual
