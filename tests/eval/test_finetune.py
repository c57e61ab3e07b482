"""Fine-tuning and the augmented linear protocol: what trains, what is frozen, and that the
test split reaches nothing before the hyper-parameters are fixed."""

from __future__ import annotations

import pytest
import torch

from selfsup.backbones import build_backbone
from selfsup.data import load_dataset
from selfsup.eval import finetune as finetune_module
from selfsup.eval import linear as linear_module
from selfsup.eval.finetune import finetune, layer_lr_scales, recipe_for
from selfsup.eval.subsets import stratified_subset
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def _resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("resnet18", in_channels=1, width=0.125, cifar_stem=True, image_size=8)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _run(encoder, digits, frozen: bool, **kw):
    train, test = digits
    subset = stratified_subset(train.labels, 10, 0.1, seed=0)
    recipe = recipe_for("resnet18", 0.1, frozen=frozen, epochs=2, batch_size=32, **kw)
    return finetune(encoder, train, subset, test, 10, recipe, 8, [0.5], [0.25])


def test_finetuning_changes_the_encoder_and_the_linear_protocol_does_not(digits):
    encoder = _resnet()
    before = _state(encoder)
    tuned = _run(encoder, digits, frozen=False)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # a copy
    assert tuned.encoder is not None
    changed = [k for k, v in tuned.encoder.state_dict().items() if not torch.equal(before[k], v)]
    assert any(k.endswith("weight") and "conv" in k for k in changed)

    probe = _run(encoder, digits, frozen=True)
    assert probe.encoder is None
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert 0.0 <= probe.test_accuracy <= 1.0 and len(probe.history) == 2


def test_the_test_split_is_read_once_after_selection(digits, monkeypatch):
    """Asserted, not assumed: record every batch the protocol reads, in order."""
    _train, test = digits
    reads: list[str] = []
    real = finetune_module.iterate_batches

    def spy(dataset, batch_size, device, indices=None):
        reads.append("test" if dataset is test else "train")
        return real(dataset, batch_size, device, indices)

    monkeypatch.setattr(finetune_module, "iterate_batches", spy)
    result = _run(_resnet(), digits, frozen=False, base_lrs=(0.05, 0.2))
    assert len(result.history) == 2  # two candidates were scored on validation
    first_test = reads.index("test")
    assert reads[first_test:] == ["test"]  # one pass over the test split, the very last read
    assert "train" in reads[:first_test]


def test_linear_probe_selection_cannot_see_the_test_split():
    torch.manual_seed(0)
    x, y = torch.randn(300, 8), torch.randint(0, 3, (300,))
    x[torch.arange(300), y] += 2.0  # separable-ish
    test_x, test_y = torch.randn(60, 8), torch.randint(0, 3, (60,))
    args = {"epochs": 5, "lrs": (0.01, 0.1, 1.0), "seed": 0}
    a = linear_module.linear_probe(x, y, test_x, test_y, 3, **args)
    garbage = linear_module.linear_probe(x, y, test_x * 1e3 - 7, (test_y + 1) % 3, 3, **args)
    assert a.history == garbage.history and a.lr == garbage.lr  # selection ignores the test split


def test_layer_wise_lr_decay_follows_mae():
    vit = build_backbone("vit_micro", in_channels=1, image_size=8, patch_size=2)
    depth = len(vit.blocks)
    scales = layer_lr_scales(vit, 0.5)
    assert scales["patch_embed.proj.weight"] == 0.5 ** (depth + 1)
    assert scales["cls_token"] == 0.5 ** (depth + 1)
    assert scales["blocks.0.attn.qkv.weight"] == 0.5**depth
    assert scales[f"blocks.{depth - 1}.mlp.fc1.weight"] == 0.5
    assert scales["norm.weight"] == 1.0


def test_recipes_follow_the_papers():
    resnet = recipe_for("resnet18", 0.01)
    assert (resnet.optimizer, resnet.epochs, resnet.weight_decay) == ("sgd", 60, 0.0)
    assert recipe_for("resnet18", 0.1).epochs == 30
    vit = recipe_for("vit_small", 0.1)
    assert (vit.optimizer, vit.layer_decay, vit.weight_decay) == ("adamw", 0.75, 0.05)
    assert (vit.mixup_alpha, vit.cutmix_alpha, vit.label_smoothing) == (0.8, 1.0, 0.1)
    frozen = recipe_for("vit_small", 0.1, frozen=True, head_batch_norm=True)
    assert frozen.frozen and frozen.head_batch_norm and frozen.epochs == 90
    assert recipe_for("resnet18", 0.1, epochs=3, base_lrs=[0.5]).base_lrs == (0.5,)


def test_finetune_warmup_follows_the_config_and_defaults_to_the_recipe():
    from selfsup.eval.protocols import image_recipe

    cfg = tiny_config("backbone.name=vit_micro", "backbone.patch_size=2")
    assert image_recipe(cfg, "finetune", 0.1).warmup_epochs == 5  # MAE's recipe
    cfg.eval.finetune_warmup_epochs = 0.5  # a 3-epoch run scaled down with its warm-up
    assert image_recipe(cfg, "finetune", 0.1).warmup_epochs == 0.5
    assert image_recipe(cfg, "linear_aug", 0.1).warmup_epochs == 0  # the frozen protocol's


def test_finetune_regularise_switches_maes_regularisers_as_one():
    from selfsup.eval.protocols import image_recipe

    regularisers = ("rand_augment", "mixup_alpha", "cutmix_alpha", "label_smoothing", "drop_path")
    cfg = tiny_config("backbone.name=vit_micro", "backbone.patch_size=2")
    on = image_recipe(cfg, "finetune", 0.1)  # null: the ViT recipe keeps MAE's
    assert [getattr(on, k) for k in regularisers] == [True, 0.8, 1.0, 0.1, 0.1]
    cfg.eval.finetune_regularise = False
    off = image_recipe(cfg, "finetune", 0.1)
    assert [getattr(off, k) for k in regularisers] == [False, 0.0, 0.0, 0.0, 0.0]
    assert (off.optimizer, off.layer_decay, off.weight_decay) == ("adamw", 0.75, 0.05)  # the rest
    resnet = tiny_config("eval.finetune_regularise=true")
    assert image_recipe(resnet, "finetune", 0.1).mixup_alpha == 0.8
    # the frozen probe never takes them, whatever the setting
    assert not image_recipe(resnet, "linear_aug", 0.1).rand_augment
