r"""Rotation prediction: RotNet (Gidaris, Singh & Komodakis, 2018).

Every image :math:`x` of the batch is shown at the four rotations :math:`g_r`, ``r`` in
{0, 1, 2, 3} quarter turns (0/90/180/270 degrees, counter-clockwise), in the same batch, and a
classifier :math:`c` on the backbone's pooled features :math:`f` names the rotation:

.. math::

    \mathcal{L} = -\frac{1}{4N} \sum_{i=1}^{N} \sum_{r=0}^{3}
        \log \operatorname{softmax}\bigl(c(f(g_r(x_i)))\bigr)_r

The rotations are exact (``torch.rot90``: transposes and flips, no interpolation), so no
resampling artefact gives the answer away; to name the rotation the network has to find the
objects and their upright orientation. The paper finds 4 rotations better than 2 or 8.

Defaults: the ``mlp`` head (Linear-BN-ReLU-Linear, hidden 1024), the view of
:func:`~selfsup.views.rotation_view` (resized crop of area 0.5-1 + flip, no colour
operations); the paper's CIFAR-10 optimiser is ``standalone`` in the config section (SGD
momentum 0.9, lr 0.1 at batch 128, weight decay 5e-4).

Differences from the reference:
    * The classifier sits on the backbone's pooled features (a Linear, or an MLP by default).
      The paper's classifier is the network's own last conv blocks (its NIN's top blocks,
      AlexNet's fc layers), and its best features come from the earlier blocks; ours are
      evaluated at the backbone output like every method's, and the MLP head takes part of
      the specialisation to rotations off the backbone's last layer.
    * Views: a resized crop of area 0.5-1 and a flip; the official CIFAR-10 code uses a random
      32 px crop of the 4 px-padded image and a flip.
    * Optimiser: SGD without Nesterov momentum and a cosine schedule; the official code uses
      Nesterov momentum and steps the lr down by 5x at epochs 30, 60 and 80 of 100.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import feature_dim
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import register_method
from selfsup.nn.heads import mlp
from selfsup.views import MultiViewTransform, rotation_view

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["NUM_ROTATIONS", "Rotation", "rotate_batch", "rotation_classifier"]

NUM_ROTATIONS = 4  # 0, 90, 180, 270 degrees


def rotate_batch(images: Tensor) -> tuple[Tensor, Tensor]:
    """``images [N, C, H, W]`` -> every image at 0/90/180/270 degrees ``[4N, C, H, W]`` (all
    images unrotated, then all a quarter turn counter-clockwise, ...) and their labels
    ``[4N]``, the number of quarter turns.

    Example:
        >>> x = torch.tensor([[[[1, 2], [3, 4]]]])
        >>> rotated, labels = rotate_batch(x)
        >>> rotated[1, 0].tolist(), labels.tolist()  # a quarter turn counter-clockwise
        ([[2, 4], [1, 3]], [0, 1, 2, 3])
    """
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"rotate_batch needs square images [N, C, S, S], got shape {tuple(images.shape)}; "
            "a quarter turn of a non-square image changes its shape"
        )
    rotated = torch.cat([torch.rot90(images, r, dims=(-2, -1)) for r in range(NUM_ROTATIONS)])
    labels = torch.arange(NUM_ROTATIONS, device=images.device)
    return rotated, labels.repeat_interleave(images.shape[0])


def rotation_classifier(
    feature_dim: int, head: Literal["linear", "mlp"] = "mlp", hidden_dim: int = 1024
) -> nn.Sequential:
    """The rotation classifier on pooled features ``[B, F]`` -> logits ``[B, 4]``: one Linear,
    or Linear-BN-ReLU-Linear of width ``hidden_dim``.

    Example:
        >>> [type(m).__name__ for m in rotation_classifier(32, "mlp", 64)]
        ['Linear', 'BatchNorm1d', 'ReLU', 'Linear']
        >>> rotation_classifier(32, "linear")(torch.randn(5, 32)).shape
        torch.Size([5, 4])
    """
    if head not in ("linear", "mlp"):
        raise ValueError(f"head must be 'linear' or 'mlp', got {head!r}")
    layers = 1 if head == "linear" else 2
    return mlp(feature_dim, hidden_dim, NUM_ROTATIONS, num_layers=layers, batch_norm=True)


@register_method("rotation", views=lambda cfg: [rotation_view(cfg.views.size)])
class Rotation(Method):
    """RotNet = backbone + rotation classifier; one view per image, shown at 4 rotations.

    Args:
        backbone: the encoder :math:`f` (``encoder`` for evaluation).
        view_recipe: one square view per image (:func:`selfsup.views.rotation_view`).
        head: the classifier on the pooled features (:func:`rotation_classifier`): ``"mlp"``
            (Linear-BN-ReLU-Linear) or ``"linear"``.
        hidden_dim: hidden width of the ``"mlp"`` head.

    Logs ``rotation_accuracy`` (over the 4N rotated images; 0.25 is chance) and
    ``embedding_std`` of the unrotated images' backbone features, which are also
    ``StepOutput.features`` and ``embeddings``.

    Example:
        >>> from selfsup.backbones import FeatureBackbone
        >>> backbone = FeatureBackbone(nn.Sequential(nn.Flatten(), nn.Linear(64, 16)), 16)
        >>> recipe = MultiViewTransform([rotation_view(8)], mean=[0.5], std=[0.25])
        >>> method = Rotation(backbone, recipe, head="mlp", hidden_dim=32)
        >>> views = method.make_views(torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, out.features.shape, sorted(out.logs)
        (torch.Size([]), torch.Size([6, 16]), ['embedding_std', 'rotation_accuracy'])
    """

    def __init__(
        self,
        backbone: nn.Module,
        view_recipe: MultiViewTransform,
        head: Literal["linear", "mlp"] = "mlp",
        hidden_dim: int = 1024,
    ) -> None:
        super().__init__(backbone, view_recipe)
        if view_recipe.num_views != 1:
            raise ValueError(
                f"rotation uses exactly 1 view per image (rotated 4 times), the recipe makes "
                f"{view_recipe.num_views}; pass MultiViewTransform([rotation_view(size)], ...)"
            )
        self.classifier = rotation_classifier(feature_dim(backbone), head, hidden_dim)

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> Rotation:
        r = cfg.rotation
        return cls(backbone, view_recipe, head=r.head, hidden_dim=r.hidden_dim)

    def training_step(self, views: list[Tensor]) -> StepOutput:
        if len(views) != 1:
            raise ValueError(f"rotation takes exactly 1 view per image, got {len(views)}")
        (x,) = views  # [N, C, S, S]
        rotated, labels = rotate_batch(x)  # [4N, C, S, S], [4N]
        h = self.backbone(rotated)  # [4N, F]: one batch, BatchNorm over every rotation
        logits = self.classifier(h)  # [4N, 4]
        loss = F.cross_entropy(logits.float(), labels)
        upright = h[: x.shape[0]].detach()  # [N, F]: the unrotated images, in batch order
        logs = {
            "rotation_accuracy": (logits.detach().argmax(1) == labels).float().mean(),
            "embedding_std": embedding_std(upright),
        }
        return StepOutput(loss, logs, upright, features=upright)
