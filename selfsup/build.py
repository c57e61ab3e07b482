"""Turn a :class:`~selfsup.config.Config` into objects: datasets, views, backbone, method.

The CLI, the trainer and the evaluation all build through here, so a run directory's
``config.yaml`` rebuilds exactly the encoder that was trained.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

import torch
from torch import nn

from selfsup.backbones import build_backbone, feature_dim
from selfsup.config import Config
from selfsup.data import ImageDataset, TensorImageDataset, load_dataset
from selfsup.methods import Method, SimCLR
from selfsup.nn import simclr_projector
from selfsup.train.optim import build_optimizer, param_groups, scaled_lr
from selfsup.views import EvalTransform, MultiViewTransform, ViewSpec, simclr_view

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
            images, labels if dataset.has_labels else None, dataset.name, dataset.num_classes
        )
    return dataset


def eval_datasets(cfg: Config) -> tuple[ImageDataset, ImageDataset] | None:
    """Labelled (train, test) splits for evaluation, or None when no labels exist."""
    d = cfg.data
    name = d.eval_dataset or d.dataset
    root = d.eval_data_dir or d.data_dir
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
    b = cfg.backbone
    return build_backbone(b.name, in_channels, b.width, cifar_stem(cfg), b.zero_init_residual)


def simclr_view_spec(cfg: Config) -> ViewSpec:
    v = cfg.views
    spec = simclr_view(
        size=v.size,
        color_strength=v.color_strength,
        blur=v.blur_p > 0,
        crop_scale=(v.crop_min_scale, 1.0),
    )
    return dataclasses.replace(
        spec, jitter_p=v.jitter_p, gray_p=v.gray_p, blur_p=v.blur_p, flip_p=v.flip_p
    )


def eval_transform(cfg: Config) -> EvalTransform:
    assert cfg.views.mean is not None and cfg.views.std is not None
    return EvalTransform(cfg.views.size, cfg.views.mean, cfg.views.std)


def make_method(cfg: Config, in_channels: int) -> Method:
    """Build the configured method around a fresh backbone (seeded by the caller)."""
    if cfg.views.mean is None or cfg.views.std is None:
        raise ValueError(
            "views.mean/std unresolved: call resolve_normalization(cfg, dataset) first"
        )
    backbone = make_backbone(cfg, in_channels)
    if cfg.method == "simclr":
        s = cfg.simclr
        spec = simclr_view_spec(cfg)
        recipe = MultiViewTransform([spec, spec], cfg.views.mean, cfg.views.std)
        projector = simclr_projector(
            feature_dim(backbone),
            cast(Literal["v1", "v2"], s.projector),
            s.proj_hidden_dim,
            s.proj_out_dim,
        )
        return SimCLR(backbone, projector, recipe, s.temperature, s.gather_distributed)
    raise ValueError(f"unknown method {cfg.method!r}")


def encoder_meta(cfg: Config, in_channels: int, encoder: nn.Module) -> dict[str, Any]:
    """What a reader needs to rebuild and feed the exported encoder."""
    return {
        "format": "selfsup-encoder/1",
        "method": cfg.method,
        "backbone": {**dataclasses.asdict(cfg.backbone), "cifar_stem": cifar_stem(cfg)},
        "in_channels": in_channels,
        "feature_dim": feature_dim(encoder),
        "image_size": cfg.views.size,
        "mean": cfg.views.mean,
        "std": cfg.views.std,
    }


def make_optimizer(cfg: Config, method: nn.Module) -> tuple[torch.optim.Optimizer, float]:
    """The configured optimiser over ``method``'s parameters (no weight decay on biases and norm
    parameters) and the peak learning rate after the stated scaling rule."""
    o, t = cfg.optim, cfg.train
    peak_lr = scaled_lr(o.base_lr, t.batch_size, cast(LrRule, o.lr_scaling))
    optimizer = build_optimizer(
        cast(OptimizerName, o.name),
        param_groups(method, o.weight_decay),
        lr=peak_lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
        betas=(o.betas[0], o.betas[1]),
        eta=o.lars_eta,
    )
    return optimizer, peak_lr
