"""The method registry: every method registers itself, builds from its config section, and
its constructor's defaults are the config's defaults (one set of defaults)."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from selfsup import build
from selfsup.config import Config
from selfsup.methods import Method
from selfsup.methods.registry import get_method, method_names, register_method

BUILT_IN = [
    "simclr",
    "moco",
    "mocov3",
    "byol",
    "mae",
    "dino",
    "simsiam",
    "barlow",
    "vicreg",
    "swav",
    "rotation",
    "jigsaw",
]


def test_every_built_in_method_is_registered_with_its_config_section() -> None:
    assert set(BUILT_IN) <= set(method_names())
    for name in BUILT_IN:
        entry = get_method(name)
        assert entry.cls.name == name and issubclass(entry.cls, Method)
        cfg = Config()
        assert entry.section(cfg) is getattr(cfg, name)  # the section the method reads


@pytest.mark.parametrize("name", BUILT_IN)
def test_constructor_defaults_are_the_config_defaults(name: str) -> None:
    entry = get_method(name)
    section = getattr(Config(), name)
    defaults = {
        p.name: p.default
        for p in inspect.signature(entry.cls.__init__).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    assert defaults, f"{name} has no defaulted constructor arguments to compare"
    for arg, default in defaults.items():
        assert hasattr(section, arg), f"{name}({arg}=...) has no config field {name}.{arg}"
        assert getattr(section, arg) == default, (
            f"{name}: constructor default {arg}={default!r} but config default "
            f"{name}.{arg}={getattr(section, arg)!r}"
        )


@pytest.mark.parametrize("name", BUILT_IN)
def test_make_method_builds_the_registered_class_with_its_views(name: str) -> None:
    cfg = Config()
    cfg.method = name
    cfg.views.size = 16
    cfg.views.mean, cfg.views.std = [0.5], [0.25]
    if name in ("mae", "dino"):
        cfg.backbone.name, cfg.backbone.patch_size = "vit_micro", 4
        cfg.views.local_size = 8
    else:
        cfg.backbone.width = 0.125
    method = build.make_method(cfg, in_channels=1)
    assert type(method) is get_method(name).cls
    multicrop = get_method(name).multicrop
    local_crops = multicrop.count if multicrop is not None else 0
    expected_views = len(get_method(name).views(cfg)) + local_crops
    assert method.view_recipe.num_views == expected_views


def test_unknown_method_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'simclrr'.*simclr"):
        get_method("simclrr")


def test_a_name_cannot_be_registered_by_two_classes() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_method("simclr", views=lambda cfg: [])
        class Other(Method):
            def training_step(self, views: list[torch.Tensor]) -> None:  # type: ignore[override]
                del views


def test_network_choice_online_target_auto() -> None:
    cfg = Config()
    cfg.method, cfg.views.size, cfg.backbone.width = "byol", 16, 0.125
    cfg.views.mean, cfg.views.std = [0.5], [0.25]
    byol = build.make_method(cfg, in_channels=1)
    assert byol.encoder_for("auto") is byol.backbone  # BYOL's protocol evaluates online
    target = byol.encoder_for("target")
    assert isinstance(target, nn.Module) and target is not byol.backbone
    assert all(not p.requires_grad for p in target.parameters())
    cfg.method = "simclr"
    simclr = build.make_method(cfg, in_channels=1)
    with pytest.raises(ValueError, match="no EMA target"):
        simclr.encoder_for("target")
