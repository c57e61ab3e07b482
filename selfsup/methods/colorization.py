r"""Colorization: Colorful Image Colorization (Zhang, Isola & Efros, 2016) as a pretext task.

One view per image, in CIE Lab (:mod:`selfsup.views.ops.lab`): the encoder sees its lightness
``L`` and a decoder predicts its colour ``ab``, in the order of the paper's figure:

1. ``split``: the view (normalised sRGB ``[B, 3, S, S]``) -> Lab. The encoder's input is
   ``(L - 50) / 100`` ``[B, 1, S, S]``; the target is ``ab`` averaged over ``s x s`` blocks,
   ``[B, 2, S/s, S/s]`` (``s = output_stride = 4``: the paper predicts at 1/4 resolution).
2. ``forward_encoder``: the backbone's spatial features of L: a ResNet's last stage
   ``[B, C, S/8, S/8]`` (CIFAR stem) or a ViT's patch tokens laid out on their grid
   ``[B, D, S/p, S/p]``; their global pool is the encoder's feature vector.
3. ``forward_decoder``: conv 3x3-BN-ReLU, bilinear resize to ``S/s``, conv 3x3-BN-ReLU,
   conv 1x1 -> ``Q`` logits per location (classification) or 2 numbers (regression).
4. ``forward_loss``. Classification (the paper's Eq. 2): ab is quantised into ``Q`` in-gamut
   bins of side 10 (:mod:`selfsup.nn.ab_quantization`), the target ``Z`` is its soft encoding
   over the 5 nearest bins (Gaussian, sigma 5), and rare colours weigh more:

   .. math::

       \mathcal{L}_{cl} = -\frac{1}{N} \sum_{h,w} v(Z_{hw}) \sum_q Z_{hwq} \log \hat Z_{hwq},
       \quad v(Z_{hw}) = w_{q^*},\ q^* = \arg\max_q Z_{hwq}, \quad
       w \propto \left((1 - \lambda) \tilde p + \frac{\lambda}{Q}\right)^{-1},\
       \textstyle\sum_q \tilde p_q w_q = 1,

   with :math:`\tilde p` the training images' bin distribution smoothed by a Gaussian
   (sigma 5), counted once before training (:meth:`Colorization.prepare_data`) and kept in
   buffers, and ``lambda = 0.5``. Regression (the classic baseline):
   :math:`\mathcal{L}_2 = \frac{1}{2N} \sum_{h,w} \lVert Y_{hw} - \hat Y_{hw} \rVert^2` on
   ``ab / 110``.
5. ``predict_ab`` (pictures): the annealed mean
   :math:`\mathcal{H}(Z) = \sum_q \mathrm{softmax}(\log \hat Z / T)_q\, c_q`, ``T = 0.38``.

Downstream, the encoder is a :class:`~selfsup.backbones.LightnessEncoder`: it takes normalised
RGB images like every encoder and feeds their L to the backbone, so k-NN, the linear probe,
the random-init baseline and export need nothing else.

Differences from the reference:
    * ``Q = 261`` bins, the 10-unit ab cells that sRGB colours reach, computed here; the paper
      reports 313 (see :mod:`selfsup.nn.ab_quantization` for why they differ).
    * The encoder is this library's ResNet (or ViT) with a two-convolution decoder on its last
      stage, not the paper's VGG-style network with dilated convolutions; the decoder upsamples
      bilinearly to 1/4 of the input where the paper's network has a deconvolution.
    * Targets are ``ab`` averaged over 4x4 blocks (our choice: taking one pixel per block is
      the other way to reach the prediction's resolution); the prior is counted the same way on
      images resized to the view size, from at most ``prior_images`` training images evenly
      spread over the dataset (the paper: ImageNet).
    * The losses are means over locations and images (the paper sums over pixels), regression on
      ``ab / 110``.
    * Optimiser (``method=colorization`` alone): AdamW with decoupled weight decay and a cosine
      schedule; the paper uses Adam (0.9, 0.99), L2 weight decay 1e-3, lr 3e-5 at batch 40
      with two step decays.
    * Evaluation uses the globally pooled last stage (k-NN, linear probe), not the paper's
      linear classifiers on every AlexNet layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import LightnessEncoder, ResNet, VisionTransformer
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import register_method
from selfsup.nn.ab_quantization import (
    ab_histogram,
    annealed_mean,
    gamut_bins,
    rebalancing_weights,
    smooth_prior,
    soft_encode,
)
from selfsup.nn.losses import rebalanced_soft_cross_entropy
from selfsup.views import MultiViewTransform, colorization_view
from selfsup.views.ops.lab import lab_to_rgb, rgb_to_lab

if TYPE_CHECKING:
    from selfsup.config import Config
    from selfsup.data import ImageDataset

__all__ = ["AB_SCALE", "Colorization", "ColorizationHead"]

AB_SCALE = 110.0  # regression predicts ab / 110, about [-1, 1]
_COLOUR_CHROMA, _MIN_COLOUR_FRACTION = 2.0, 0.01  # "has colour": chroma > 2 on 1% of pixels
_PRIOR_BATCH = 256  # images per chunk when counting the prior

Loss = Literal["classification", "regression"]


class ColorizationHead(nn.Module):
    """Spatial features ``[B, C, h, w]`` -> ``[B, out, H', W']``: conv 3x3-BN-ReLU, bilinear
    resize to ``(H', W')``, conv 3x3-BN-ReLU, conv 1x1 (``out`` = Q logits or 2 ab values).

    Example:
        >>> head = ColorizationHead(16, 8, 5)
        >>> head(torch.randn(2, 16, 4, 4), (8, 8)).shape
        torch.Size([2, 5, 8, 8])
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.refine = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.predict = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        x = self.reduce(maps)  # [B, hidden, h, w]
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.predict(self.refine(x))  # [B, out, H', W']


@register_method("colorization", views=lambda cfg: [colorization_view(cfg.views.size)])
class Colorization(Method):
    """Predict the ab colour of a view from its lightness L (Zhang et al. 2016).

    Args:
        backbone: a :class:`~selfsup.backbones.LightnessEncoder` around a 1-channel
            :class:`~selfsup.backbones.ResNet` or :class:`~selfsup.backbones.VisionTransformer`
            (``selfsup.build.make_backbone`` builds it for ``method=colorization``).
        view_recipe: exactly one view, with nothing that alters colour
            (:func:`selfsup.views.colorization_view`).
        loss: ``"classification"`` (the paper) or ``"regression"`` (L2 on ab).
        grid_size: ab cell side in Lab units (10 in the paper: 261 bins here).
        num_neighbors, encode_sigma: soft encoding over the k nearest bins, Gaussian width.
        prior_sigma: Gaussian smoothing of the colour prior, in Lab units.
        rebalance_lambda: lambda of the rebalancing weights (1: none).
        temperature: the annealed mean's T for pictures.
        output_stride: predictions at 1/output_stride of the view's side.
        head_dim: channels of the decoder's convolutions.
        prior_images: training images the prior is counted on (:meth:`prepare_data`).

    Until :meth:`prepare_data` runs, the prior is uniform and every weight is 1.

    Example:
        >>> trunk = ResNet("resnet18", width=0.125, cifar_stem=True, in_channels=1)
        >>> recipe = MultiViewTransform([colorization_view(16)], mean=[0.5], std=[0.25])
        >>> method = Colorization(LightnessEncoder(trunk, [0.5], [0.25]), recipe, head_dim=16)
        >>> views = method.make_views(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8))
        >>> out = method.training_step(views)
        >>> out.loss.shape, out.features.shape, sorted(out.logs)
        (torch.Size([]), torch.Size([4, 64]), ['ab_error', 'bin_accuracy', 'embedding_std'])
    """

    encoder_input = "lightness"  # make_backbone builds the LightnessEncoder

    def __init__(
        self,
        backbone: nn.Module,
        view_recipe: MultiViewTransform,
        loss: Loss = "classification",
        grid_size: float = 10.0,
        num_neighbors: int = 5,
        encode_sigma: float = 5.0,
        prior_sigma: float = 5.0,
        rebalance_lambda: float = 0.5,
        temperature: float = 0.38,
        output_stride: int = 4,
        head_dim: int = 256,
        prior_images: int = 10000,
    ) -> None:
        super().__init__(backbone, view_recipe)
        if not isinstance(backbone, LightnessEncoder) or not isinstance(
            backbone.trunk, ResNet | VisionTransformer
        ):
            raise ValueError(
                f"Colorization needs a LightnessEncoder around a selfsup ResNet or ViT (it decodes "
                f"their spatial features), got {type(backbone).__name__}; build it with "
                "selfsup.build.make_backbone(cfg, 3) for method=colorization, or "
                "LightnessEncoder(ResNet(in_channels=1), mean, std)"
            )
        if view_recipe.num_views != 1:
            raise ValueError(
                f"Colorization uses exactly 1 view per image, the recipe makes "
                f"{view_recipe.num_views}; pass MultiViewTransform([colorization_view(size)], ...)"
            )
        size = view_recipe.specs[0].size
        if output_stride < 1 or size % output_stride != 0:
            raise ValueError(
                f"output_stride={output_stride} must divide the view size {size} px (targets "
                "are averaged over output_stride-pixel blocks); the paper uses 4"
            )
        if loss not in ("classification", "regression"):
            raise ValueError(f"loss must be 'classification' or 'regression', got {loss!r}")
        bins = gamut_bins(grid_size)  # [Q, 2]
        if not 1 <= num_neighbors <= len(bins):
            raise ValueError(f"num_neighbors must be in [1, {len(bins)}], got {num_neighbors}")
        rebalancing_weights(torch.full((len(bins),), 1.0 / len(bins)), rebalance_lambda)  # checks
        annealed_mean(torch.zeros(1, len(bins)), bins, temperature)  # checks the temperature
        self.loss, self.num_neighbors, self.encode_sigma = loss, num_neighbors, encode_sigma
        self.prior_sigma, self.rebalance_lambda = prior_sigma, rebalance_lambda
        self.temperature, self.output_stride = temperature, output_stride
        self.prior_images = prior_images
        self.register_buffer("bins", bins)  # [Q, 2] ab centres
        self.register_buffer("prior", torch.full((len(bins),), 1.0 / len(bins)))  # [Q] p~
        self.register_buffer("class_weights", torch.ones(len(bins)))  # [Q] w
        self.bins: Tensor
        self.prior: Tensor
        self.class_weights: Tensor
        out = len(bins) if loss == "classification" else 2
        self.head = ColorizationHead(backbone.feature_dim, head_dim, out)

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> Colorization:
        c = cfg.colorization
        return cls(
            backbone,
            view_recipe,
            loss=c.loss,
            grid_size=c.grid_size,
            num_neighbors=c.num_neighbors,
            encode_sigma=c.encode_sigma,
            prior_sigma=c.prior_sigma,
            rebalance_lambda=c.rebalance_lambda,
            temperature=c.temperature,
            output_stride=c.output_stride,
            head_dim=c.head_dim,
            prior_images=c.prior_images,
        )

    @property
    def encoder(self) -> LightnessEncoder:
        """Normalised RGB in, features of its lightness out (what evaluation and export use)."""
        return self.backbone  # type: ignore[return-value]

    # -- the steps of the figure ----------------------------------------------------------------
    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised RGB ``[B, 3, S, S]`` -> the encoder's input ``[B, 1, S, S]``, the target
        ``ab [B, 2, S/s, S/s]`` and the full-resolution ``L [B, 1, S, S]`` (float32)."""
        lab = self.encoder.lab(x)  # [B, 3, S, S]
        return self.encoder.trunk_input(lab[:, :1]), self.target_ab(lab), lab[:, :1]

    def target_ab(self, lab: Tensor) -> Tensor:
        """Lab ``[B, 3, S, S]`` -> ab averaged over ``s x s`` blocks ``[B, 2, S/s, S/s]``."""
        return F.avg_pool2d(lab[:, 1:], self.output_stride)

    def forward_encoder(self, lightness_input: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 1, S, S]`` -> spatial features ``[B, C, h, w]`` and pooled features
        ``[B, C]`` (exactly the encoder's output for the same image)."""
        trunk = self.encoder.trunk
        if isinstance(trunk, VisionTransformer):
            tokens = trunk.forward_tokens(trunk.patch_tokens(lightness_input))  # [B, 1 + L, D]
            patches = tokens[:, 1:]  # [B, L, D]
            pooled = tokens[:, 0] if trunk.pool == "cls" else patches.mean(dim=1)
            rows = lightness_input.shape[-2] // trunk.patch_size
            maps = patches.transpose(1, 2).reshape(len(patches), patches.shape[-1], rows, -1)
            return maps, pooled
        maps = trunk.forward_maps(lightness_input)  # type: ignore[operator]  # [B, C, h, w]
        return maps, trunk.avgpool(maps).flatten(1)  # type: ignore[operator]

    def forward_decoder(self, maps: Tensor, size: tuple[int, int]) -> Tensor:
        """``[B, C, h, w]`` -> ``[B, Q, H', W']`` logits (or ``[B, 2, H', W']`` ab / 110)."""
        return self.head(maps, size)

    def forward_loss(self, out: Tensor, ab: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Prediction ``[B, Q | 2, H', W']`` and target ``ab [B, 2, H', W']`` -> the loss and
        the logs: ``ab_error`` (mean distance in Lab units of the predicted ab: annealed mean
        or regression) and, for classification, ``bin_accuracy`` (the most likely bin is the
        target's nearest)."""
        target = ab.permute(0, 2, 3, 1).reshape(-1, 2)  # [N, 2], N = B H' W'
        if self.loss == "regression":
            pred = out.float().permute(0, 2, 3, 1).reshape(-1, 2)  # [N, 2] ab / 110
            loss = 0.5 * (pred - target / AB_SCALE).pow(2).sum(dim=1).mean()
            error = (pred.detach() * AB_SCALE - target).norm(dim=1).mean()
            return loss, {"ab_error": error}
        logits = out.permute(0, 2, 3, 1).reshape(-1, out.shape[1])  # [N, Q]
        index, weight = soft_encode(target, self.bins, self.num_neighbors, self.encode_sigma)
        loss = rebalanced_soft_cross_entropy(logits, index, weight, self.class_weights)
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == index[:, 0]).float().mean()
            pred = annealed_mean(logits, self.bins, self.temperature)  # [N, 2]
            error = (pred - target).norm(dim=1).mean()
        return loss, {"ab_error": error, "bin_accuracy": accuracy}

    def training_step(self, views: list[Tensor]) -> StepOutput:
        """One view ``[B, 3, S, S]`` -> the colour loss at 1/output_stride resolution."""
        if len(views) != 1:
            raise ValueError(f"Colorization takes exactly 1 view per image, got {len(views)}")
        lightness_input, ab, _ = self.split(views[0])
        maps, features = self.forward_encoder(lightness_input)
        out = self.forward_decoder(maps, (ab.shape[-2], ab.shape[-1]))
        loss, logs = self.forward_loss(out, ab)
        pooled = features.detach()
        logs["embedding_std"] = embedding_std(pooled)
        return StepOutput(loss, logs, pooled.float(), features=pooled)

    # -- the prior, from the training data before training --------------------------------------
    @torch.no_grad()
    def prepare_data(self, dataset: ImageDataset) -> None:
        """Count the bin distribution ``p`` of the training colours and set the buffers
        ``prior`` (:math:`\\tilde p`) and ``class_weights`` (``w``). Deterministic: at most
        ``prior_images`` images at evenly spaced indices, resized to the view size, ab averaged
        as the targets are. Refuses data without colour."""
        if dataset.channels != 3:
            raise ValueError(
                f"Colorization predicts colour, but {dataset.name} has {dataset.channels} "
                "channel(s); train on colour images (data.dataset=photo_patches, cifar10 or a "
                "folder of colour images)"
            )
        size = self.view_recipe.specs[0].size
        count = min(len(dataset), self.prior_images)
        indices = torch.linspace(0, len(dataset) - 1, count).round().long()  # [n] spread evenly
        counts = torch.zeros(len(self.bins), dtype=torch.int64, device=self.bins.device)
        coloured = total = 0
        for start in range(0, count, _PRIOR_BATCH):
            images, _ = dataset.get_batch(indices[start : start + _PRIOR_BATCH])
            x = images.to(self.bins.device).float().div_(255.0)  # [n, 3, H, W]
            if tuple(x.shape[-2:]) != (size, size):
                x = F.interpolate(x, (size, size), mode="bilinear", antialias=True).clamp(0, 1)
            ab = self.target_ab(rgb_to_lab(x)).permute(0, 2, 3, 1).reshape(-1, 2)  # [N, 2]
            counts += ab_histogram(ab, self.bins)
            coloured += int((ab.norm(dim=1) > _COLOUR_CHROMA).sum())
            total += len(ab)
        if coloured < _MIN_COLOUR_FRACTION * total:
            raise ValueError(
                f"the training images of {dataset.name} have (almost) no colour: "
                f"{coloured / total:.2%} of their pixels have a chroma above {_COLOUR_CHROMA:g}, "
                "so there is nothing to predict; train colorization on colour images "
                "(data.dataset=photo_patches, cifar10 or a folder of colour photographs)"
            )
        self.prior.copy_(smooth_prior(counts.float(), self.bins, self.prior_sigma))
        self.class_weights.copy_(rebalancing_weights(self.prior, self.rebalance_lambda))

    # -- pictures -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_ab(self, x: Tensor) -> Tensor:
        """Normalised RGB ``[B, 3, S, S]`` -> predicted ab ``[B, 2, S/s, S/s]`` (annealed mean,
        or the regression output) from its lightness alone."""
        lightness_input, ab, _ = self.split(x)
        maps = self.forward_encoder(lightness_input)[0]
        out = self.forward_decoder(maps, (ab.shape[-2], ab.shape[-1]))
        if self.loss == "regression":
            return out.float() * AB_SCALE
        return annealed_mean(out, self.bins, self.temperature, dim=1)

    @torch.no_grad()
    def colorize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised RGB ``[B, 3, S, S]`` -> ``(grey, colorized, truth)``, sRGB
        ``[B, 3, S, S]`` in [0, 1]: the input's lightness, that lightness with the predicted ab
        (resized bilinearly to full resolution) and the image itself."""
        _, _, lightness_ = self.split(x)
        ab = F.interpolate(
            self.predict_ab(x), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        zeros = torch.zeros_like(ab)
        grey = lab_to_rgb(torch.cat([lightness_, zeros], dim=1))
        colorized = lab_to_rgb(torch.cat([lightness_, ab], dim=1))
        return grey, colorized, self.encoder.pixels(x).clamp(0, 1)
