"""Turn a :class:`~selfsup.config.Config` into objects: datasets, views, backbone, method.

The CLI, the trainer and the evaluation all build through here, so a run directory's
``config.yaml`` rebuilds exactly the encoder that was trained.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

import torch
from torch import nn

from selfsup.artifact import encoder_meta  # noqa: F401 (build.encoder_meta for callers)
from selfsup.backbones import LightnessEncoder, build_backbone
from selfsup.config import Config, ViewsConfig, local_crop_size
from selfsup.data import ImageDataset, TensorImageDataset, load_dataset
from selfsup.methods import Method
from selfsup.methods.registry import get_method
from selfsup.train.optim import build_optimizer, param_groups, scaled_lr
from selfsup.views import EvalTransform, MultiViewTransform, ViewSpec

# ImageNet statistics: the default for image folders, whose content we cannot know in advance.
LrRule = Literal["linear", "sqrt", "none"]
OptimizerName = Literal["lars", "sgd", "adamw"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_dataset(cfg: Config) -> ImageDataset:
    d = cfg.data
    dataset = load_dataset(
        d.dataset,
        "train",
        root=d.data_dir,
        image_size=d.image_size,
        channels=d.channels,
        download=d.download,
        strict=d.strict,
    )
    if d.subset is not None and d.subset < len(dataset):
        if not isinstance(dataset, TensorImageDataset):
            raise ValueError(
                "data.subset works with in-memory datasets; make a smaller folder instead"
            )
        gen = torch.Generator().manual_seed(cfg.train.seed)
        keep = torch.randperm(len(dataset), generator=gen)[: d.subset]
        images, labels = dataset.get_batch(keep)
        dataset = TensorImageDataset(
            images,
            labels if dataset.has_labels else None,
            dataset.name,
            dataset.num_classes,
            source=dataset.source,
            location=getattr(dataset, "location", None),
        )
    location = getattr(dataset, "location", None)
    if d.data_dir is None and location is not None:
        d.data_dir = location  # the run's config.yaml records where the data came from
    return dataset


def eval_datasets(cfg: Config) -> tuple[ImageDataset, ImageDataset] | None:
    """Labelled (train, test) splits for evaluation, or None when no labels exist."""
    d = cfg.data
    name = d.eval_dataset or d.dataset
    same = name.replace("-", "_") == d.dataset
    root = d.eval_data_dir or (d.data_dir if same else None)
    try:
        train = load_dataset(
            name,
            "train",
            root=root,
            image_size=d.image_size,
            channels=d.channels,
            download=d.download,
        )
        test = load_dataset(
            name,
            "test",
            root=root,
            image_size=d.image_size,
            channels=d.channels,
            download=d.download,
        )
    except (FileNotFoundError, ValueError):
        return None
    if not (train.has_labels and test.has_labels):
        return None
    return train, test


def resolve_normalization(cfg: Config, dataset: ImageDataset) -> Config:
    """Fill ``views.mean/std`` from the training data (in-memory sets) or ImageNet's statistics.

    Resolved values are written into the config, so evaluation normalises exactly like training.
    """
    v = cfg.views
    if v.mean is not None and v.std is not None:
        return cfg
    if isinstance(dataset, TensorImageDataset):
        n = min(len(dataset), 10000)
        images, _ = dataset.get_batch(torch.arange(n))
        x = images.float().div_(255)
        mean = x.mean(dim=(0, 2, 3)).tolist()
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()
    else:
        mean, std = list(IMAGENET_MEAN[: dataset.channels]), list(IMAGENET_STD[: dataset.channels])
        if dataset.channels == 1:
            mean, std = [0.449], [0.226]
    if v.mean is None:
        v.mean = [round(m, 4) for m in mean]
    if v.std is None:
        v.std = [round(s, 4) for s in std]
    return cfg


def input_channels(cfg: Config, dataset: ImageDataset | None = None) -> int:
    if cfg.data.channels is not None:
        return cfg.data.channels
    if dataset is None:
        raise ValueError("input channels unknown: pass the dataset or set data.channels")
    return dataset.channels


def cifar_stem(cfg: Config) -> bool:
    stem = cfg.backbone.cifar_stem
    return cfg.views.size <= 64 if stem is None else stem


def make_backbone(cfg: Config, in_channels: int) -> nn.Module:
    """The configured backbone for ``in_channels``-channel images. For a method whose encoder
    sees lightness (``encoder_input == "lightness"``: Colorization) it is a 1-channel backbone
    inside a :class:`~selfsup.backbones.LightnessEncoder`, which takes the normalised RGB images
    every evaluation and export path feeds it."""
    b = cfg.backbone
    lightness = get_method(cfg.method).cls.encoder_input == "lightness"
    if lightness and in_channels != 3:
        raise ValueError(
            f"method={cfg.method} predicts colour from the lightness of RGB images, but the data "
            f"has {in_channels} channel(s) (data.dataset={cfg.data.dataset}); train on colour "
            "images: data.dataset=photo_patches, data.dataset=cifar10 or a folder of colour "
            "images (and leave data.channels unset or 3)"
        )
    backbone = build_backbone(
        b.name,
        1 if lightness else in_channels,
        b.width,
        cifar_stem(cfg),
        b.zero_init_residual,
        image_size=cfg.views.size,
        patch_size=b.patch_size,
        pool=b.pool,
        drop_path_rate=b.drop_path_rate,
    )
    if b.freeze_patch_embed:
        patch_embed = getattr(backbone, "patch_embed", None)
        if patch_embed is None:
            raise ValueError(
                f"backbone.freeze_patch_embed=true needs a ViT backbone, got {b.name!r}; set "
                "backbone.freeze_patch_embed=false"
            )
        # MoCo v3's stop-grad-conv1: the random patch projection stays fixed (more stable).
        patch_embed.requires_grad_(False)
    if lightness:
        if cfg.views.mean is None or cfg.views.std is None:
            raise ValueError(
                "views.mean/std unresolved: call resolve_normalization(cfg, dataset) first (the "
                "lightness encoder undoes the normalisation of its RGB input)"
            )
        return LightnessEncoder(backbone, cfg.views.mean, cfg.views.std)
    return backbone


def _per_view(name: str, values: list[float] | None, count: int) -> list[float | None]:
    if values is None:
        return [None] * count
    if len(values) == 1:
        return [values[0]] * count
    if len(values) != count:
        raise ValueError(
            f"views.{name} has {len(values)} values but the recipe makes {count} views; "
            f"give one value (every view) or {count}"
        )
    return [*values]


def apply_view_overrides(
    specs: list[ViewSpec], v: ViewsConfig, num_global: int | None = None
) -> list[ViewSpec]:
    """The method's recipe with the user's ``views.*`` settings applied (null keeps the recipe).

    Sizes come from the recipe. ``views.crop_min_scale`` applies to the first ``num_global``
    views only (default: all); local crops keep ``views.local_crop_scale``.
    """
    blur = _per_view("blur_p", v.blur_p, len(specs))
    solarize = _per_view("solarize_p", v.solarize_p, len(specs))
    num_global = len(specs) if num_global is None else num_global
    out = []
    for i, (spec, blur_p, solarize_p) in enumerate(zip(specs, blur, solarize)):
        changes: dict[str, Any] = {
            "brightness": spec.brightness * v.color_strength,
            "contrast": spec.contrast * v.color_strength,
            "saturation": spec.saturation * v.color_strength,
            "hue": min(0.5, spec.hue * v.color_strength),
        }
        if v.crop_min_scale is not None and i < num_global:
            changes["crop_scale"] = (v.crop_min_scale, 1.0)
        for key in ("jitter_p", "gray_p", "flip_p"):
            if getattr(v, key) is not None:
                changes[key] = getattr(v, key)
        if blur_p is not None:
            changes["blur_p"] = blur_p
        if solarize_p is not None:
            changes["solarize_p"] = solarize_p
        out.append(dataclasses.replace(spec, **changes))
    return out


def method_view_specs(cfg: Config) -> list[ViewSpec]:
    """The method's own view recipe (REFERENCE.md, registered with the method), its local
    crops (``views.local_crops``, null = the method's count), then the config's ``views.*``
    overrides."""
    entry = get_method(cfg.method)
    specs = entry.views(cfg)  # the global views
    num_global = len(specs)
    if entry.multicrop is not None:
        count = cfg.views.local_crops
        count = entry.multicrop.count if count is None else count
        if count:
            local = entry.multicrop.view(cfg, specs[0], local_crop_size(cfg))
            specs = [*specs, *[local] * count]
    return apply_view_overrides(specs, cfg.views, num_global)


def eval_transform(cfg: Config) -> EvalTransform:
    assert cfg.views.mean is not None and cfg.views.std is not None
    return EvalTransform(cfg.views.size, cfg.views.mean, cfg.views.std)


def make_method(cfg: Config, in_channels: int) -> Method:
    """Build the configured method around a fresh backbone (seeded by the caller)."""
    if cfg.views.mean is None or cfg.views.std is None:
        raise ValueError(
            "views.mean/std unresolved: call resolve_normalization(cfg, dataset) first"
        )
    recipe = MultiViewTransform(method_view_specs(cfg), cfg.views.mean, cfg.views.std)
    return get_method(cfg.method).cls.from_config(cfg, make_backbone(cfg, in_channels), recipe)


def make_optimizer(cfg: Config, method: nn.Module) -> tuple[torch.optim.Optimizer, float]:
    """The configured optimiser over ``method``'s parameters (no weight decay on biases and norm
    parameters, their lr scaled by ``optim.norm_and_bias_lr_scale``; the groups the method
    declares in ``param_group_options``) and the peak learning rate after the stated scaling
    rule."""
    o, t = cfg.optim, cfg.train
    peak_lr = scaled_lr(o.base_lr, t.batch_size, cast(LrRule, o.lr_scaling))
    optimizer = build_optimizer(
        cast(OptimizerName, o.name),
        param_groups(
            method,
            o.weight_decay,
            o.decay_norm_and_bias,
            norm_and_bias_lr_scale=o.norm_and_bias_lr_scale,
            options=method.param_group_options() if isinstance(method, Method) else None,
        ),
        lr=peak_lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
        betas=(o.betas[0], o.betas[1]),
        eta=o.lars_eta,
    )
    return optimizer, peak_lr
