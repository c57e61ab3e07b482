"""The ``colorization`` section: Colorful Image Colorization (Zhang, Isola & Efros 2016).

The encoder sees the CIE L channel of colour images and a small decoder predicts their ab
colour, as a distribution over quantised ab bins (the paper's classification loss with class
rebalancing) or as two numbers (the L2 regression baseline). Its ``check`` refuses data
without colour before anything is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from selfsup.config.base import Float, Int, Section, says
from selfsup.config.errors import ConfigError

if TYPE_CHECKING:
    from selfsup.config.root import Config

# Named datasets whose images are grey: nothing to colorize.
GRAYSCALE_DATASETS: tuple[str, ...] = ("fashion_mnist", "mnist", "digits")
COLOUR_DATA_FIX = (
    "train on colour images: data.dataset=photo_patches (offline, scikit-image's photographs), "
    "data.dataset=cifar10, or data.dataset=folder with a folder of colour images"
)


class ColorizationConfig(Section):
    section = "colorization"
    standalone: ClassVar[dict[str, Any]] = {
        # The paper: Adam, beta (0.9, 0.99), weight decay 1e-3, lr 3e-5 at batch 40 (1.92e-4
        # per 256 images with the linear rule); here AdamW and the cosine schedule.
        "optim.name": "adamw",
        "optim.base_lr": 3e-5 * 256 / 40,
        "optim.lr_scaling": "linear",
        "optim.betas": [0.9, 0.99],
        "optim.weight_decay": 1e-3,
        "optim.warmup_epochs": 0.0,
    }

    loss: Literal["classification", "regression"] = Field(
        "classification",
        description="classification: cross-entropy on soft-encoded ab bins with class "
        "rebalancing (the paper's loss, vivid colours); regression: L2 on ab (the classic "
        "baseline, which averages colours towards grey)",
    )
    grid_size: Float = Field(
        10.0,
        gt=0,
        description="side of the ab quantisation cells in Lab units (paper 10: 261 in-gamut bins "
        "here, 313 in the paper); smaller cells give more bins and a costlier head",
        json_schema_extra=says("{key} must be > 0 Lab units (the paper uses 10), got {value}"),
    )
    num_neighbors: Int = Field(
        5,
        ge=1,
        description="soft encoding: a colour's target spreads over its k nearest bins (paper 5; "
        "1 = a one-hot target)",
    )
    encode_sigma: Float = Field(
        5.0,
        gt=0,
        description="soft encoding: Gaussian width in Lab units of the weights of the nearest "
        "bins (paper 5)",
    )
    prior_sigma: Float = Field(
        5.0,
        gt=0,
        description="Gaussian width in Lab units smoothing the empirical colour distribution "
        "before rebalancing (paper 5)",
    )
    rebalance_lambda: Float = Field(
        0.5,
        ge=0,
        le=1,
        description="lambda in w ~ 1/((1 - lambda) p + lambda / Q): mixes the colour prior with "
        "a uniform one; 1 = no rebalancing, small values boost rare colours hard (paper 0.5)",
        json_schema_extra=says("{key} must be in [0, 1] (the paper uses 0.5), got {value}"),
    )
    temperature: Float = Field(
        0.38,
        gt=0,
        le=1,
        description="annealed-mean temperature T of the pictures' colours: 1 = the mean "
        "(desaturated), towards 0 = the mode (vivid, patchy); paper 0.38",
        json_schema_extra=says("{key} must be in (0, 1] (the paper uses 0.38), got {value}"),
    )
    output_stride: Int = Field(
        4,
        ge=1,
        description="the prediction is made at 1/output_stride of the view's side (paper 4); "
        "must divide views.size",
    )
    head_dim: Int = Field(
        256, ge=1, description="channels of the decoder head's two 3x3 convolutions"
    )
    prior_images: Int = Field(
        10000,
        ge=1,
        description="training images (evenly spread over the dataset) from which the colour "
        "prior p is counted before training",
    )

    def check(self, cfg: Config) -> None:
        d = cfg.data
        if d.dataset in GRAYSCALE_DATASETS or d.channels == 1:
            what = (
                f"data.dataset={d.dataset} holds grey images"
                if d.channels != 1
                else "data.channels=1 makes the images grey"
            )
            raise ConfigError(
                f"colorization predicts colours from lightness, but {what}; {COLOUR_DATA_FIX}"
            )
        if cfg.views.gray_p:
            raise ConfigError(
                f"views.gray_p={cfg.views.gray_p}: a grey view has no colour to predict; leave "
                "views.gray_p unset (or 0) for colorization"
            )
        if cfg.views.size % self.output_stride != 0:
            raise ConfigError(
                f"colorization.output_stride={self.output_stride} must divide views.size="
                f"{cfg.views.size} (the targets are averaged over output_stride-pixel blocks)"
            )
        # progressive sides: the start, multiples of the step, views.size
        start, stride = cfg.views.progressive_start_size, self.output_stride
        sides = {"progressive_start_size": start, "progressive_step": cfg.views.progressive_step}
        bad = [f"views.{k}={v}" for k, v in sides.items() if v is not None and v % stride]
        if bad and start is not None:
            raise ConfigError(
                f"{' and '.join(bad)}: colorization.output_stride={stride} must divide every "
                f"progressive view side (the targets are averaged over {stride}-pixel blocks); "
                f"use multiples of {stride}"
            )
        if cfg.backbone.name.startswith("timm:"):
            raise ConfigError(
                f"colorization decodes colours from spatial features, which {cfg.backbone.name} "
                "does not expose; use a selfsup ResNet (resnet18...) or ViT (vit_tiny...)"
            )
        if cfg.train.batch_size < 2:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size}: the decoder head's BatchNorm needs at "
                "least 2 images per batch; raise train.batch_size"
            )
