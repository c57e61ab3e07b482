"""The presets carry the official recipes' details that differ between methods."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from selfsup import build
from selfsup.config import Config
from selfsup.methods.simclr import SimCLR
from selfsup.train.step import TrainStep

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _small(cfg: Config) -> Config:
    """The preset, shrunk to a CPU-test size without touching what is under test."""
    cfg.views.mean, cfg.views.std = [0.5], [0.25]
    cfg.train.batch_size = 16
    return cfg


def test_moco_v2_preset_decays_every_parameter_as_the_official_sgd() -> None:
    cfg = _small(Config.from_yaml(CONFIGS / "moco_fashion_mnist.yaml"))
    cfg.moco.queue_size = 64
    method = build.make_method(cfg, in_channels=1)
    optimizer, _ = build.make_optimizer(cfg, method)
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    biases = [p for n, p in method.named_parameters() if n.endswith("bias") and p.requires_grad]
    assert biases and all(decays[id(p)] == 1e-4 for p in biases)
    # Every other method keeps biases and norm parameters out of weight decay.
    simclr = _small(Config.from_yaml(CONFIGS / "simclr_fashion_mnist.yaml"))
    method = build.make_method(simclr, in_channels=1)
    optimizer, _ = build.make_optimizer(simclr, method)
    decays = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert all(decays[id(p)] == 0.0 for n, p in method.named_parameters() if n.endswith("bias"))


def test_moco_v3_vit_preset_keeps_the_random_patch_projection_fixed() -> None:
    cfg = _small(Config.from_yaml(CONFIGS / "mocov3_vit_small_paper.yaml"))
    cfg.backbone.name, cfg.views.size, cfg.backbone.patch_size = "vit_micro", 16, 4
    cfg.mocov3.proj_hidden_dim = cfg.mocov3.pred_hidden_dim = 32
    method = build.make_method(cfg, in_channels=1)
    frozen = [n for n, p in method.named_parameters() if not p.requires_grad]
    assert "backbone.patch_embed.proj.weight" in frozen
    assert "backbone.patch_embed.proj.bias" in frozen
    optimizer, _ = build.make_optimizer(cfg, method)
    optimised = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(method.backbone.patch_embed.proj.weight) not in optimised
    assert method.predictor[-1].affine is False  # the ViT predictor ends in BN without affine


def test_freezing_the_patch_projection_needs_a_vit() -> None:
    cfg = _small(Config())
    cfg.backbone.freeze_patch_embed = True
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        build.make_backbone(cfg, in_channels=1)


def test_dino_vit_preset_student_drops_paths_at_rate_0_1() -> None:
    cfg = _small(Config.from_yaml(CONFIGS / "dino_vit_fashion_mnist.yaml"))
    method = build.make_method(cfg, in_channels=1)
    assert method.backbone.blocks[-1].drop_path.p == pytest.approx(0.1)
    assert method.target[0].blocks[-1].drop_path.p == 0.0


def test_simclr_official_loss_scale_is_twice_the_paper_mean() -> None:
    cfg = _small(Config())
    cfg.views.size, cfg.backbone.width = 16, 0.125
    torch.manual_seed(0)
    paper = build.make_method(cfg, in_channels=1)
    assert isinstance(paper, SimCLR)
    official = SimCLR(paper.backbone, paper.projector, paper.view_recipe, loss_scale="sum")
    views = paper.make_views(torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8))
    paper.eval()
    official.eval()
    with torch.no_grad():
        mean, summed = paper.training_step(views).loss, official.training_step(views).loss
    torch.testing.assert_close(summed, 2 * mean)


@pytest.mark.parametrize("name", ["simsiam", "barlow", "vicreg", "swav"])
def test_siamese_presets_build_their_recipe_and_take_a_step(name: str) -> None:
    cfg = _small(Config.from_yaml(CONFIGS / f"{name}_fashion_mnist.yaml"))
    cfg.backbone.width = 0.125
    torch.manual_seed(0)
    method = build.make_method(cfg, in_channels=1)
    step = TrainStep.from_config(cfg, method, steps_per_epoch=4, device="cpu")
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    result = step(images, 0, torch.Generator().manual_seed(0))
    assert torch.isfinite(result.loss)
    groups = step.optimizer.param_groups
    if name == "simsiam":  # the predictor at the peak lr, everything decayed (official SGD)
        fixed = {id(p) for g in groups if g["fixed_lr"] for p in g["params"]}
        assert fixed == {id(p) for p in method.predictor.parameters()}
        assert all(g["weight_decay"] == 5e-4 for g in groups)
    if name == "barlow":  # biases and BN at 196 / D of the weights' lr (D = 1024)
        assert {g["lr_scale"] for g in groups if g["lars_exclude"]} == {0.19}
    if name == "swav":  # two 28 px crops (the time-to-accuracy sweep dropped the local ones)
        assert [s.size for s in method.view_recipe.specs] == [28, 28]
        assert method.temperature == 0.2
