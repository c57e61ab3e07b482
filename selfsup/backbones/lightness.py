"""An encoder that sees the CIE L (lightness) channel of RGB images: Colorization's encoder.

Evaluation, k-NN, the linear probe, the random-init baseline and export all feed an encoder
normalised RGB images ``(x - mean) / std``. :class:`LightnessEncoder` accepts exactly that and
converts inside: undo the normalisation, sRGB -> L (:func:`selfsup.views.ops.lab.lightness`),
centre ``(L - 50) / 100``, then the 1-channel ``trunk``. So an encoder trained on lightness
needs nothing special anywhere else: ``selfsup.build.make_backbone`` builds it for a method
whose ``encoder_input`` is ``"lightness"``, and ``encoder.json`` records
``"encoder_input": "lightness"`` so that ``load_exported`` rebuilds it from the file alone.

The normalisation statistics are non-persistent buffers: the weights file keeps the trunk's
weights only (under ``trunk.``), the statistics travel in the config / export metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from selfsup.backbones.registry import feature_dim
from selfsup.views.ops.lab import lightness, rgb_to_lab

__all__ = ["LIGHTNESS_CENTER", "LIGHTNESS_SCALE", "LightnessEncoder"]

# The trunk's input is (L - 50) / 100, in [-0.5, 0.5]: L centred as in the released code.
LIGHTNESS_CENTER, LIGHTNESS_SCALE = 50.0, 100.0


class LightnessEncoder(nn.Module):
    """Normalised RGB ``[B, 3, H, W]`` -> features of its lightness: ``trunk((L - 50) / 100)``.

    Args:
        trunk: a 1-channel backbone (``feature_dim`` declared), e.g. ``ResNet(in_channels=1)``.
        mean, std: the normalisation the inputs carry (one value, or one per RGB channel).

    Example:
        >>> from selfsup.backbones import FeatureBackbone
        >>> trunk = FeatureBackbone(nn.Flatten(), feature_dim=1)
        >>> encoder = LightnessEncoder(trunk, mean=[0.5], std=[0.5])
        >>> white = (torch.ones(1, 3, 1, 1) - 0.5) / 0.5  # normalised white, L = 100
        >>> encoder(white)
        tensor([[0.5000]])
    """

    def __init__(self, trunk: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) not in (1, 3) or len(std) != len(mean):
            raise ValueError(
                f"mean and std need 1 or 3 entries each (RGB), got {len(mean)} and {len(std)}; "
                "pass the normalisation of the RGB inputs (views.mean / views.std)"
            )
        if not all(math.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"std entries must be finite and > 0, got {list(std)}")
        self.trunk = trunk
        self.feature_dim = feature_dim(trunk)
        for name, values in (("mean", mean), ("std", std)):
            stats = torch.tensor([float(v) for v in values]).view(1, -1, 1, 1)  # [1, C, 1, 1]
            self.register_buffer(name, stats, persistent=False)
        self.mean: Tensor
        self.std: Tensor

    def pixels(self, x: Tensor) -> Tensor:
        """Normalised ``[B, 3, H, W]`` -> sRGB in ``[0, 1]`` (float32: the conversion is
        element-wise and stays out of autocast)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"a lightness encoder takes RGB images [B, 3, H, W], got {tuple(x.shape)}; "
                "convert grey images to 3 channels (data.channels=3) or train on colour data"
            )
        return x.float() * self.std + self.mean

    def lab(self, x: Tensor) -> Tensor:
        """Normalised RGB ``[B, 3, H, W]`` -> CIE Lab ``[B, 3, H, W]`` (L in [0, 100], a, b)."""
        return rgb_to_lab(self.pixels(x))

    @staticmethod
    def trunk_input(lightness_: Tensor) -> Tensor:
        """L ``[B, 1, H, W]`` in [0, 100] -> the trunk's input ``(L - 50) / 100``."""
        return (lightness_ - LIGHTNESS_CENTER) / LIGHTNESS_SCALE

    def forward(self, x: Tensor) -> Tensor:
        """Normalised RGB ``[B, 3, H, W]`` -> ``[B, feature_dim]``."""
        return self.trunk(self.trunk_input(lightness(self.pixels(x))))
