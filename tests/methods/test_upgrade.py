"""Checkpoints of selfsup 0.1 (format 1): keys mapped to today's layout, or a clear refusal."""

from __future__ import annotations

import pytest
import torch

from selfsup import build
from selfsup.config import Config
from selfsup.methods.upgrade import CHECKPOINT_FORMAT, upgrade_method_state

OLD = "selfsup-checkpoint/1"


def _method(name: str):
    cfg = Config()
    cfg.method, cfg.views.size, cfg.backbone.width = name, 16, 0.125
    cfg.views.mean, cfg.views.std = [0.5], [0.25]
    cfg.moco.queue_size = 64
    return build.make_method(cfg, in_channels=1)


def _as_format_1(state: dict, method: str) -> dict:
    """Today's state dict written back in selfsup 0.1's names (the inverse of the upgrade)."""
    old = {}
    for key, value in state.items():
        if method == "dino":
            key = key.replace("target.module.", "teacher.").replace("criterion.", "loss_fn.")
            key = key.replace("target.momentum", "teacher_momentum")
        else:
            key = key.replace("target.module.", "target.").replace(
                "target.momentum", "target_momentum"
            )
        old[key] = value
    return old


@pytest.mark.parametrize("name", ["moco", "mocov3", "dino"])
def test_format_1_keys_map_to_the_current_layout_exactly(name: str) -> None:
    method = _method(name)
    state = method.state_dict()
    old = _as_format_1(state, name)
    if name == "moco":  # MoCo v2 had no momentum buffer in format 1
        del old["target_momentum"]
    assert set(old) != set(state)  # the names really differ
    upgraded = upgrade_method_state(name, old, OLD)
    assert set(upgraded) == set(state)
    for key, value in upgraded.items():
        assert torch.equal(value, state[key]), key
    method.load_state_dict(upgraded)  # strict: nothing missing, nothing unexpected


def test_current_format_is_left_alone_and_unknown_formats_are_refused() -> None:
    state = {"backbone.weight": torch.ones(1)}
    assert upgrade_method_state("simclr", state, CHECKPOINT_FORMAT) is state
    with pytest.raises(ValueError, match=r"selfsup-checkpoint/9.*another version"):
        upgrade_method_state("simclr", state, "selfsup-checkpoint/9")


def test_format_1_byol_with_biased_heads_is_refused_naming_the_version_and_the_fix() -> None:
    old = {"projector.3.bias": torch.zeros(2), "target.0.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"selfsup 0\.1.*bias.*start a new run"):
        upgrade_method_state("byol", old, OLD)
