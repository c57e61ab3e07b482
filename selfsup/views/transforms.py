"""The transforms that turn a uint8 batch into views (training) or normalised images (eval).

A :class:`ViewSpec` describes one view; :class:`MultiViewTransform` applies a list of them
(two equal SimCLR views, BYOL's asymmetric pair, DINO's global and local crops) to a uint8
batch on the training device. Within one view the ops run in SimCLR's order: crop + resize +
flip, colour jitter, grayscale, blur, solarize, normalise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.views import ops
from selfsup.views.progressive import scaled_side
from selfsup.views.spec import ViewSpec

__all__ = [
    "EvalTransform",
    "MultiViewTransform",
    "ViewParams",
    "apply_view_params",
    "sample_view_params",
]


@dataclass(frozen=True)
class ViewParams:
    """Every random parameter of one view of a batch, one value per sample (``B`` samples).

    An op that the spec turns off (probability 0, or grayscale on 1-channel images) draws
    nothing and its field is None.

    Attributes:
        boxes: float32 ``[B, 4]`` crop boxes ``(x0, y0, w, h)`` in input pixels.
        flip: bool ``[B]``, True mirrors the sample.
        jitter: colour-jitter factors, order and mask (:class:`ops.JitterParams`).
        gray: bool ``[B]``, True converts the sample to grey.
        blur_sigma: float32 ``[B]`` blur standard deviations in output pixels.
        blur: bool ``[B]``, True blurs the sample.
        solarize: bool ``[B]``, True solarises the sample.
    """

    boxes: Tensor
    flip: Tensor
    jitter: ops.JitterParams | None
    gray: Tensor | None
    blur_sigma: Tensor | None
    blur: Tensor | None
    solarize: Tensor | None


def sample_view_params(
    spec: ViewSpec,
    batch_size: int,
    height: int,
    width: int,
    channels: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ViewParams:
    """Draw the parameters of one view of a ``[B, C, H, W]`` batch, in the order the ops run.

    :class:`MultiViewTransform` draws through this function, so tests of the distributions
    (``tests/views/test_distributions.py``) see exactly what training samples.
    """
    boxes = ops.sample_crop_boxes(
        batch_size, height, width, spec.crop_scale, spec.crop_ratio, generator, device
    )
    flip = ops.sample_mask(batch_size, spec.flip_p, generator, device)
    jitter = None
    if spec.jitter_p > 0 and spec.brightness + spec.contrast + spec.saturation + spec.hue > 0:
        jitter = ops.sample_jitter_params(
            batch_size,
            spec.brightness,
            spec.contrast,
            spec.saturation,
            spec.hue,
            spec.jitter_p,
            generator,
            device,
        )
    gray = None
    if spec.gray_p > 0 and channels == 3:
        gray = ops.sample_mask(batch_size, spec.gray_p, generator, device)
    blur_sigma = blur = None
    if spec.blur_p > 0:
        blur_sigma = ops.sample_uniform(batch_size, *spec.blur_sigma, generator, device)
        blur = ops.sample_mask(batch_size, spec.blur_p, generator, device)
    solarize = None
    if spec.solarize_p > 0:
        solarize = ops.sample_mask(batch_size, spec.solarize_p, generator, device)
    return ViewParams(boxes, flip, jitter, gray, blur_sigma, blur, solarize)


def apply_view_params(x: Tensor, spec: ViewSpec, params: ViewParams) -> Tensor:
    """Float ``[B, C, H, W]`` in [0, 1] -> the view ``[B, C, S, S]`` in [0, 1] (not normalised).

    Ops run in SimCLR's order: crop + resize + flip, colour jitter, grayscale, blur, solarize.
    """
    v = ops.resized_crop(x, params.boxes, spec.size, params.flip)  # [B, C, S, S]
    if params.jitter is not None:
        v = ops.color_jitter(v, params.jitter)
    if params.gray is not None:
        v = ops.to_grayscale(v, params.gray)
    if params.blur_sigma is not None:
        v = ops.gaussian_blur(v, params.blur_sigma, spec.blur_kernel_size, params.blur)
    if params.solarize is not None:
        v = ops.solarize(v, spec.solarize_threshold, params.solarize)
    return v


def _to_float(images: Tensor) -> Tensor:
    """Check a uint8 ``[B, C, H, W]`` batch and scale it to float32 in [0, 1]."""
    if images.ndim != 4:
        raise ValueError(
            f"images must be a uint8 batch [B, C, H, W], got shape {tuple(images.shape)}; "
            "add the channel dimension for grey images (x.unsqueeze(1))"
        )
    if images.dtype != torch.uint8:
        raise ValueError(
            f"images must be uint8 in [0, 255], got {images.dtype}; the transforms convert "
            "to float themselves, so pass the raw pixels"
        )
    return images.to(torch.float32).div_(255.0)


class _Normalizer:
    """Per-channel mean/std, validated once, kept as tensors per device."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) == 0 or len(self.mean) != len(self.std):
            raise ValueError(
                f"mean and std need the same number (>= 1) of entries, got {len(self.mean)} "
                f"and {len(self.std)}; give one value per channel, or one for all"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"std entries must be finite and > 0, got {self.std}")
        self._cache: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def check_channels(self, channels: int) -> None:
        if len(self.mean) not in (1, channels):
            raise ValueError(
                f"mean/std have {len(self.mean)} entries but the images have {channels} "
                "channels; pass one statistic per channel, or a single one"
            )

    def __call__(self, x: Tensor) -> Tensor:
        stats = self._cache.get(x.device)
        if stats is None:
            stats = (
                torch.tensor(self.mean, dtype=torch.float32, device=x.device),
                torch.tensor(self.std, dtype=torch.float32, device=x.device),
            )
            self._cache[x.device] = stats
        return ops.normalize(x, *stats)


class MultiViewTransform:
    """Applies a list of ViewSpecs (one per view; views may differ, e.g. BYOL's asymmetric blur and
    solarize probabilities, or DINO's global/local crops of different sizes) to a uint8 batch.

    Every random parameter is drawn per sample from ``generator`` on the device of the images,
    so a seeded generator reproduces the views exactly. Ops whose probability is 0 are skipped
    (they draw nothing).

    Example:
        >>> from selfsup.views import simclr_small_view
        >>> t = MultiViewTransform([simclr_small_view(32)] * 2, mean=[0.5], std=[0.25])
        >>> g = torch.Generator().manual_seed(0)
        >>> views = t(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), g)
        >>> [tuple(v.shape) for v in views]
        [(4, 1, 32, 32), (4, 1, 32, 32)]

    The same recipe at a smaller side (progressive resizing, :meth:`at_size`):
        >>> [tuple(v.shape) for v in t.at_size(16)(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), g)]
        [(4, 1, 16, 16), (4, 1, 16, 16)]
    """

    def __init__(
        self, specs: Sequence[ViewSpec], mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.specs = tuple(specs)
        if not self.specs:
            raise ValueError("MultiViewTransform needs at least one ViewSpec; SimCLR uses two")
        for spec in self.specs:
            if not isinstance(spec, ViewSpec):
                raise ValueError(f"specs must be ViewSpec instances, got {type(spec).__name__}")
            spec.validate()
        self._normalize = _Normalizer(mean, std)
        self._at_size: dict[int, MultiViewTransform] = {}

    @property
    def num_views(self) -> int:
        """Number of views returned per call."""
        return len(self.specs)

    @property
    def global_size(self) -> int:
        """Side of the global views: the largest spec size (local crops are smaller)."""
        return max(spec.size for spec in self.specs)

    def at_size(self, side: int) -> MultiViewTransform:
        """This recipe with its global views at ``side`` px and every smaller view (local
        crops) scaled by the same ratio (:func:`~selfsup.views.progressive.scaled_side`: rounded,
        at least 8 px); everything else (scales, colour, blur kernel as a fraction of the side)
        unchanged. Built once per side and kept: progressive resizing asks for it every step.

        Example (DINO's crops, 2 global + 2 local, drawn at half the side):
            >>> from selfsup.views import dino_views
            >>> t = MultiViewTransform(dino_views(32, 16, 2), mean=[0.5], std=[0.25])
            >>> [spec.size for spec in t.at_size(16).specs]
            [16, 16, 8, 8]
        """
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise ValueError(f"side must be a positive int (pixels), got {side!r}")
        full = self.global_size
        if side == full:
            return self
        scaled = self._at_size.get(side)
        if scaled is None:
            specs = [
                dataclasses.replace(
                    spec, size=side if spec.size == full else scaled_side(spec.size, side, full)
                )
                for spec in self.specs
            ]
            scaled = MultiViewTransform(specs, self._normalize.mean, self._normalize.std)
            self._at_size[side] = scaled
        return scaled

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """uint8 ``[B, C, H, W]`` -> ``num_views`` float32 tensors ``[B, C, spec.size, spec.size]``."""
        x = _to_float(images)  # [B, C, H, W] in [0, 1]
        self._normalize.check_channels(x.shape[1])
        if generator is not None and generator.device.type != x.device.type:
            raise ValueError(
                f"generator is on {generator.device} but the images are on {x.device}; "
                f"create it with torch.Generator(device={str(x.device)!r})"
            )
        return [self._view(x, spec, generator) for spec in self.specs]

    def _view(self, x: Tensor, spec: ViewSpec, generator: torch.Generator | None) -> Tensor:
        batch, channels, height, width = x.shape
        params = sample_view_params(spec, batch, height, width, channels, generator, x.device)
        return self._normalize(apply_view_params(x, spec, params))


class EvalTransform:
    """Deterministic evaluation transform: uint8 [B,C,H,W] -> float, resize (bilinear, antialias) to
    `size` when H or W differ, normalise.

    Non-square inputs are resized to ``size x size`` (the aspect ratio is not kept).
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels), got {size!r}")
        self.size = size
        self._normalize = _Normalizer(mean, std)

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 ``[B, C, H, W]`` -> float32 ``[B, C, size, size]``, normalised."""
        x = _to_float(images)  # [B, C, H, W]
        self._normalize.check_channels(x.shape[1])
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return self._normalize(x)
