r"""Fine-tuning (and the augmented linear protocol) on a labelled subset, with the learning rate
chosen on a validation split carved from that subset; the test split is read once, at the end.

Two recipes, picked by the backbone (``recipe_for``):

* **ResNet** (SimCLR / BYOL semi-supervised protocol, Chen et al. 2020 app. B.5): SGD with
  Nesterov momentum 0.9, no weight decay, no warm-up, cosine; random resized crop + flip only;
  60 epochs for 1% of the labels, 30 for 10%. The encoder's lr is ``encoder_lr_scale`` times the
  head's (the paper: 1.0; default 0.1, the lower encoder lr that keeps small subsets from
  erasing what pre-training learned).
* **ViT** (MAE fine-tuning, He et al. 2021 app. A.2): AdamW (0.9, 0.999), weight decay 0.05,
  layer-wise lr decay (block ``i`` of ``L`` trains at ``lr * d^(L - i)``, the patch embedding at
  ``lr * d^(L+1)``; ``d`` = 0.75 for ViT-B), 5 warm-up epochs, cosine; RandAugment (2 ops,
  magnitude 9), mixup 0.8 / cutmix 1.0, label smoothing 0.1, drop path 0.1.

The frozen variant (``frozen=True``) is the papers' linear evaluation: the encoder in eval mode
without gradients, augmented views every epoch, a linear head (after ``BatchNorm1d(affine=False)``
for MAE), SGD + Nesterov + cosine, no weight decay.

Model selection: each lr of the grid trains on the subset minus a stratified validation part
and is scored there; the best retrains on the whole subset; then the test split is scored once.
The loss is soft-target cross-entropy: ``-sum_k t_k log softmax(z)_k`` with ``t`` the (mixed,
smoothed) one-hot label.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import feature_dim as backbone_feature_dim
from selfsup.data import ImageDataset, iterate_batches
from selfsup.eval.subsets import stratified_split
from selfsup.views.spec import ViewSpec
from selfsup.views.transforms import EvalTransform, MultiViewTransform

__all__ = ["FinetuneRecipe", "FinetuneResult", "finetune", "layer_lr_scales", "recipe_for"]

# MAE's fine-tuning regularisers (its Table 9), made for 100 epochs: in a run of a few epochs they
# keep a ViT near chance, so ``regularise=False`` switches them all off.
_VIT_REGULARISERS: dict[str, Any] = dict(
    rand_augment=True, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, drop_path=0.1
)
_NO_REGULARISERS = {k: type(v)() for k, v in _VIT_REGULARISERS.items()}  # False / 0.0


@dataclass(frozen=True)
class FinetuneRecipe:
    """Every setting of one fine-tuning (or frozen linear) protocol."""

    backbone: Literal["resnet", "vit"]
    frozen: bool = False  # linear head on a frozen encoder (the papers' linear evaluation)
    base_lrs: tuple[float, ...] = (0.05,)  # candidates, scaled by batch_size / 256
    epochs: int = 30
    batch_size: int = 256
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    encoder_lr_scale: float = 0.1  # ResNet: encoder lr / head lr
    layer_decay: float | None = None  # ViT: layer-wise lr decay
    crop_scale: tuple[float, float] = (0.08, 1.0)
    rand_augment: bool = False
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.0
    drop_path: float = 0.0
    head_batch_norm: bool = False  # BatchNorm1d(affine=False) before the head (MAE's probe)
    val_fraction: float = 0.1
    seed: int = 0

    def as_settings(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items()}
        out["base_lrs"] = list(self.base_lrs)
        out["crop_scale"] = list(self.crop_scale)
        return out


def recipe_for(
    backbone_name: str,
    fraction: float,
    frozen: bool = False,
    head_batch_norm: bool = False,
    regularise: bool | None = None,
    **overrides: Any,
) -> FinetuneRecipe:
    """The recipe of the backbone's family for a label ``fraction``; ``overrides`` replace
    fields (e.g. ``epochs``, ``base_lrs`` from the config). ``regularise`` switches MAE's
    regularisers (RandAugment, mixup/cutmix, label smoothing, drop path) on or off; None keeps the family's (ViT on, ResNet
    off)."""
    kind: Literal["resnet", "vit"] = "vit" if backbone_name.startswith("vit") else "resnet"
    if frozen:
        recipe = FinetuneRecipe(
            kind, frozen=True, base_lrs=(0.1, 1.0), epochs=90, head_batch_norm=head_batch_norm
        )
    elif kind == "resnet":
        epochs = 60 if fraction <= 0.01 else 30
        recipe = FinetuneRecipe(kind, base_lrs=(0.05, 0.2), epochs=epochs)
    else:
        recipe = FinetuneRecipe(
            kind,
            base_lrs=(5e-4, 1e-3),
            epochs=100,
            optimizer="adamw",
            weight_decay=0.05,
            warmup_epochs=5,
            encoder_lr_scale=1.0,
            layer_decay=0.75,
            **_VIT_REGULARISERS,
        )
    if regularise is not None and not frozen:
        recipe = replace(recipe, **(_VIT_REGULARISERS if regularise else _NO_REGULARISERS))
    given = {k: v for k, v in overrides.items() if v is not None}
    if "base_lrs" in given:
        given["base_lrs"] = tuple(given["base_lrs"])
    return replace(recipe, **given)


@dataclass
class FinetuneResult:
    test_accuracy: float  # measured once, by the model retrained on the whole subset
    val_accuracy: float  # of the chosen lr, trained on the subset minus the validation part
    lr: float  # the chosen peak lr of the head
    train_images: int
    history: list[dict[str, float]] = field(default_factory=list)  # per lr: val accuracy
    encoder: nn.Module | None = None  # the fine-tuned encoder (None when frozen)


class _Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, dim: int, classes: int, frozen: bool, bn: bool) -> None:
        super().__init__()
        self.encoder, self.frozen = encoder, frozen
        self.norm: nn.Module = nn.BatchNorm1d(dim, affine=False) if bn else nn.Identity()
        self.head = nn.Linear(dim, classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.frozen:
            with torch.no_grad():
                self.encoder.eval()
                feats = self.encoder(x).flatten(1)
        else:
            feats = self.encoder(x).flatten(1)
        return self.head(self.norm(feats))


def layer_lr_scales(encoder: nn.Module, decay: float) -> dict[str, float]:
    """MAE's layer-wise lr decay for a ViT: parameter name -> lr scale. Embeddings (patch, cls,
    positions) are layer 0, block ``i`` layer ``i + 1``, the final norm layer ``L + 1``; scale
    ``decay ** (L + 1 - layer)``."""
    depth = len(getattr(encoder, "blocks", []))
    scales = {}
    for name, _ in encoder.named_parameters():
        if name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        elif name.startswith(("patch_embed", "cls_token", "pos_embed")):
            layer = 0
        else:
            layer = depth + 1
        scales[name] = decay ** (depth + 1 - layer)
    return scales


def _param_groups(model: _Classifier, recipe: FinetuneRecipe, supervised: bool) -> list[dict]:
    """Parameter groups with an ``lr_scale``; no weight decay on biases and norms."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    vit_scales = (
        layer_lr_scales(model.encoder, recipe.layer_decay)
        if recipe.layer_decay and not supervised
        else {}
    )
    encoder_scale = 1.0 if supervised else recipe.encoder_lr_scale
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder."):
            inner = name[len("encoder.") :]
            scale = vit_scales.get(inner, encoder_scale) if vit_scales else encoder_scale
        else:
            scale = 1.0
        decay = p.ndim > 1 and not name.endswith(("cls_token", "pos_embed"))
        groups.setdefault((scale, decay), []).append(p)
    return [
        {"params": ps, "lr_scale": s, "weight_decay": recipe.weight_decay if d else 0.0}
        for (s, d), ps in groups.items()
    ]


def _set_drop_path(encoder: nn.Module, rate: float) -> None:
    blocks = getattr(encoder, "blocks", None)
    if blocks is None:
        return
    for i, block in enumerate(blocks):
        if hasattr(block, "drop_path"):
            block.drop_path.p = rate * i / max(len(blocks) - 1, 1)


def _train(
    encoder: nn.Module,
    feature_dim: int,
    num_classes: int,
    data: ImageDataset,
    indices: Tensor,
    recipe: FinetuneRecipe,
    lr: float,
    augment: MultiViewTransform,
    device: torch.device,
    supervised: bool,
) -> _Classifier:
    """Train ``encoder`` + a linear head on ``data[indices]`` at peak ``lr``."""
    gen = torch.Generator().manual_seed(recipe.seed)
    view_gen = torch.Generator(device=device).manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)  # head initialisation
    model = _Classifier(encoder, feature_dim, num_classes, recipe.frozen, recipe.head_batch_norm)
    model = model.to(device)
    if recipe.frozen:
        encoder.requires_grad_(False)
    else:
        _set_drop_path(encoder, recipe.drop_path)
    groups = _param_groups(model, recipe, supervised)
    if recipe.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    else:
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    n = len(indices)
    batch = min(recipe.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total = recipe.epochs * steps_per_epoch
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    mixer = _mixer(recipe, num_classes)
    model.train()
    step = 0
    for _ in range(recipe.epochs):
        order = indices[torch.randperm(n, generator=gen)][: steps_per_epoch * batch]
        for images, labels in iterate_batches(data, batch, device, order):
            if warmup and step < warmup:
                factor = (step + 1) / warmup
            else:
                factor = 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))
            for group in optimizer.param_groups:
                group["lr"] = lr * factor * group["lr_scale"]
            if recipe.rand_augment:
                images = _rand_augment(images)
            x = augment(images, view_gen)[0]
            y = labels.to(device)
            target = F.one_hot(y, num_classes).float()  # [B, K]
            if mixer is not None:
                x, target = mixer(x, y)
            if recipe.label_smoothing:
                target = (
                    target * (1 - recipe.label_smoothing) + recipe.label_smoothing / num_classes
                )
            loss = -(target * F.log_softmax(model(x), dim=1)).sum(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    return model.eval()


def _mixer(recipe: FinetuneRecipe, num_classes: int) -> Callable[..., Any] | None:
    from torchvision.transforms import v2

    choices = []
    if recipe.mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=recipe.mixup_alpha, num_classes=num_classes))
    if recipe.cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=recipe.cutmix_alpha, num_classes=num_classes))
    return v2.RandomChoice(choices) if choices else None


def _rand_augment(images: Tensor) -> Tensor:
    """RandAugment (2 ops, magnitude 9) per image of a uint8 batch ``[B, C, H, W]``."""
    from torchvision.transforms import v2

    op = v2.RandAugment(num_ops=2, magnitude=9)
    if images.shape[1] == 1:  # colour ops need 3 channels: augment as grey RGB, back to 1
        rgb = images.expand(-1, 3, -1, -1)
        return torch.stack([op(img) for img in rgb])[:, :1].contiguous()
    return torch.stack([op(img) for img in images])


@torch.no_grad()
def _accuracy(
    model: _Classifier,
    data: ImageDataset,
    indices: Tensor | None,
    transform: EvalTransform,
    device: torch.device,
) -> float:
    correct = total = 0
    model.eval()
    for images, labels in iterate_batches(data, 512, device, indices):
        logits = model(transform(images))
        correct += int((logits.argmax(1).cpu() == labels).sum())
        total += len(labels)
    return correct / max(total, 1)


def finetune(
    encoder: nn.Module,
    train_set: ImageDataset,
    subset: Tensor,
    test_set: ImageDataset,
    num_classes: int,
    recipe: FinetuneRecipe,
    view_size: int,
    mean: list[float],
    std: list[float],
    device: torch.device | str = "cpu",
    supervised: bool = False,
    report: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``encoder`` (``encoder.feature_dim`` features) on ``train_set[subset]``.

    ``supervised=True`` is the from-scratch baseline: the encoder is trained at the head's lr
    (no lower encoder lr, no layer decay). ``encoder`` itself is never modified.
    """
    device = torch.device(device)
    feature_dim = backbone_feature_dim(encoder)
    say = report or (lambda _: None)
    spec = ViewSpec(
        size=view_size,
        crop_scale=recipe.crop_scale,
        flip_p=0.5,
        jitter_p=0.0,
        gray_p=0.0,
        blur_p=0.0,
        solarize_p=0.0,
    )
    augment = MultiViewTransform([spec], mean, std)
    transform = EvalTransform(view_size, mean, std)
    labels = train_set.get_batch(subset)[1]
    fit_pos, val_pos = stratified_split(labels, num_classes, recipe.val_fraction, recipe.seed)
    fit, val = subset[fit_pos], subset[val_pos]
    if len(recipe.base_lrs) > 1 and len(val) == 0:
        raise ValueError(
            f"the {len(subset)} labelled images leave no validation image to choose the lr on "
            f"(val_fraction={recipe.val_fraction}); use more labels (--labels) or one lr "
            "(eval.finetune_lrs=[x] / eval.probe_lrs=[x])"
        )
    scale = recipe.batch_size / 256
    history = []
    for base_lr in recipe.base_lrs:
        if len(recipe.base_lrs) == 1:
            history.append({"lr": base_lr * scale, "val_accuracy": float("nan")})
            break  # nothing to choose: the validation part is not held out
        say(f"lr {base_lr * scale:.3g}: training on {len(fit)} images, validating on {len(val)}")
        model = _train(
            copy.deepcopy(encoder),
            feature_dim,
            num_classes,
            train_set,
            fit,
            recipe,
            base_lr * scale,
            augment,
            device,
            supervised,
        )
        acc = _accuracy(model, train_set, val, transform, device)
        history.append({"lr": base_lr * scale, "val_accuracy": acc})
    best = max(history, key=lambda h: (h["val_accuracy"], -h["lr"]))
    say(f"lr {best['lr']:.3g} chosen; training on all {len(subset)} images")
    model = _train(
        copy.deepcopy(encoder),
        feature_dim,
        num_classes,
        train_set,
        subset,
        recipe,
        best["lr"],
        augment,
        device,
        supervised,
    )
    say("scoring the test split (once)")
    test = _accuracy(model, test_set, None, transform, device)
    return FinetuneResult(
        test_accuracy=test,
        val_accuracy=best["val_accuracy"],
        lr=best["lr"],
        train_images=len(subset),
        history=history,
        encoder=None if recipe.frozen else model.encoder,
    )
