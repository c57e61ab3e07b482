"""Linear probe on cached features, with the learning rate chosen on a held-out validation split."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.eval.knn import _check_label_range
from selfsup.progress import ProgressStyle, phase

__all__ = ["LinearProbeResult", "linear_probe"]

# Rows per forward pass when scoring a whole split: bounds memory at [chunk, num_classes].
_EVAL_CHUNK = 8192


@dataclass
class LinearProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        test_accuracy: top-1 accuracy in ``[0, 1]`` on the test split, measured once, with the
            classifier retrained on all training features at the chosen lr.
        val_accuracy: top-1 accuracy of the chosen lr on the held-out validation split.
        lr: the learning rate with the best validation accuracy.
        epochs: epochs each classifier was trained for.
        history: one entry per candidate lr, in the order given: ``{"lr", "val_accuracy",
            "train_loss"}`` (``train_loss``: mean cross-entropy over the last epoch).
    """

    test_accuracy: float
    val_accuracy: float
    lr: float
    epochs: int
    history: list[dict[str, float]]


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 100,
    lrs: Sequence[float] = (0.01, 0.1, 1.0),
    batch_size: int = 256,
    val_fraction: float = 0.1,
    batch_norm: bool = False,
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: ProgressStyle | None = None,
    desc: str = "linear probe",
) -> LinearProbeResult:
    """Train a linear classifier on frozen features and report its test accuracy.

    Protocol (hyper-parameters are never chosen on the test split):

    1. Hold out a stratified ``val_fraction`` of the training features (per class,
       ``round(val_fraction * n_c)`` samples, keeping at least one for training; fixed ``seed``).
    2. For each lr in ``lrs``, train on the rest and score the validation split.
    3. Take the lr with the best validation accuracy (ties: the first in ``lrs``), retrain on
       all training features, and score the test split once.

    Each classifier is ``Linear(D, num_classes)`` (weights ~ N(0, 0.01^2), bias 0) trained by
    SGD with momentum 0.9, weight decay ``weight_decay`` (0 by default), cross-entropy, and an
    lr that follows a cosine from ``lr`` to 0 over all ``epochs * steps_per_epoch`` steps
    (precomputed per step). The input is standardised per feature with the mean and standard
    deviation of the split being trained on, or, with ``batch_norm=True``, passed through
    ``BatchNorm1d(affine=False)`` (MAE's probe head; batch statistics while training,
    running statistics when scoring).

    Each epoch visits the features in a fresh seeded permutation, in batches of
    ``batch_size`` sliced from the cached tensor on ``device`` (no DataLoader); the last
    incomplete batch is dropped so every step sees the same batch size (and BatchNorm never
    gets a batch of one). Every training run (each lr and the final one) starts from the same
    seed, so candidates differ only in their lr.

    Defaults: 100 epochs of batch 256 at lrs (0.01, 0.1, 1.0) follow the usual recipe for
    cached features. On 2 CPU cores, 54k x 512 features (10 classes) take 50-60 s for the
    whole protocol (three candidates plus the final run, ~84k steps, bound by per-step
    overhead); use a larger ``batch_size`` or fewer ``epochs`` on a slower machine.

    Args:
        train_features: ``[N, D]`` features of the training split.
        train_labels: ``[N]`` integer labels in ``[0, num_classes)``.
        test_features: ``[M, D]`` features of the test split.
        test_labels: ``[M]`` integer labels in ``[0, num_classes)``.
        num_classes: number of classes (>= 2).
        epochs: training epochs per run.
        lrs: candidate learning rates (each > 0).
        batch_size: mini-batch size.
        val_fraction: share of each class held out for lr selection, in ``(0, 1)``.
        batch_norm: use ``BatchNorm1d(affine=False)`` instead of fixed standardisation.
        weight_decay: L2 penalty of SGD (on weight and bias).
        seed: seed of the split, the initialisation and the shuffling.
        device: where training runs; features are copied there once.
        progress: how to report each training run (which lr, epoch x of y, the accuracy and
            its time) on stderr, named ``desc``; None (default) prints nothing.
    """
    _check_probe_inputs(
        train_features,
        train_labels,
        test_features,
        test_labels,
        num_classes,
        epochs,
        lrs,
        batch_size,
        val_fraction,
        weight_decay,
    )
    device = torch.device(device)
    train_x = train_features.detach().to(device=device, dtype=torch.float32)  # [N, D]
    train_y = train_labels.detach().to(device=device, dtype=torch.int64)  # [N]

    fit_idx, val_idx = _stratified_split(
        train_labels.detach().cpu().long(), num_classes, val_fraction, seed
    )
    fit_idx, val_idx = fit_idx.to(device), val_idx.to(device)
    fit_x, fit_y = train_x[fit_idx], train_y[fit_idx]  # [N_fit, D], [N_fit]
    val_x, val_y = train_x[val_idx], train_y[val_idx]  # [N_val, D], [N_val]

    def train(
        x: Tensor, y: Tensor, rates: Sequence[float], on_epoch: Callable[[int], None]
    ) -> tuple[list[nn.Module], list[float]]:
        return _train_classifiers(
            x, y, num_classes, epochs, rates, batch_size, batch_norm, weight_decay, seed, on_epoch
        )

    # Every candidate lr trains in one pass (same init, batches and order; see
    # _train_classifiers), then each is scored on the validation split.
    what = f"{desc} lrs {', '.join(f'{lr:g}' for lr in lrs)}"
    doing = f"{epochs} epochs on {len(fit_idx)} features, {len(lrs)} lrs side by side"
    with phase(what, doing, epochs, "epochs", progress) as step:
        models, losses = train(fit_x, fit_y, lrs, step.update)
        history: list[dict[str, float]] = [
            {"lr": float(lr), "val_accuracy": _accuracy(model, val_x, val_y), "train_loss": loss}
            for lr, model, loss in zip(lrs, models, losses, strict=True)
        ]
        step.result = "validation top-1 " + ", ".join(
            f"{100 * h['val_accuracy']:.2f}% (lr {h['lr']:g})" for h in history
        )
    best = max(range(len(history)), key=lambda i: (history[i]["val_accuracy"], -i))
    best_lr = history[best]["lr"]

    # The test split is read only here, after the lr is fixed.
    what = f"{desc} final fit at lr {best_lr:g}"
    doing = f"{epochs} epochs on {len(train_x)} features"
    with phase(what, doing, epochs, "epochs", progress) as step:
        (model,), _ = train(train_x, train_y, [best_lr], step.update)
        test_x = test_features.detach().to(device=device, dtype=torch.float32)  # [M, D]
        test_y = test_labels.detach().to(device=device, dtype=torch.int64)  # [M]
        test_accuracy = _accuracy(model, test_x, test_y)
        step.result = f"test top-1 {100 * test_accuracy:.2f}%"
    return LinearProbeResult(
        test_accuracy=test_accuracy,
        val_accuracy=history[best]["val_accuracy"],
        lr=best_lr,
        epochs=epochs,
        history=history,
    )


class _Standardize(nn.Module):
    """Fixed per-feature standardisation ``(x - mean) / std`` with statistics from one split."""

    mean: Tensor  # [D]
    inv_std: Tensor  # [D]

    def __init__(self, features: Tensor) -> None:
        super().__init__()
        mean = features.mean(dim=0)  # [D]
        std = features.std(dim=0, unbiased=False).clamp_min(1e-6)  # [D]; constant features -> 0
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", std.reciprocal())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.inv_std


def _train_classifiers(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    epochs: int,
    lrs: Sequence[float],
    batch_size: int,
    batch_norm: bool,
    weight_decay: float,
    seed: int,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[list[nn.Module], list[float]]:
    """Train one ``norm -> Linear`` per lr of ``lrs`` on ``x [N, D]``, ``y [N]`` in one pass;
    return them and each one's mean loss over the last epoch. ``on_epoch(1)`` after each epoch.

    The classifiers differ only in their lr: they start from the same initialisation, see the
    same batches in the same order and share the normalisation (standardisation or BatchNorm
    without affine, which has no parameters), so training them side by side — stacked weights
    ``[L, C, D]``, one batched matmul, SGD with momentum written out per classifier — is the
    same computation as training them one after the other, at the cost of about one.
    """
    n, dim = x.shape
    device = x.device
    count = len(lrs)
    generator = torch.Generator().manual_seed(seed)
    weight0 = torch.randn(num_classes, dim, generator=generator) * 0.01  # [C, D]
    weight = weight0.expand(count, -1, -1).clone().to(device).requires_grad_(True)  # [L, C, D]
    bias = torch.zeros(count, num_classes, device=device, requires_grad=True)  # [L, C]
    norm: nn.Module = nn.BatchNorm1d(dim, affine=False, eps=1e-6) if batch_norm else _Standardize(x)
    norm = norm.to(device)
    peak = torch.tensor([float(lr) for lr in lrs], device=device)  # [L]
    buffers: list[Tensor] | None = None

    batch = min(batch_size, n)
    steps_per_epoch = n // batch  # drop the incomplete last batch
    total_steps = epochs * steps_per_epoch
    cosine = [0.5 * (1.0 + math.cos(math.pi * s / total_steps)) for s in range(total_steps)]

    norm.train()
    step = 0
    epoch_loss = torch.zeros(count, device=device)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device, non_blocking=True)  # [N]
        epoch_loss = torch.zeros(count, device=device)
        for b in range(steps_per_epoch):
            idx = order[b * batch : (b + 1) * batch]  # [B]
            # index_select is several times faster than x[idx] for row gathers on CPU.
            h = norm(x.index_select(0, idx))  # [B, D]
            logits = torch.matmul(h, weight.transpose(1, 2)) + bias[:, None, :]  # [L, B, C]
            target = y.index_select(0, idx).expand(count, -1)  # [L, B]
            losses = (
                F.cross_entropy(
                    logits.reshape(-1, num_classes), target.reshape(-1), reduction="none"
                )
                .view(count, -1)
                .mean(dim=1)
            )  # [L]: each classifier's own mean loss
            weight.grad = bias.grad = None
            losses.sum().backward()  # classifier l's gradient is its own loss's
            with torch.no_grad():
                assert weight.grad is not None and bias.grad is not None
                grads: list[Tensor] = [weight.grad, bias.grad]
                params = [weight, bias]
                if weight_decay:
                    grads = [g + weight_decay * p for g, p in zip(grads, params, strict=True)]
                if buffers is None:  # torch.optim.SGD: the first buffer is the gradient
                    buffers = [g.clone() for g in grads]
                else:
                    for buf, g in zip(buffers, grads, strict=True):
                        buf.mul_(0.9).add_(g)
                rate = peak * cosine[step]  # [L]
                weight.sub_(rate[:, None, None] * buffers[0])
                bias.sub_(rate[:, None] * buffers[1])
            epoch_loss += losses.detach()
            step += 1
        if on_epoch is not None:
            on_epoch(1)
    norm.eval()
    models: list[nn.Module] = []
    for i in range(count):
        linear = nn.Linear(dim, num_classes).to(device)
        with torch.no_grad():
            linear.weight.copy_(weight[i])
            linear.bias.copy_(bias[i])
        models.append(nn.Sequential(norm, linear).eval())
    return models, (epoch_loss / steps_per_epoch).tolist()


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``x [N, D]`` against ``y [N]``, scored in chunks."""
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        logits = model(x[start : start + _EVAL_CHUNK])  # [c, num_classes]
        correct += (logits.argmax(dim=1) == y[start : start + _EVAL_CHUNK]).sum()
    return correct.item() / x.shape[0]


def _stratified_split(
    labels: Tensor, num_classes: int, val_fraction: float, seed: int
) -> tuple[Tensor, Tensor]:
    """Split indices of ``labels [N]`` (CPU) into (train, val), stratified by class.

    Class ``c`` with ``n_c`` samples gives ``min(round(val_fraction * n_c), n_c - 1)`` random
    samples to val (round half up), so every class present keeps a training sample.
    """
    n = labels.shape[0]
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)  # [N]
    # A stable sort of the shuffled labels groups indices by class, in random order per class.
    grouped = perm[torch.sort(labels[perm], stable=True).indices]  # [N]
    grouped_labels = labels[grouped]  # [N], non-decreasing
    counts = torch.bincount(labels, minlength=num_classes)  # [C]
    starts = torch.cumsum(counts, 0) - counts  # [C]
    rank = torch.arange(n) - starts[grouped_labels]  # [N], position within its class
    val_per_class = torch.floor(counts.double() * val_fraction + 0.5).long()  # [C]
    val_per_class = torch.minimum(val_per_class, (counts - 1).clamp_min(0))
    is_val = rank < val_per_class[grouped_labels]  # [N]
    if not bool(is_val.any()):
        raise ValueError(
            f"val_fraction={val_fraction} holds out no sample of the {n} training features; "
            "increase val_fraction or pass more training features"
        )
    return grouped[~is_val].sort().values, grouped[is_val].sort().values


def _check_probe_inputs(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    epochs: int,
    lrs: Sequence[float],
    batch_size: int,
    val_fraction: float,
    weight_decay: float,
) -> None:
    """Raise ``ValueError`` with the fix for any malformed linear-probe input."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}; pass the dataset's count")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}; the usual probe uses 100")
    if len(lrs) == 0 or any(not lr > 0 for lr in lrs):
        raise ValueError(f"lrs must be a non-empty list of values > 0, got {list(lrs)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}; e.g. batch_size=256")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}; e.g. 0.1")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}; the protocol uses 0")
    pairs = (
        ("train", train_features, train_labels),
        ("test", test_features, test_labels),
    )
    for split, feats, labels in pairs:
        if feats.ndim != 2:
            raise ValueError(
                f"{split}_features must be 2-D [N, D], got shape {tuple(feats.shape)}; flatten "
                "the encoder output with .flatten(1)"
            )
        if feats.shape[0] == 0:
            raise ValueError(f"{split}_features is empty; pass at least one feature vector")
        if not feats.is_floating_point():
            raise ValueError(f"{split}_features must be floating point, got {feats.dtype}")
        if labels.ndim != 1 or labels.shape[0] != feats.shape[0]:
            raise ValueError(
                f"{split}_labels must be [N] with N={feats.shape[0]} (one per feature), got "
                f"shape {tuple(labels.shape)}; pass the labels that belong to {split}_features"
            )
        _check_label_range(f"{split}_labels", labels, num_classes)
        if not bool(torch.isfinite(feats).all()):
            raise ValueError(
                f"{split}_features contain NaN or inf; check the encoder (e.g. a diverged "
                "checkpoint) before probing"
            )
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train_features have {train_features.shape[1]} dims but test_features have "
            f"{test_features.shape[1]}; extract both with the same encoder"
        )
