r"""Jigsaw puzzles: context-free networks (Noroozi & Favaro, 2016).

One view (a crop) per image, in the order of the paper's figure:

1. ``make_puzzles``: the crop is cut into a ``g x g`` grid of cells (``views.size // g`` px,
   the grid centred); inside each cell a ``tile`` px tile at a uniformly random offset, so a
   gap of up to ``cell - tile`` px hides the continuity of edges between neighbours; each tile
   is normalised on its own (per channel: zero mean, unit variance), which hides the
   brightness and colour shared by neighbours; the ``T = g^2`` tiles are shuffled by one of
   ``P`` permutations :math:`p_y`, :math:`y` uniform (:mod:`selfsup.nn.puzzle`).
2. ``forward_tiles``: one shared tile encoder :math:`f` (the backbone) on all ``T N`` tiles of
   the batch at once, each tile on its own (the "context-free" network: no tile sees another).
3. ``forward_classifier``: the tile features concatenated in shuffled order, ``[N, T F]``,
   through the classifier :math:`c` (fc, then ``P``-way):

.. math::

    \mathcal{L} = -\frac{1}{N} \sum_{i=1}^{N} \log \operatorname{softmax}\Bigl(
        c\bigl[f(t_{i, p_{y_i}(1)}), \dots, f(t_{i, p_{y_i}(T)})\bigr]\Bigr)_{y_i}

with :math:`t_{i,j}` the normalised tile of cell :math:`j`. The permutation set is chosen
greedily among all ``T!`` orders to keep permutations far apart in Hamming distance
(:func:`~selfsup.nn.puzzle.hamming_permutations`): from a seed, deterministic, stored as a
buffer so that every checkpoint carries the classes its classifier was trained on (a checkpoint
whose set differs from this seed's loads with a warning; one that is not a valid set fails).

Downstream, the encoder is the backbone on whole images, as for every method: a ResNet pools
any size; a ViT interpolates its position embeddings, so a tile must be a whole number of
patches (``jigsaw.tile_size`` a multiple of ``backbone.patch_size``).

Defaults: a 3x3 grid; tiles 64/75 of a cell (the paper's 64 px in 75 px cells; 8 px in the 10
px cells of a 30 px view); P = 100 permutations (1000 in the paper); a 1024-wide hidden layer.

Differences from the reference:
    * The tile encoder is the backbone up to its pooled features; the paper's shares AlexNet up
      to a per-tile fc6, concatenates and classifies with fc7 (4096) and fc8. Our classifier is
      Linear-BN-ReLU-Linear (hidden ``hidden_dim``), without dropout.
    * Permutation set: each new permutation maximises its *minimum* distance to those chosen
      (ties: the largest summed distance, then the seed's order); the paper's Algorithm 1
      maximises the summed distance. Both give an average distance of about 8 of 9 for 1000.
    * The offsets and the permutation of each puzzle come from the global torch generator of
      the device (checkpointed by the trainer), not from the views generator.
    * The crop is a resized crop (area 0.6-1) + flip (:func:`~selfsup.views.jigsaw_view`); the
      paper takes a 225 px crop of the image resized to 256 px. No colour jitter or
      grayscale (the paper's remedies for chromatic aberration, which grey images lack).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.config.pretext import jigsaw_geometry
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import register_method
from selfsup.nn.heads import mlp
from selfsup.nn.puzzle import (
    cut_tiles,
    hamming_distances,
    hamming_permutations,
    normalize_tiles,
    shuffle_tiles,
)
from selfsup.views import MultiViewTransform, jigsaw_view

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["Jigsaw", "Puzzles"]


@dataclass(frozen=True)
class Puzzles:
    """One batch of puzzles."""

    tiles: Tensor  # [N, T, C, tile, tile] normalised per tile, in shuffled order
    offsets: Tensor  # [N, T, 2] each cell's tile offset (dy, dx), in grid order
    labels: Tensor  # [N] the index of each puzzle's permutation in the set


@register_method("jigsaw", views=lambda cfg: [jigsaw_view(cfg.views.size)])
class Jigsaw(Method):
    """Jigsaw = shared tile encoder (the backbone) + permutation classifier; one crop per image.

    Args:
        backbone: the tile encoder :math:`f` (``encoder`` for evaluation on whole images).
        view_recipe: one square crop per image (:func:`selfsup.views.jigsaw_view`); its size
            is cut into the grid.
        grid_size: ``g``, the puzzle is ``g x g`` tiles (3 in the paper; 2 or 3).
        tile_size: tile side in px, at most a cell (``view size // g``); None = 64/75 of a
            cell, rounded down to a multiple of the backbone's ``patch_size`` (a ViT).
        num_permutations: ``P``, the classes (1000 in the paper).
        permutation_seed: seed of the permutation set.
        hidden_dim: hidden width of the classifier on the ``T F`` concatenated features.

    Logs ``jigsaw_accuracy`` (chance: 1/P) and ``embedding_std`` of the ``embeddings``, each
    image's tile features averaged over its tiles ``[N, F]``. ``StepOutput.features`` is None,
    so the online linear probe is off (``train.online_linear=false`` in the method's
    ``standalone`` options and presets): training never computes the features evaluation uses,
    those of whole images, and a probe trained on pooled tile features and tested on whole
    images measured chance (9.7% on digits, where the online k-NN on whole images read 71%).

    Example:
        >>> from selfsup.backbones import ResNet
        >>> backbone = ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)
        >>> recipe = MultiViewTransform([jigsaw_view(12)], mean=[0.5], std=[0.25])
        >>> method = Jigsaw(backbone, recipe, num_permutations=10, hidden_dim=32)
        >>> (method.cell_size, method.tile_size), tuple(method.permutations.shape)
        ((4, 3), (10, 9))
        >>> views = method.make_views(torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, out.embeddings.shape, sorted(out.logs)
        (torch.Size([]), torch.Size([4, 64]), ['embedding_std', 'jigsaw_accuracy'])
    """

    permutations: Tensor  # [P, T] int64 buffer: the classes, in every checkpoint

    def __init__(
        self,
        backbone: nn.Module,
        view_recipe: MultiViewTransform,
        grid_size: int = 3,
        tile_size: int | None = None,
        num_permutations: int = 100,
        permutation_seed: int = 0,
        hidden_dim: int = 1024,
    ) -> None:
        super().__init__(backbone, view_recipe)
        if view_recipe.num_views != 1:
            raise ValueError(
                f"jigsaw cuts its puzzle from exactly 1 view per image, the recipe makes "
                f"{view_recipe.num_views}; pass MultiViewTransform([jigsaw_view(size)], ...)"
            )
        if grid_size not in (2, 3):
            raise ValueError(f"grid_size must be 2 or 3 (3 in the paper), got {grid_size!r}")
        self.grid_size = grid_size
        self.num_tiles = grid_size**2
        patch = getattr(backbone, "patch_size", 1)  # a ViT cuts each tile into whole patches
        self.cell_size, self.tile_size = jigsaw_geometry(
            view_recipe.specs[0].size, grid_size, tile_size, patch
        )
        self.permutation_seed = permutation_seed
        perms = hamming_permutations(self.num_tiles, num_permutations, permutation_seed)
        self.register_buffer("permutations", perms)
        self.classifier = mlp(
            self.num_tiles * feature_dim(backbone), hidden_dim, num_permutations, num_layers=2
        )

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> Jigsaw:
        j = cfg.jigsaw
        return cls(
            backbone,
            view_recipe,
            grid_size=j.grid_size,
            tile_size=j.tile_size,
            num_permutations=j.num_permutations,
            permutation_seed=j.permutation_seed,
            hidden_dim=j.hidden_dim,
        )

    @property
    def num_permutations(self) -> int:
        return self.permutations.shape[0]

    def make_puzzles(self, images: Tensor, generator: torch.Generator | None = None) -> Puzzles:
        """Views ``[N, C, S, S]`` -> their puzzles: random tile offsets and permutations drawn
        from ``generator`` (None: the device's global generator)."""
        batch, device = images.shape[0], images.device
        gap = self.cell_size - self.tile_size
        offsets = torch.randint(
            0, gap + 1, (batch, self.num_tiles, 2), generator=generator, device=device
        )  # [N, T, 2]
        labels = torch.randint(
            0, self.num_permutations, (batch,), generator=generator, device=device
        )  # [N]
        tiles = cut_tiles(images, offsets, self.grid_size, self.cell_size, self.tile_size)
        tiles = normalize_tiles(tiles)  # [N, T, C, t, t], grid order
        return Puzzles(shuffle_tiles(tiles, self.permutations[labels]), offsets, labels)

    def forward_tiles(self, tiles: Tensor) -> Tensor:
        """Shuffled tiles ``[N, T, C, t, t]`` -> tile features ``[N, T, F]``, each tile through
        the shared encoder on its own (all ``N T`` tiles in one batch)."""
        batch = tiles.shape[0]
        h = self.backbone(tiles.flatten(0, 1))  # [N*T, F]
        return h.reshape(batch, self.num_tiles, -1)

    def forward_classifier(self, features: Tensor) -> Tensor:
        """Tile features ``[N, T, F]`` in shuffled order -> permutation logits ``[N, P]``."""
        return self.classifier(features.flatten(1))  # [N, T*F] -> [N, P]

    def training_step(self, views: list[Tensor]) -> StepOutput:
        if len(views) != 1:
            raise ValueError(f"jigsaw takes exactly 1 view per image, got {len(views)}")
        puzzles = self.make_puzzles(views[0])
        h = self.forward_tiles(puzzles.tiles)  # [N, T, F]
        logits = self.forward_classifier(h)  # [N, P]
        loss = F.cross_entropy(logits.float(), puzzles.labels)
        pooled = h.detach().mean(dim=1)  # [N, F]: each puzzle's tiles, pooled
        logs = {
            "jigsaw_accuracy": (logits.detach().argmax(1) == puzzles.labels).float().mean(),
            "embedding_std": embedding_std(pooled),
        }
        return StepOutput(loss, logs, pooled, features=None)  # no whole-image features

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Check a checkpoint's permutation set before it replaces this one: a set of another
        shape or that is not one of distinct permutations fails; another valid set (another
        seed, or another version of the generator) is loaded with a warning, since the
        classifier was trained on it."""
        key = prefix + "permutations"
        stored = state_dict.get(key)
        if isinstance(stored, Tensor):
            problem = _permutation_set_problem(stored, tuple(self.permutations.shape))
            if problem:
                error_msgs.append(
                    f"{key}: {problem}; resume with the run's own jigsaw.* settings "
                    "(grid_size, num_permutations)"
                )
                return
            if not torch.equal(stored.to(self.permutations.device), self.permutations):
                warnings.warn(
                    f"the checkpoint's jigsaw permutation set differs from the one "
                    f"jigsaw.permutation_seed={self.permutation_seed} builds here (another seed "
                    "or generator version); the checkpoint's set is used, as its classifier "
                    "was trained on it",
                    stacklevel=2,
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return (
            f"grid_size={self.grid_size}, cell_size={self.cell_size}, tile_size={self.tile_size}, "
            f"num_permutations={self.num_permutations}, permutation_seed={self.permutation_seed}"
        )


def _permutation_set_problem(stored: Tensor, shape: tuple[int, ...]) -> str | None:
    """Why ``stored`` cannot be this method's permutation set, or None."""
    if tuple(stored.shape) != shape:
        return (
            f"the checkpoint holds {tuple(stored.shape)} permutations (P, tiles), this method "
            f"is built for {shape}"
        )
    ordered = torch.arange(shape[1], device=stored.device)
    if not torch.equal(stored.sort(dim=1).values, ordered.expand(shape)):
        return "a row of the checkpoint's set is not a permutation of the tiles"
    others = ~torch.eye(shape[0], dtype=torch.bool, device=stored.device)
    if bool((hamming_distances(stored)[others] == 0).any()):
        return "the checkpoint's set holds the same permutation twice"
    return None
