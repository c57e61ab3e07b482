"""The ``views`` section: the method's view recipe, the user's overrides and multi-crop.

Every field left at null takes the method's own recipe (REFERENCE.md); ``local_*`` add small
local crops to any two-view method (``selfsup.views.multicrop``); ``progressive_*`` draw the
views smaller early in training (``selfsup.views.progressive``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from selfsup.config.base import CROP_SCALE, CropScale, Float, Int, PerView, Section, says
from selfsup.config.errors import ConfigError

if TYPE_CHECKING:
    from selfsup.config.root import Config

PROBABILITY = says("{key} is a probability, got {value}; use a value in [0, 1]")
PROBABILITIES = says("{key} holds probabilities, got {value}; use values in [0, 1]")


def _one_or_three(values: list[float]) -> list[float]:
    if len(values) not in (1, 3):
        raise PydanticCustomError("channel_count", "one value or one per RGB channel")
    return values


PerChannel = Annotated[list[Float], AfterValidator(_one_or_three)]
PositivePerChannel = Annotated[list[Annotated[Float, Field(gt=0)]], AfterValidator(_one_or_three)]


class ViewsConfig(Section):
    """Every field left at null takes the method's own recipe (REFERENCE.md): SimCLR strong
    crop + colour + blur, MoCo v2 crop 0.2, BYOL asymmetric blur/solarize, MAE crop + flip only."""

    section = "views"

    size: Int = Field(
        32,
        ge=8,
        description="side of the training views in pixels",
        json_schema_extra=says("{key} must be >= 8 pixels, got {value}"),
    )
    crop_min_scale: Float | None = Field(
        None,
        gt=0,
        le=1,
        description="smallest crop area fraction of RandomResizedCrop, in (0, 1]; null = method's",
        json_schema_extra=says("{key} must be in (0, 1] or null, e.g. 0.08, got {value}"),
    )
    color_strength: Float = Field(
        1.0,
        ge=0,
        description="multiplier on the recipe's colour jitter (SimCLR's s: 0.8s/0.8s/0.8s/0.2s); "
        "0 = off",
        json_schema_extra=says("{key} must be >= 0 (0 disables jitter), got {value}"),
    )
    jitter_p: Float | None = Field(
        None,
        ge=0,
        le=1,
        description="probability of colour jitter per view; null = method's",
        json_schema_extra=PROBABILITY,
    )
    gray_p: Float | None = Field(
        None,
        ge=0,
        le=1,
        description="probability of grayscale per view; null = method's",
        json_schema_extra=PROBABILITY,
    )
    blur_p: PerView | None = Field(
        None,
        description="Gaussian blur probability per view (one value = every view); 0 for <= 32 px "
        "images",
        json_schema_extra=PROBABILITIES,
    )
    solarize_p: PerView | None = Field(
        None,
        description="solarize probability per view (one value = every view); null = method's",
        json_schema_extra=PROBABILITIES,
    )
    flip_p: Float | None = Field(
        None,
        ge=0,
        le=1,
        description="probability of horizontal flip per view; null = method's",
        json_schema_extra=PROBABILITY,
    )
    local_crops: Int | None = Field(
        None,
        ge=0,
        description="multi-crop: small local crops per image besides the 2 global views; null = "
        "method's (DINO 8, SwAV 6, others 0); any two-view method takes them",
        json_schema_extra=says("{key} must be an integer >= 0 or null, got {value}"),
    )
    local_size: Int | None = Field(
        None,
        ge=8,
        description="side of the local crops in pixels, in [8, views.size]; null = 96/224 of "
        "views.size (the papers' 96 px for 224 px globals)",
    )
    local_crop_scale: CropScale | None = Field(
        None,
        description="area range [min, max] of the local crops; null = method's (DINO 0.05-0.4, "
        "SwAV 0.05-0.14)",
        json_schema_extra=CROP_SCALE,
    )
    progressive_start_size: Int | None = Field(
        None,
        ge=8,
        description="progressive resizing (FFCV): side of the global views at step 0, in [8, "
        "views.size]; it grows linearly to views.size by progressive_until of the run, local "
        "crops scale with it; evaluation stays at views.size; null = off. Not with a ViT or "
        "jigsaw",
        json_schema_extra=says(
            "{key} must be an integer >= 8 pixels (at most views.size) or null (off), got {value}"
        ),
    )
    progressive_until: Float = Field(
        0.75,
        gt=0,
        le=1,
        description="fraction of the run's optimiser steps at which progressive resizing "
        "reaches views.size, in (0, 1]",
        json_schema_extra=says("{key} is a fraction of the run in (0, 1], got {value}"),
    )
    progressive_step: Int = Field(
        4,
        ge=1,
        description="progressive sides are rounded down to a multiple of this (pixels): fewer "
        "distinct shapes for torch.compile and cudnn autotuning",
        json_schema_extra=says("{key} must be an integer >= 1 pixel, got {value}"),
    )
    mean: PerChannel | None = Field(
        None,
        description="normalisation mean per channel (1 or 3 values); null = dataset's",
        json_schema_extra=says("{key} needs 1 or 3 values (one per channel), got {value}"),
    )
    std: PositivePerChannel | None = Field(
        None,
        description="normalisation std per channel (1 or 3 values > 0); null = dataset's",
        json_schema_extra=says("{key} needs 1 or 3 values > 0 (one per channel), got {value}"),
    )

    def check(self, cfg: Config) -> None:
        from selfsup.methods.registry import get_method  # the registry imports every method

        self._check_progressive(cfg)
        multicrop = get_method(cfg.method).multicrop
        if multicrop is None:
            if self.local_crops:
                raise ConfigError(
                    f"views.local_crops={self.local_crops}: {cfg.method} takes no local crops "
                    "(multi-crop is for two-view methods); set views.local_crops=0 or null"
                )
            return
        size = local_crop_size(cfg)
        if size > self.size:
            raise ConfigError(
                f"views.local_size={size} must be in [8, views.size={self.size}] pixels"
            )
        patch = cfg.backbone.patch_size
        if cfg.backbone.name.startswith("vit") and size % patch != 0:
            raise ConfigError(
                f"views.local_size={size} must be a multiple of backbone.patch_size={patch} "
                "(ViT patches); set views.local_size"
            )

    def _check_progressive(self, cfg: Config) -> None:
        start = self.progressive_start_size
        if start is None:
            return
        if start > self.size:
            raise ConfigError(
                f"views.progressive_start_size={start} must be in [8, views.size={self.size}] "
                "pixels (the side at step 0 grows to views.size); lower it, or leave it null (off)"
            )
        if cfg.backbone.name.startswith("vit"):
            raise ConfigError(
                f"views.progressive_start_size={start}: {cfg.backbone.name} has a fixed patch grid "
                "and position embeddings for views.size, so its views cannot change size; leave "
                "views.progressive_start_size null with a ViT"
            )


def local_crop_size(cfg: Config) -> int:
    """``views.local_size``, or 96/224 of ``views.size`` (at least 8 px; for a ViT rounded to
    a multiple of its patch size)."""
    if cfg.views.local_size is not None:
        return cfg.views.local_size
    size = max(8, round(cfg.views.size * 96 / 224))
    patch = cfg.backbone.patch_size
    if cfg.backbone.name.startswith("vit"):
        size = max(patch, round(size / patch) * patch)
    return min(size, cfg.views.size)
