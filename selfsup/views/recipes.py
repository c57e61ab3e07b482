"""View recipes: which random ops make one view, and the transforms that apply them to a batch.

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

__all__ = [
    "EvalTransform",
    "MultiViewTransform",
    "ViewParams",
    "ViewSpec",
    "apply_view_params",
    "byol_views",
    "dino_views",
    "mae_view",
    "moco_v2_view",
    "sample_view_params",
    "simclr_small_view",
    "simclr_view",
]


@dataclass(frozen=True)
class ViewSpec:
    """One view's recipe. Defaults = SimCLR ImageNet recipe (REFERENCE.md).

    Attributes:
        size: output side in pixels.
        crop_scale: range of the crop's area as a fraction of the image, within (0, 1].
        crop_ratio: range of the crop's aspect ratio w / h (sampled log-uniformly).
        flip_p: probability of a horizontal flip.
        jitter_p: probability of colour jitter.
        brightness, contrast, saturation: jitter strengths s >= 0; factors U[max(0, 1-s), 1+s].
        hue: hue jitter strength in turns, in [0, 0.5]; shift U[-hue, hue].
        gray_p: probability of converting to grey (identity on 1-channel data).
        blur_p: probability of Gaussian blur.
        blur_sigma: range of the blur's standard deviation in pixels.
        blur_kernel_fraction: kernel side as a fraction of ``size`` (made odd, at least 3).
        solarize_p: probability of solarisation.
        solarize_threshold: pixels >= this value (in [0, 1]) are inverted.
    """

    size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.8
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1  # kernel side ~10% of the view side, odd, >= 3
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        # Accept lists (as YAML gives them) for the range fields; store hashable tuples.
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    @property
    def blur_kernel_size(self) -> int:
        """Odd blur kernel side: ``blur_kernel_fraction * size`` rounded down to odd, >= 3."""
        return ops.gaussian_kernel_size(self.size, self.blur_kernel_fraction)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field outside its valid range."""
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"ViewSpec.size must be a positive int (pixels), got {self.size!r}")
        _check_range(
            self.crop_scale, "crop_scale", 0.0, 1.0, "(0.08, 1.0) for SimCLR", open_low=True
        )
        _check_range(self.crop_ratio, "crop_ratio", 0.0, math.inf, "(3/4, 4/3)", open_low=True)
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"ViewSpec.{name} is a probability and must lie in [0, 1], got {value}"
                )
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(
                    f"ViewSpec.{name} is a jitter strength and must be a finite number >= 0, "
                    f"got {value}; SimCLR uses 0.8 * colour strength"
                )
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(
                f"ViewSpec.hue is a shift in turns and must lie in [0, 0.5], got {self.hue}; "
                "SimCLR uses 0.2 * colour strength"
            )
        _check_range(self.blur_sigma, "blur_sigma", 0.0, math.inf, "(0.1, 2.0)", open_low=True)
        if not 0.0 < self.blur_kernel_fraction <= 1.0:
            raise ValueError(
                f"ViewSpec.blur_kernel_fraction must lie in (0, 1], got "
                f"{self.blur_kernel_fraction}; SimCLR uses 0.1 (kernel ~10% of the view side)"
            )
        if self.blur_p > 0 and self.blur_kernel_size // 2 >= self.size:
            raise ValueError(
                f"ViewSpec.size={self.size} is too small for a blur kernel of "
                f"{self.blur_kernel_size} pixels; use size >= 2 or set blur_p=0"
            )
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(
                f"ViewSpec.solarize_threshold must lie in [0, 1] (pixel values are floats in "
                f"[0, 1]), got {self.solarize_threshold}; BYOL uses 0.5"
            )


def _check_range(
    value: tuple[float, float], name: str, low: float, high: float, example: str, open_low: bool
) -> None:
    lower_ok = (lambda v: v > low) if open_low else (lambda v: v >= low)
    ok = (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        and lower_ok(value[0])
        and value[0] <= value[1] <= high
    )
    if not ok:
        bound = "(" if open_low else "["
        raise ValueError(
            f"ViewSpec.{name} must be a (min, max) pair with min <= max inside "
            f"{bound}{low}, {high}], got {value!r}; e.g. {example}"
        )


def simclr_view(
    size: int = 224,
    color_strength: float = 1.0,
    blur: bool = True,
    crop_scale: tuple[float, float] = (0.08, 1.0),
) -> ViewSpec:
    """SimCLR view: jitter brightness/contrast/saturation ``0.8 s``, hue ``0.2 s`` with p 0.8.

    ``blur`` turns the Gaussian blur (p 0.5, sigma U(0.1, 2), kernel ~10% of ``size``) on.
    """
    if not (math.isfinite(color_strength) and 0.0 <= color_strength <= 2.5):
        raise ValueError(
            f"color_strength must lie in [0, 2.5] (hue 0.2 * s may not exceed 0.5), got "
            f"{color_strength}; SimCLR uses 1.0 on ImageNet and 0.5 on small images"
        )
    return ViewSpec(
        size=size,
        crop_scale=crop_scale,
        brightness=0.8 * color_strength,
        contrast=0.8 * color_strength,
        saturation=0.8 * color_strength,
        hue=0.2 * color_strength,
        blur_p=0.5 if blur else 0.0,
    )


def simclr_small_view(size: int = 32) -> ViewSpec:
    """SimCLR view for small images (CIFAR, Fashion-MNIST): colour strength 0.5, no blur."""
    return simclr_view(size=size, color_strength=0.5, blur=False)


def byol_views(size: int = 224, crop_scale: tuple[float, float] = (0.08, 1.0)) -> list[ViewSpec]:
    """BYOL's asymmetric pair of views (Grill et al. 2020, Table 6; official ``augmentations.py``).

    Both views: RandomResizedCrop(``crop_scale``, aspect 3/4-4/3), flip 0.5, colour jitter
    (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with p 0.8 in random order,
    grayscale 0.2, Gaussian blur with sigma U(0.1, 2) and a kernel of ~10% of ``size``.
    They differ in two probabilities only:

    ====================  ========  ========
    op                    view 1    view 2
    ====================  ========  ========
    Gaussian blur         1.0       0.1
    solarize (x >= 0.5)   0.0       0.2
    ====================  ========  ========

    Differences from the reference: bilinear resizing without antialiasing (the official
    code resizes bicubically); ops run in the order of :class:`MultiViewTransform`, which is
    BYOL's order.

    Example:
        >>> first, second = byol_views(32)
        >>> (first.blur_p, first.solarize_p), (second.blur_p, second.solarize_p)
        ((1.0, 0.0), (0.1, 0.2))
    """
    common = ViewSpec(
        size=size,
        crop_scale=crop_scale,
        brightness=0.4,
        contrast=0.4,
        saturation=0.2,
        hue=0.1,
        blur_p=1.0,
        solarize_p=0.0,
    )
    return [common, dataclasses.replace(common, blur_p=0.1, solarize_p=0.2)]


def moco_v2_view(size: int = 224) -> ViewSpec:
    """MoCo v2's view (Chen et al. 2020, "Improved baselines"; official ``main_moco.py --aug-plus``).

    RandomResizedCrop(area 0.2-1, aspect 3/4-4/3), colour jitter (0.4, 0.4, 0.4, 0.1) with
    p 0.8, grayscale 0.2, Gaussian blur p 0.5 with sigma U(0.1, 2), flip 0.5. Both views of a
    pair use it.

    Differences from the reference: the official blur is PIL's ``GaussianBlur(radius=sigma)``,
    whose support grows with sigma; here the kernel side is fixed at ~10% of ``size`` (23 px
    at 224, wider than 3 sigma for every sigma drawn). Resizing is bilinear without
    antialiasing.

    Example:
        >>> moco_v2_view(32).crop_scale
        (0.2, 1.0)
    """
    return ViewSpec(
        size=size,
        crop_scale=(0.2, 1.0),
        brightness=0.4,
        contrast=0.4,
        saturation=0.4,
        hue=0.1,
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=0.5,
        solarize_p=0.0,
    )


def mae_view(size: int = 224) -> ViewSpec:
    """MAE's view (He et al. 2021; official ``main_pretrain.py``): crop and flip, nothing else.

    RandomResizedCrop(area 0.2-1, aspect 3/4-4/3) + horizontal flip 0.5; no colour jitter, no
    grayscale, no blur, no solarize (the paper reports that colour jitter hurts MAE).

    Differences from the reference: bilinear resizing without antialiasing (the official
    code resizes bicubically).

    Example:
        >>> spec = mae_view(32)
        >>> spec.jitter_p, spec.gray_p, spec.blur_p, spec.solarize_p
        (0.0, 0.0, 0.0, 0.0)
    """
    return ViewSpec(
        size=size,
        crop_scale=(0.2, 1.0),
        flip_p=0.5,
        jitter_p=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        gray_p=0.0,
        blur_p=0.0,
        solarize_p=0.0,
    )


def dino_views(
    global_size: int = 224,
    local_size: int = 96,
    num_local: int = 8,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
) -> list[ViewSpec]:
    """DINO's multi-crop recipe (Caron et al. 2021; official ``DataAugmentationDINO``).

    Two global crops of ``global_size`` (area ``global_scale``) and ``num_local`` local crops
    of ``local_size`` (area ``local_scale``); the global crops come first. Every crop: flip
    0.5, colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with p 0.8,
    grayscale 0.2, Gaussian blur with sigma U(0.1, 2). They differ in blur and solarize:

    =============  ========  ========  =====
    op             global 1  global 2  local
    =============  ========  ========  =====
    blur           1.0       0.1       0.5
    solarize       0.0       0.2       0.0
    =============  ========  ========  =====

    The paper's best setting is 2 x 224 + 10 x 96, the code default ``num_local=8``.

    Differences from the reference: bilinear resizing without antialiasing (the official code
    resizes bicubically); the blur kernel covers at least +-3 sigma of the largest sigma (PIL's
    ``GaussianBlur(radius=sigma)`` is not truncated at a fixed size).

    Example:
        >>> specs = dino_views(32, 16, num_local=4)
        >>> [s.size for s in specs], [s.blur_p for s in specs[:3]], specs[1].solarize_p
        ([32, 32, 16, 16, 16, 16], [1.0, 0.1, 0.5], 0.2)
    """
    if isinstance(num_local, bool) or not isinstance(num_local, int) or num_local < 0:
        raise ValueError(
            f"num_local must be an integer >= 0, got {num_local!r}; DINO uses 8 (code) or 10 "
            "(paper) local crops"
        )

    def crop(size: int, scale: tuple[float, float], blur_p: float, solarize_p: float) -> ViewSpec:
        sigma_max = 2.0
        kernel = 2 * math.ceil(3 * sigma_max) + 1  # +-3 sigma
        return ViewSpec(
            size=size,
            crop_scale=scale,
            brightness=0.4,
            contrast=0.4,
            saturation=0.2,
            hue=0.1,
            blur_p=blur_p,
            blur_sigma=(0.1, sigma_max),
            blur_kernel_fraction=min(1.0, max(0.1, kernel / size)),
            solarize_p=solarize_p,
        )

    return [
        crop(global_size, global_scale, 1.0, 0.0),
        crop(global_size, global_scale, 0.1, 0.2),
        *[crop(local_size, local_scale, 0.5, 0.0) for _ in range(num_local)],
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
        >>> t = MultiViewTransform([simclr_small_view(32)] * 2, mean=[0.5], std=[0.25])
        >>> g = torch.Generator().manual_seed(0)
        >>> views = t(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), g)
        >>> [tuple(v.shape) for v in views]
        [(4, 1, 32, 32), (4, 1, 32, 32)]
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

    @property
    def num_views(self) -> int:
        """Number of views returned per call."""
        return len(self.specs)

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
