"""An arm: one preset with a claim's changes, trained for a budget with one seed.

:func:`arm_config` resolves it to the exact configuration the trainer runs (preset, ``--data``
or ``--tiny`` sizes, the claim's overrides, the budget in steps, the lab's fixed settings, the
seed, the normalisation statistics of the training data), and :func:`config_key` names that
configuration: the run directory ``LAB_DIR/runs/<key>/`` and, with the measures, the cached
result. Two arms of two claims with the same resolved configuration train once.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from selfsup import build
from selfsup.config import Config, apply_overrides
from selfsup.data import ImageDataset
from selfsup.lab.settings import (
    LAB_TRAIN,
    TINY_STEPS,
    TRAIN_IMAGES,
    WARMUP_SHARE,
    LabSettings,
    presets_dir,
    tiny_overrides,
)

__all__ = [
    "KEY_NEUTRAL_DEFAULTS",
    "ArmSpec",
    "arm_config",
    "base_config",
    "config_key",
    "digest",
    "preset_config",
    "run_plan",
    "train_images",
]


@dataclass(frozen=True)
class ArmSpec:
    """One setting of a claim.

    Attributes:
        name: what the tables call it (``batch 64``, ``no predictor``).
        preset: a file of ``configs/`` without ``.yaml`` (``simclr_fashion_mnist``).
        overrides: ``key=value`` changes to the preset that make this arm.
        epochs: training budget in epochs of the training data (``--scale`` multiplies it).
        x: the arm's position on a sweep (batch size, temperature...), for plots and trends.
        per_run: ``(key, share)`` pairs set to ``share`` x the run's epochs (e.g. a warm-up
            that scales with the run); ``optim.warmup_epochs`` defaults to
            :data:`~selfsup.lab.settings.WARMUP_SHARE`.
    """

    name: str
    preset: str
    overrides: tuple[str, ...] = ()
    epochs: float = 1.0
    x: float | None = None
    per_run: tuple[tuple[str, float], ...] = ()


@functools.cache
def _preset_text(name: str) -> str:
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"preset {path} not found; `selfsup lab` runs from a selfsup checkout, whose "
            "configs/ folder holds the presets the claims start from"
        )
    return path.read_text()


def preset_config(name: str) -> Config:
    """A fresh copy of ``configs/<name>.yaml``."""
    import yaml

    return Config.from_dict(yaml.safe_load(_preset_text(name)))


def run_plan(
    arm: ArmSpec, settings: LabSettings, train_images: int, batch: int
) -> tuple[int, float]:
    """``(steps, epochs)`` of the arm's run: its budget times ``--scale`` (``--tiny``: a few
    steps), at least one step."""
    if settings.tiny:
        steps = max(2, round(TINY_STEPS * settings.scale))
    else:
        steps = max(1, round(settings.scale * arm.epochs * train_images / batch))
    return steps, steps * batch / train_images


def base_config(arm: ArmSpec, settings: LabSettings) -> Config:
    """The preset at the lab's size (``--data`` / ``--tiny``) with the arm's overrides: what
    decides the training data, before the budget and the lab's settings."""
    cfg = preset_config(arm.preset)
    if settings.tiny:
        apply_overrides(cfg, tiny_overrides(cfg.method))
    elif settings.data != cfg.data.dataset:
        apply_overrides(cfg, [f"data.dataset={settings.data}"])
    if settings.device != "auto":
        apply_overrides(cfg, [f"train.device={settings.device}"])
    return apply_overrides(cfg, arm.overrides)


def arm_config(arm: ArmSpec, seed: int, settings: LabSettings, train_set: ImageDataset) -> Config:
    """The arm's resolved, validated configuration for ``seed`` (``train_set`` gives the
    budget's epoch size and the normalisation statistics)."""
    cfg = base_config(arm, settings)
    steps, epochs = run_plan(arm, settings, len(train_set), cfg.train.batch_size)
    per_run = dict((("optim.warmup_epochs", WARMUP_SHARE), *arm.per_run))
    apply_overrides(
        cfg,
        [
            *LAB_TRAIN,
            f"train.seed={seed}",
            f"train.total_steps={steps}",
            f"train.epochs={max(1, math.ceil(epochs))}",
            f"train.log_every={max(1, steps // 40)}",
            f"train.checkpoint_every_steps={max(1, steps // 10)}",
            *(f"{key}={share * epochs:.6g}" for key, share in per_run.items()),
        ],
    )
    cfg.validate()
    return build.resolve_normalization(cfg, train_set)


def train_images(settings: LabSettings) -> int:
    """Images per epoch of the lab's training data (for estimates; runs use the real count)."""
    return TRAIN_IMAGES.get(settings.dataset, 50000)


def digest(data: Any) -> str:
    """A short SHA-256 of ``data`` as canonical JSON."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# Options added after results were cached, with the default that reproduces the behaviour from
# before them: left out of the key while at that default, so that adding an option does not
# make every cached run train again. An option whose default changes what a run does must not
# be listed (its runs must be new).
KEY_NEUTRAL_DEFAULTS: dict[str, Any] = {
    "eval.finetune_regularise": None,  # null = each recipe's own regularisers, as before
}


def config_key(cfg: Config) -> str:
    """The run's name: a hash of the resolved configuration (``run_dir`` aside; the options of
    :data:`KEY_NEUTRAL_DEFAULTS` aside while at their default)."""
    data = copy.deepcopy(cfg.to_dict())
    data["run_dir"] = None
    for dotted, default in KEY_NEUTRAL_DEFAULTS.items():
        *parents, leaf = dotted.split(".")
        section = data
        for part in parents:
            section = section.get(part, {})
        if leaf in section and section[leaf] == default:
            del section[leaf]
    return digest(data)
