"""DINO: loss vs the official loop, center rule, teacher input, head, schedules, collapse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from selfsup.methods import Progress
from selfsup.methods.dino import DINO, teacher_temperature_schedule
from selfsup.nn.heads import DINOHead, WeightNormLinear
from selfsup.nn.losses import DINOLoss, dino_loss
from selfsup.train.trainer import Trainer
from selfsup.views import MultiViewTransform, dino_views
from tests.conftest import METHOD_OVERRIDES, tiny_config


def reference_dino_loss(student, teacher, center, n_crops, tau_s, tau_t, n_global=2):
    """The official DINOLoss.forward, written out with NumPy: a loop over crop pairs."""
    s = student.double().numpy() / tau_s
    t = (teacher.double().numpy() - center.double().numpy()) / tau_t
    s_chunks = np.split(s, n_crops)
    t_chunks = np.split(t, n_global)
    total, terms = 0.0, 0
    for iq, q in enumerate(t_chunks):
        q = np.exp(q - q.max(-1, keepdims=True))
        q /= q.sum(-1, keepdims=True)
        for v, sv in enumerate(s_chunks):
            if v == iq:
                continue
            log_p = sv - sv.max(-1, keepdims=True)
            log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
            total += np.sum(-q * log_p, axis=-1).mean()
            terms += 1
    return total / terms


@pytest.mark.parametrize(
    ("n_crops", "tau_s", "tau_t"),
    [(2, 0.1, 0.04), (3, 0.1, 0.07), (6, 0.2, 0.04), (10, 0.1, 0.05)],
)
def test_loss_matches_the_official_pair_loop(n_crops, tau_s, tau_t):
    gen = torch.Generator().manual_seed(n_crops)
    batch, k = 5, 17
    student = 3 * torch.randn(n_crops * batch, k, generator=gen)
    teacher = 3 * torch.randn(2 * batch, k, generator=gen)
    center = torch.randn(1, k, generator=gen)
    got = dino_loss(student, teacher, center, n_crops, 2, tau_s, tau_t)
    want = reference_dino_loss(student, teacher, center, n_crops, tau_s, tau_t)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_loss_by_hand_two_crops():
    """Two crops, B=1, K=2: L = mean of the two cross terms, computed by hand."""
    student = torch.tensor([[0.0, 0.1], [0.1, 0.0]])  # crop 1, crop 2
    teacher = torch.tensor([[0.04, 0.0], [0.0, 0.0]])
    loss = dino_loss(student, teacher, torch.zeros(1, 2), 2, 2, 0.1, 0.04)
    q1 = [math.e / (math.e + 1), 1 / (math.e + 1)]  # softmax([1, 0])
    q2 = [0.5, 0.5]
    logp2 = [1 - math.log(math.e + 1), -math.log(math.e + 1)]  # log_softmax([1, 0])
    logp1 = [-math.log(math.e + 1), 1 - math.log(math.e + 1)]  # log_softmax([0, 1])
    ce12 = -sum(q * lp for q, lp in zip(q1, logp2))
    ce21 = -sum(q * lp for q, lp in zip(q2, logp1))
    assert loss.item() == pytest.approx((ce12 + ce21) / 2, rel=1e-6)


def test_loss_gradient_flows_to_the_student_only():
    student = torch.randn(8, 6, requires_grad=True)
    teacher = torch.randn(4, 6, requires_grad=True)
    dino_loss(student, teacher, torch.zeros(1, 6), num_crops=4).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="images per crop"):
        dino_loss(torch.randn(9, 4), torch.randn(4, 4), torch.zeros(1, 4), num_crops=3)
    with pytest.raises(ValueError, match="center"):
        dino_loss(torch.randn(6, 4), torch.randn(4, 4), torch.zeros(1, 5), num_crops=3)
    with pytest.raises(ValueError, match="temperature"):
        dino_loss(torch.randn(6, 4), torch.randn(4, 4), torch.zeros(1, 4), 3, 2, 0.1, -1.0)


def test_center_moves_by_the_ema_of_the_teacher_batch_mean():
    loss_fn = DINOLoss(out_dim=3, center_momentum=0.9)
    t1 = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    t2 = torch.tensor([[0.0, 0.0, 10.0], [0.0, 0.0, 10.0]])
    loss_fn(torch.randn(3, 3), t1, num_crops=3, teacher_temperature=0.04)
    expected = 0.1 * torch.tensor([[2.0, 2.0, 2.0]])
    torch.testing.assert_close(loss_fn.center, expected)
    # the second loss uses the updated center, then moves it again
    s = torch.randn(3, 3)
    want_loss = reference_dino_loss(s, t2, expected, 3, 0.1, 0.04)
    got_loss = loss_fn(s, t2, num_crops=3, teacher_temperature=0.04)
    assert got_loss.item() == pytest.approx(want_loss, rel=1e-5)
    torch.testing.assert_close(
        loss_fn.center, 0.9 * expected + 0.1 * torch.tensor([[0.0, 0.0, 10.0]])
    )
    frozen = DINOLoss(out_dim=3, center_momentum=1.0)  # no centering: center stays zero
    frozen(torch.randn(3, 3), t1, num_crops=3, teacher_temperature=0.04)
    assert torch.equal(frozen.center, torch.zeros(1, 3))


def _method(num_local=2, global_size=16, local_size=8, **kwargs):
    backbone = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    recipe = MultiViewTransform(
        dino_views(global_size, local_size, num_local), mean=[0.5], std=[0.25]
    )
    head = DINOHead(4, out_dim=32, hidden_dim=16, bottleneck_dim=8)
    return DINO(backbone, head, recipe, **kwargs)


def _images(n=6, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)


def test_teacher_sees_only_the_global_crops_and_student_sees_all():
    method = _method(num_local=3)
    seen = {"teacher": [], "student": []}
    method.target.module[0].register_forward_pre_hook(
        lambda _m, args: seen["teacher"].append(tuple(args[0].shape))
    )
    method.backbone.register_forward_pre_hook(
        lambda _m, args: seen["student"].append(tuple(args[0].shape))
    )
    views = method.make_views(_images(6))
    assert [v.shape[-1] for v in views] == [16, 16, 8, 8, 8]
    method.training_step(views)
    assert seen["teacher"] == [(12, 1, 16, 16)]  # both global crops, one pass
    # one student pass per resolution: globals together, locals together
    assert seen["student"] == [(12, 1, 16, 16), (18, 1, 8, 8)]


def test_weight_norm_layer_matches_torch_weight_norm_and_freezes_the_gain():
    layer = WeightNormLinear(5, 3, norm_last_layer=False)
    with torch.no_grad():
        layer.gain.copy_(torch.tensor([[2.0], [0.5], [1.0]]))
    reference = nn.Linear(5, 3, bias=False)
    reference.weight.data.copy_(layer.direction.data)
    reference = torch.nn.utils.parametrizations.weight_norm(reference)
    reference.parametrizations.weight.original0.data.copy_(layer.gain.data)
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), reference(x))
    assert layer.gain.requires_grad
    frozen = WeightNormLinear(5, 3, norm_last_layer=True)
    assert not frozen.gain.requires_grad
    torch.testing.assert_close(frozen.weight().norm(dim=1), torch.ones(3))


def test_head_outputs_are_cosines_to_unit_prototypes():
    head = DINOHead(6, out_dim=10, hidden_dim=12, bottleneck_dim=4)
    x = torch.randn(7, 6)
    logits = head(x)
    assert logits.shape == (7, 10)
    assert logits.abs().max() <= 1 + 1e-5  # |cos| <= 1 while the gain is frozen at 1
    z = head.bottleneck(x)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(7))
    assert [type(m).__name__ for m in head.mlp] == [
        "Linear",
        "GELU",
        "Linear",
        "GELU",
        "Linear",
    ]


def test_last_layer_gradients_are_dropped_during_the_frozen_epochs():
    method = _method(freeze_last_layer_epochs=1.5)
    method.training_step(method.make_views(_images())).loss.backward()
    assert method.head.last_layer.direction.grad is not None
    method.before_optimizer_step(Progress(step=14, total_steps=40, epoch=1, steps_per_epoch=10))
    assert method.head.last_layer.direction.grad is None
    assert method.head.mlp[0].weight.grad is not None  # the rest of the head still learns
    method.training_step(method.make_views(_images())).loss.backward()
    method.before_optimizer_step(Progress(step=15, total_steps=40, epoch=1, steps_per_epoch=10))
    assert method.head.last_layer.direction.grad is not None


def test_teacher_temperature_warms_up_per_step_then_stays():
    temps = teacher_temperature_schedule(0.04, 0.07, warmup_steps=30, total_steps=100)
    # linear: 0.04 + 0.03 * k / 30 for k < 30, then 0.07
    assert temps[[0, 15, 30, 99]] == pytest.approx([0.04, 0.055, 0.07, 0.07])
    assert teacher_temperature_schedule(0.04, 0.07, 0, 5) == pytest.approx([0.07] * 5)
    # 0.5 epochs of 10 steps = 5 warm-up steps, 0.006 a step
    method = _method(
        teacher_temperature=0.07,
        warmup_teacher_temperature=0.04,
        warmup_teacher_temperature_epochs=0.5,
    )
    temps = []
    for step in range(10):
        out = method.training_step(method.make_views(_images(seed=step)))
        temps.append(float(out.logs["teacher_temperature"]))
        method.after_step(Progress(step, 10, 0, 10))
    assert temps == pytest.approx([0.04, 0.046, 0.052, 0.058, 0.064, 0.07, 0.07, 0.07, 0.07, 0.07])


def test_teacher_temperature_warm_up_is_a_number_of_epochs_not_a_fraction_of_the_run():
    # Official DINO warms up over 30 epochs whether the run has 100 or 300: the temperature at
    # a given step must not depend on the run's length.
    short, long = (
        _method(warmup_teacher_temperature_epochs=2),
        _method(warmup_teacher_temperature_epochs=2),
    )
    short.configure_schedules(total_steps=40, steps_per_epoch=10)
    long.configure_schedules(total_steps=400, steps_per_epoch=10)
    assert short.teacher_temperatures is not None and long.teacher_temperatures is not None
    assert short.teacher_temperatures[:40] == pytest.approx(long.teacher_temperatures[:40])
    assert long.teacher_temperatures[20] == pytest.approx(short.final_teacher_temperature)


def test_vit_student_drops_paths_and_the_teacher_never_does():
    from selfsup.backbones.vit import VisionTransformer

    vit = VisionTransformer(
        16, 4, in_channels=1, embed_dim=16, depth=3, num_heads=2, drop_path_rate=0.5
    )
    recipe = MultiViewTransform(dino_views(16, 8, num_local=2), mean=[0.5], std=[0.25])
    method = DINO(vit, DINOHead(16, out_dim=8, hidden_dim=16, bottleneck_dim=4), recipe)
    student_rates = [block.drop_path.p for block in method.backbone.blocks]
    teacher_rates = [block.drop_path.p for block in method.target.module[0].blocks]
    assert student_rates == pytest.approx([0.0, 0.25, 0.5]) and teacher_rates == [0.0] * 3
    method.train()
    x = torch.randn(8, 1, 16, 16)
    torch.manual_seed(0)
    assert not torch.equal(method.backbone(x), method.backbone(x))  # paths dropped at random
    assert torch.equal(method.target.module[0](x), method.target.module[0](x))


def test_dino_evaluates_its_teacher_by_default():
    method = _method()
    assert method.encoder_for("auto") is method.target.module[0]
    assert method.encoder_for("online") is method.backbone


def test_teacher_follows_the_student_by_ema_and_freezes_at_momentum_one():
    frozen = _method(momentum_base=1.0)
    before = {k: v.clone() for k, v in frozen.target.state_dict().items()}
    with torch.no_grad():
        for p in frozen.backbone.parameters():
            p.add_(1.0)
    frozen.after_step(Progress(0, 10, 0, 10))
    assert all(torch.equal(before[k], v) for k, v in frozen.target.state_dict().items())

    method = _method(momentum_base=0.9)
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    teacher_w = method.target.module[0][0].weight.clone()
    student_w = method.backbone[0].weight.clone()
    method.after_step(Progress(0, 10, 0, 10))
    m = 1 - 0.1 * (math.cos(math.pi * 1 / 10) + 1) / 2  # cosine momentum after 1 of 10 steps
    torch.testing.assert_close(
        method.target.module[0][0].weight, m * teacher_w + (1 - m) * student_w
    )
    assert float(method.target.momentum) == pytest.approx(m)


def test_diagnose_names_both_collapse_modes():
    method = _method()
    ln_k = math.log(32)
    assert method.diagnose({"teacher_entropy": 0.5 * ln_k, "kl": 0.3}) == []
    (uniform,) = method.diagnose({"teacher_entropy": ln_k, "kl": 0.0})
    assert "uniform" in uniform
    (dominant,) = method.diagnose({"teacher_entropy": 0.001, "kl": 0.0001})
    assert "one dimension" in dominant and "center" in dominant


def test_trainer_keeps_the_last_layer_fixed_while_frozen(tmp_path):
    cfg = tiny_config(
        *METHOD_OVERRIDES["dino"], "dino.freeze_last_layer_epochs=1", "train.max_steps=3"
    )
    trainer = Trainer(cfg, tmp_path / "run")
    before = trainer.method.head.last_layer.direction.detach().clone()
    mlp_before = trainer.method.head.mlp[0].weight.detach().clone()
    trainer.fit()
    assert torch.equal(trainer.method.head.last_layer.direction, before)  # AdamW skipped it
    assert not torch.equal(trainer.method.head.mlp[0].weight, mlp_before)


def _entropy_curve(tmp_path, name, *overrides):
    cfg = tiny_config(
        *METHOD_OVERRIDES["dino"],
        "train.epochs=2",  # 44 steps; without centering the entropy is ~0 from step ~13
        "dino.freeze_last_layer_epochs=0",
        "dino.momentum_base=0.9",
        *overrides,
    )
    Trainer(cfg, tmp_path / name).fit()
    import json

    lines = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [x["teacher_entropy"] for x in lines if x["kind"] == "train"], lines


@pytest.mark.slow
def test_without_centering_the_teacher_collapses_to_one_dimension(tmp_path):
    """The ablation of the paper's Fig. 7: sharpening without centering -> entropy ~ 0."""
    centered, _ = _entropy_curve(tmp_path, "centered")
    uncentered, lines = _entropy_curve(tmp_path, "uncentered", "dino.center_momentum=1.0")
    ln_k = math.log(64)
    # Measured over seeds 0 and 1: centered 0.79-0.87 ln K, uncentered below 1e-4 ln K.
    assert min(centered[-10:]) > 0.3 * ln_k, centered[-10:]
    assert max(uncentered[-10:]) < 0.05 * ln_k, uncentered[-10:]
    warnings = [w for x in lines if x["kind"] == "epoch" for w in x.get("warnings", [])]
    assert any("one dimension" in w for w in warnings)
