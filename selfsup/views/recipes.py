"""The per-method view presets: SimCLR, BYOL, MoCo v2, MAE, DINO's multi-crop, SwAV,
Colorization, and the crops that rotation prediction and jigsaw puzzles start from.

Each returns :class:`ViewSpec` objects with the reference implementation's values; the
docstrings name the paper, the official code and where this library differs from it.
"""

from __future__ import annotations

import dataclasses
import math

from selfsup.views.spec import ViewSpec

__all__ = [
    "byol_local_view",
    "byol_views",
    "colorization_view",
    "dino_global_views",
    "dino_local_view",
    "dino_views",
    "jigsaw_view",
    "mae_view",
    "moco_v2_view",
    "rotation_view",
    "simclr_small_view",
    "simclr_view",
    "swav_view",
]


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


def byol_local_view(size: int = 96, scale: tuple[float, float] = (0.05, 0.14)) -> ViewSpec:
    """A local crop for BYOL-style recipes (BYOL, MoCo v3 with ``views.local_crops``): the
    common distortions of :func:`byol_views` with blur p 0.5 and no solarize, between its two
    views (DINO's local crops, whose recipe is BYOL's, use the same).

    Example:
        >>> spec = byol_local_view(12)
        >>> spec.size, spec.blur_p, spec.solarize_p
        (12, 0.5, 0.0)
    """
    return dataclasses.replace(byol_views(size, scale)[0], blur_p=0.5, solarize_p=0.0)


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
    local = dino_local_view(local_size, local_scale)
    return [*dino_global_views(global_size, global_scale), *[local] * num_local]


def swav_view(size: int = 224, crop_scale: tuple[float, float] = (0.14, 1.0)) -> ViewSpec:
    """SwAV's crop (Caron et al. 2020; official ``multicropdataset.py``): SimCLR's colour
    distortion at strength 1 and Gaussian blur p 0.5, for global and local crops alike.

    RandomResizedCrop(area ``crop_scale``: (0.14, 1) for the global crops, (0.05, 0.14) for the
    local ones), flip 0.5, colour jitter (0.8, 0.8, 0.8, 0.2) with p 0.8, grayscale 0.2, blur
    p 0.5 with sigma U(0.1, 2).

    Differences from the reference: the official blur is PIL's ``GaussianBlur(radius=sigma)``;
    here the kernel side is ~10% of ``size``. Bilinear resizing without antialiasing.

    Example:
        >>> spec = swav_view(32)
        >>> spec.crop_scale, spec.brightness, spec.blur_p
        ((0.14, 1.0), 0.8, 0.5)
    """
    return simclr_view(size, color_strength=1.0, blur=True, crop_scale=crop_scale)


def _dino_crop(size: int, scale: tuple[float, float], blur_p: float, solarize_p: float) -> ViewSpec:
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


def dino_global_views(size: int = 224, scale: tuple[float, float] = (0.4, 1.0)) -> list[ViewSpec]:
    """DINO's two global crops (:func:`dino_views`): blur 1.0 / 0.1, solarize 0 / 0.2."""
    return [_dino_crop(size, scale, 1.0, 0.0), _dino_crop(size, scale, 0.1, 0.2)]


def dino_local_view(size: int = 96, scale: tuple[float, float] = (0.05, 0.4)) -> ViewSpec:
    """One DINO local crop (:func:`dino_views`): blur 0.5, no solarize."""
    return _dino_crop(size, scale, 0.5, 0.0)


def rotation_view(size: int = 224, crop_scale: tuple[float, float] = (0.5, 1.0)) -> ViewSpec:
    """RotNet's view (Gidaris et al. 2018), before the four rotations: a mild crop and a flip.

    RandomResizedCrop(area ``crop_scale``, aspect 3/4-4/3) + horizontal flip 0.5; no colour
    jitter, grayscale, blur or solarize: the task is the image's orientation, which colour
    changes neither hide nor reveal. The official CIFAR-10 code augments with a random 32 px
    crop of the image padded by 4 px and a horizontal flip; a resized crop of at least half
    the area is our equally mild, size-agnostic stand-in.

    Example:
        >>> spec = rotation_view(32)
        >>> spec.crop_scale, spec.flip_p, spec.jitter_p, spec.blur_p
        ((0.5, 1.0), 0.5, 0.0, 0.0)
    """
    return dataclasses.replace(mae_view(size), crop_scale=crop_scale)


def jigsaw_view(size: int = 225, crop_scale: tuple[float, float] = (0.6, 1.0)) -> ViewSpec:
    """The crop a jigsaw puzzle is cut from (Noroozi & Favaro 2016): crop and flip only.

    RandomResizedCrop(area ``crop_scale``, aspect 3/4-4/3) to ``size`` + horizontal flip 0.5,
    no colour operations (each tile is normalised on its own afterwards). The paper cuts a
    225 px crop at a random position of the image resized to 256 px (about 0.77 of its
    area, not rescaled); on small images a resized crop keeps the puzzle at ``size`` without
    cutting the image down further.

    Example:
        >>> spec = jigsaw_view(30)
        >>> spec.size, spec.crop_scale, spec.jitter_p, spec.gray_p
        (30, (0.6, 1.0), 0.0, 0.0)
    """
    return dataclasses.replace(mae_view(size), crop_scale=crop_scale)


def colorization_view(size: int = 224) -> ViewSpec:
    """Colorization's view (Zhang et al. 2016): crop and flip, nothing that changes colour.

    The recipe of :func:`mae_view`: RandomResizedCrop(area 0.2-1, aspect 3/4-4/3) + horizontal
    flip 0.5; no colour jitter, no grayscale, no blur, no solarize, since the view's colours are
    the targets the network predicts.

    Differences from the reference: the paper crops full-size ImageNet images; here the crop's
    area is drawn in 0.2-1 of the image and resized bilinearly to ``size``.

    Example:
        >>> spec = colorization_view(32)
        >>> spec.crop_scale, spec.jitter_p, spec.gray_p, spec.blur_p
        ((0.2, 1.0), 0.0, 0.0, 0.0)
    """
    return mae_view(size)
