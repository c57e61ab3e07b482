"""The evaluation protocols, one function each, on one candidate and one labelled subset.

* ``knn``: weighted k-NN (k=20, T=0.07, cosine; DINO's protocol) with the subset as the bank;
  nothing is tuned.
* ``linear``: a linear classifier on cached frozen features of the subset, its lr chosen on a
  stratified validation part of the subset, then retrained on all of it (fast).
* ``linear_aug``: the papers' linear evaluation: augmented views (crop + flip) through the
  frozen encoder every epoch, SGD + Nesterov + cosine, lr chosen on validation (slow; images).
* ``finetune``: the whole encoder and a linear head (SimCLR's semi-supervised recipe for
  ResNets, MAE's with layer-wise lr decay for ViTs), lr chosen on validation.

Every protocol sees only the labelled training subset until its hyper-parameters are fixed;
the test split is scored once, at the end (:mod:`selfsup.eval.finetune`, :mod:`.linear`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from selfsup.config import Config
from selfsup.data import ImageDataset
from selfsup.eval.finetune import FinetuneRecipe, finetune, recipe_for
from selfsup.eval.knn import knn_accuracy
from selfsup.eval.linear import linear_probe
from selfsup.eval.subsets import LabelSubset
from selfsup.methods.registry import get_method
from selfsup.progress import ProgressStyle, phase, say

__all__ = [
    "FEATURE_PROTOCOLS",
    "IMAGE_PROTOCOLS",
    "PROTOCOLS",
    "PROTOCOL_HELP",
    "feature_precision",
    "feature_protocol",
    "image_protocol",
    "image_recipe",
    "linear_batch_norm",
]

FEATURE_PROTOCOLS = ("knn", "linear")
IMAGE_PROTOCOLS = ("linear_aug", "finetune")
PROTOCOLS = FEATURE_PROTOCOLS + IMAGE_PROTOCOLS
VALIDATION = "stratified validation part of the labelled training subset (eval.val_fraction)"

PROTOCOL_HELP = {
    "knn": "weighted k-NN (eval.knn_k=20, T=0.07, cosine) of the frozen features; the labelled "
    "subset is the bank; nothing is tuned. Seconds.",
    "linear": "linear classifier on cached frozen features (standardised; MAE: BatchNorm without "
    "affine), SGD + cosine, lr from eval.linear_lrs chosen on a validation part of the labelled "
    "subset, then retrained on all of it. Seconds to a minute.",
    "linear_aug": "the papers' linear evaluation: crop + flip views through the frozen encoder "
    "every epoch, SGD + Nesterov + cosine, lr chosen on validation. Minutes (images, not "
    "features).",
    "finetune": "the whole encoder + a linear head on the labelled subset (ResNet: SimCLR's "
    "semi-supervised recipe, Nesterov SGD, crop + flip, encoder lr = eval.finetune_encoder_lr_scale "
    "x head lr; ViT: MAE's, AdamW, layer-wise lr decay, RandAugment, mixup/cutmix, label "
    "smoothing, drop path), lr chosen on validation; beside it the same network trained from "
    "scratch on the same labels. Minutes to hours.",
}


def linear_batch_norm(cfg: Config) -> bool:
    """BatchNorm without affine before the linear layer where the method's protocol has it
    (MAE, REFERENCE.md), unless ``eval.linear_batch_norm`` says otherwise."""
    flag = cfg.eval.linear_batch_norm
    return get_method(cfg.method).cls.linear_probe_batch_norm if flag is None else flag


def feature_protocol(
    protocol: str,
    name: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    subset: LabelSubset,
    cfg: Config,
    num_classes: int,
    device: torch.device | str,
    progress: ProgressStyle | None,
) -> tuple[float, dict[str, Any]]:
    """``knn`` or ``linear`` on cached features; returns top-1 and what eval.json records."""
    e = cfg.eval
    bank, bank_labels = train[0][subset.indices], train[1][subset.indices]
    label = f"{name}: {protocol} ({subset.name} labels)"
    if protocol == "knn":
        with phase(label, f"{len(bank)} bank / {len(test[0])} queries", style=progress) as step:
            top1 = knn_accuracy(
                bank,
                bank_labels,
                test[0],
                test[1],
                num_classes,
                k=min(e.knn_k, len(bank)),
                temperature=e.knn_temperature,
            )
            step.result = f"top-1 {100 * top1:.2f}%"
        settings = {
            "k": min(e.knn_k, len(bank)),
            "temperature": e.knn_temperature,
            "feature_precision": _precision(cfg, device, name),
        }
        return top1, {"settings": settings, "selection": None}
    result = linear_probe(
        bank,
        bank_labels,
        test[0],
        test[1],
        num_classes,
        epochs=e.linear_epochs,
        lrs=tuple(e.linear_lrs),
        val_fraction=e.val_fraction,
        batch_norm=linear_batch_norm(cfg),
        seed=cfg.train.seed,
        device=device,
        progress=progress,
        desc=label,
    )
    settings = {
        "lr": result.lr,
        "epochs": e.linear_epochs,
        "batch_norm": linear_batch_norm(cfg),
        "feature_precision": _precision(cfg, device, name),
    }
    selection = {"on": VALIDATION, "chosen": {"lr": result.lr}, "candidates": result.history}
    return result.test_accuracy, {"settings": settings, "selection": selection}


def feature_precision(cfg: Config, device: torch.device | str) -> str:
    """The precision features are extracted in (``eval.precision`` resolved on ``device``)."""
    from selfsup.train.device import precision_name, resolve_precision

    return precision_name(resolve_precision(cfg.eval.precision, torch.device(device)))


def _precision(cfg: Config, device: torch.device | str, candidate: str) -> str:
    """The precision of the candidate's features (raw pixels are always float32)."""
    return "fp32" if candidate == "raw pixels" else feature_precision(cfg, device)


def image_recipe(cfg: Config, protocol: str, fraction: float) -> FinetuneRecipe:
    """The ``linear_aug`` / ``finetune`` recipe of the run's backbone with eval.* overrides."""
    e = cfg.eval
    frozen = protocol == "linear_aug"
    return recipe_for(
        cfg.backbone.name,
        fraction,
        frozen=frozen,
        head_batch_norm=linear_batch_norm(cfg) if frozen else False,
        regularise=e.finetune_regularise,
        epochs=e.probe_epochs if frozen else e.finetune_epochs,
        warmup_epochs=None if frozen else e.finetune_warmup_epochs,
        base_lrs=e.probe_lrs if frozen else e.finetune_lrs,
        batch_size=e.finetune_batch_size,
        encoder_lr_scale=e.finetune_encoder_lr_scale,
        layer_decay=e.finetune_layer_decay if cfg.backbone.name.startswith("vit") else None,
        val_fraction=e.val_fraction,
        seed=cfg.train.seed,
    )


def image_protocol(
    protocol: str,
    name: str,
    encoder: nn.Module,
    supervised: bool,
    train_set: ImageDataset,
    test_set: ImageDataset,
    subset: LabelSubset,
    cfg: Config,
    num_classes: int,
    device: torch.device | str,
    progress: ProgressStyle | None,
) -> tuple[float, dict[str, Any]]:
    """``linear_aug`` or ``finetune`` of one candidate on the images of ``subset``."""
    recipe = image_recipe(cfg, protocol, subset.fraction)
    label = f"{name}: {protocol} ({subset.name} labels)"
    assert cfg.views.mean is not None and cfg.views.std is not None
    doing = f"{len(subset.indices)} images, {recipe.epochs} epochs, lrs {list(recipe.base_lrs)}"
    with phase(label, doing, style=progress) as step:
        result = finetune(
            encoder,
            train_set,
            subset.indices,
            test_set,
            num_classes,
            recipe,
            cfg.views.size,
            list(cfg.views.mean),
            list(cfg.views.std),
            device,
            supervised=supervised,
            report=(lambda msg: say(f"{label}: {msg}")) if progress is not None else None,
        )
        step.result = f"top-1 {100 * result.test_accuracy:.2f}%"
    settings = recipe.as_settings()
    settings["supervised_from_scratch"] = supervised
    scored = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in h.items()}
        for h in result.history
    ]  # one lr: nothing was chosen, and no validation score exists (None)
    selection = {
        "on": VALIDATION if len(scored) > 1 else "nothing to choose (one lr given)",
        "chosen": {"lr": result.lr},
        "candidates": scored,
    }
    return result.test_accuracy, {"settings": settings, "selection": selection}
