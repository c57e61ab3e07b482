"""The sections of the pretext-task methods: rotation prediction and jigsaw puzzles.

Like every method section (``selfsup.config.methods``), each owns the checks that involve other
sections, and ``standalone`` names the options its paper sets elsewhere (its optimiser).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from selfsup.config.base import Int, Section, says
from selfsup.config.errors import ConfigError

if TYPE_CHECKING:
    from selfsup.config.root import Config

__all__ = ["JigsawConfig", "RotationConfig", "jigsaw_geometry"]

# The paper's puzzle: 64 px tiles in 75 px cells (225 px crop, 3x3 grid).
PAPER_TILE_FRACTION = 64 / 75


def default_tile_size(cell_size: int, patch_size: int = 1) -> int:
    """The paper's tile-to-cell ratio, 64/75, rounded down (to a multiple of ``patch_size``).

    Example:
        >>> default_tile_size(75), default_tile_size(10), default_tile_size(10, patch_size=4)
        (64, 8, 8)
    """
    tile = math.floor(cell_size * PAPER_TILE_FRACTION + 1e-9)
    return tile - tile % patch_size


def jigsaw_geometry(
    view_size: int, grid_size: int, tile_size: int | None, patch_size: int = 1
) -> tuple[int, int]:
    """``(cell_size, tile_size)`` of a puzzle cut from ``view_size`` px views: cells of
    ``view_size // grid_size`` px, the grid centred; ``tile_size`` None = the paper's ratio.

    Raises ``ValueError`` naming the sizes when the tile does not fit its cell, or is not a
    whole number of ``patch_size`` patches (a ViT).

    Example:
        >>> jigsaw_geometry(30, 3, None), jigsaw_geometry(225, 3, 64)
        ((10, 8), (75, 64))
    """
    cell = view_size // grid_size
    tile = default_tile_size(cell, patch_size) if tile_size is None else tile_size
    if cell < 1 or tile < 1:
        raise ValueError(
            f"views.size={view_size} cut into a {grid_size}x{grid_size} grid leaves {cell} px "
            f"cells, too small for a tile of at least {patch_size} px; raise views.size"
        )
    if tile > cell:
        raise ValueError(
            f"jigsaw.tile_size={tile} does not fit its cell: views.size={view_size} cut into a "
            f"{grid_size}x{grid_size} grid gives {cell} px cells ({view_size} // {grid_size}); "
            f"set jigsaw.tile_size <= {cell} (about 0.85 of a cell leaves the paper's gap) or "
            f"raise views.size to at least {grid_size * tile}"
        )
    if tile % patch_size != 0:
        raise ValueError(
            f"jigsaw.tile_size={tile} is not a multiple of backbone.patch_size={patch_size}: "
            "the ViT cuts every tile into whole patches; choose a multiple (or null for the "
            "largest one at the paper's ratio)"
        )
    return cell, tile


class RotationConfig(Section):
    """Rotation prediction, RotNet (Gidaris et al. 2018): 4-way classification of 0/90/180/270
    degree rotations. The paper's CIFAR-10 optimiser: SGD (Nesterov) momentum 0.9, lr 0.1 at
    batch 128, weight decay 5e-4 on every parameter."""

    section = "rotation"
    standalone: ClassVar[dict[str, Any]] = {
        "optim.name": "sgd",
        "optim.base_lr": 0.2,  # 0.1 at the paper's batch of 128 under the linear rule
        "optim.lr_scaling": "linear",
        "optim.weight_decay": 5e-4,
        "optim.warmup_epochs": 0.0,
        "optim.decay_norm_and_bias": True,
    }

    head: Literal["linear", "mlp"] = Field(
        "mlp",
        description="rotation classifier on the pooled backbone features: linear (one Linear to "
        "the 4 rotations) or mlp (Linear-BN-ReLU-Linear of width hidden_dim, which keeps the "
        "last backbone layer from specialising to rotations alone; the paper's classifier is the "
        "network's last conv blocks)",
    )
    hidden_dim: Int = Field(
        1024,
        ge=1,
        description="hidden width of the mlp head (256-2048; unused by the linear head)",
        json_schema_extra=says("{key} must be >= 1 (e.g. 1024), got {value}"),
    )


class JigsawConfig(Section):
    """Jigsaw puzzles (Noroozi & Favaro 2016): the shuffled tiles of a crop, a shared tile
    encoder, a classifier of the permutation. The paper's optimiser: SGD lr 0.01 at batch 256
    (momentum 0.9 and weight decay 5e-4 are the usual values of its Caffe set-up)."""

    section = "jigsaw"
    standalone: ClassVar[dict[str, Any]] = {
        "optim.name": "sgd",
        "optim.base_lr": 0.01,
        "optim.lr_scaling": "linear",
        "optim.weight_decay": 5e-4,
        "optim.warmup_epochs": 0.0,
        # training sees tiles only, never the whole-image features a probe would be tested on
        "train.online_linear": False,
    }

    grid_size: Literal[2, 3] = Field(
        3,
        description="the puzzle is a grid_size x grid_size grid of cells cut from the view: 3 in "
        "the paper (9 tiles, 9! orders); 2 gives 4 tiles and at most 24 permutations",
        json_schema_extra=says("{key} must be 2 or 3 (3 in the paper), got {value}"),
    )
    tile_size: Int | None = Field(
        None,
        ge=1,
        description="side in px of the tile taken at a random offset inside each "
        "views.size // grid_size px cell; <= the cell, and smaller leaves a gap that hides "
        "edge continuity (paper: 64 in 75 px cells; Fashion-MNIST at views.size=30: 8 in 10). "
        "null = 64/75 of a cell, rounded down to a multiple of the ViT patch",
        json_schema_extra=says("{key} must be >= 1 px or null, got {value}"),
    )
    num_permutations: Int = Field(
        100,
        ge=2,
        description="permutations P the classifier tells apart, chosen to maximise their "
        "minimum Hamming distance (1000 in the paper, 100 for small data; at most "
        "(grid_size^2)!). Building 1000 takes about a second",
        json_schema_extra=says("{key} must be >= 2 (100-1000), got {value}"),
    )
    permutation_seed: Int = Field(
        0,
        description="seed of the permutation set (its first permutation and the order of ties); "
        "the set is stored in every checkpoint",
    )
    hidden_dim: Int = Field(
        1024,
        ge=1,
        description="width of the classifier's hidden layer on the concatenated tile features "
        "(the paper's fc7: 4096; 512-4096)",
        json_schema_extra=says("{key} must be >= 1 (e.g. 1024), got {value}"),
    )

    def patch_size(self, cfg: Config) -> int:
        """The pixels a tile must be a multiple of: the ViT patch, 1 for other backbones."""
        return cfg.backbone.patch_size if cfg.backbone.name.startswith("vit") else 1

    def check(self, cfg: Config) -> None:
        if cfg.views.progressive_start_size is not None:
            raise ConfigError(
                f"views.progressive_start_size={cfg.views.progressive_start_size}: jigsaw cuts "
                "its puzzles on a fixed grid of views.size, so its views cannot change size; "
                "leave views.progressive_start_size null for jigsaw"
            )
        try:
            jigsaw_geometry(cfg.views.size, self.grid_size, self.tile_size, self.patch_size(cfg))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        tiles = self.grid_size**2
        if self.num_permutations > math.factorial(tiles):
            raise ConfigError(
                f"jigsaw.num_permutations={self.num_permutations}: {tiles} tiles have only "
                f"{math.factorial(tiles)} orders; lower it or set jigsaw.grid_size=3"
            )
        if cfg.train.batch_size < 2:
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size}: the jigsaw classifier's BatchNorm "
                "needs at least 2 puzzles per batch; raise train.batch_size"
            )
