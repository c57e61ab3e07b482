"""The online linear probe: a linear classifier trained during pre-training on the detached
backbone features the method already computed (BYOL's and solo-learn's monitor).

It is ``BatchNorm1d(affine=False)`` (standardised features, as the offline probe standardises
them; MAE-like ViT features are unusable without it) then ``Linear``, with its own optimiser
(SGD, momentum 0.9, no weight decay, constant ``train.online_linear_lr x batch/256``, cross-
entropy), and it sees only ``StepOutput.features``, which the method
detached: it never changes the encoder's gradients, the method's optimiser or its schedules,
so a run with or without it trains the same method, bit for bit (tested). Its weights start at
zero, so building it draws nothing from the seeded random streams.

Per step everything stays on the device (no host sync): the update and the running count of
correct predictions since the epoch began, reported as the log ``online_linear_train_acc``
(read by the trainer at logged steps only). It is a cheap monitor of how linearly separable the
features are, on augmented training views and features that change while it learns; it is not
the linear-probe protocol that ``selfsup eval linear`` reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones import feature_dim

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["ACCURACY_LOG", "OnlineLinearProbe", "online_probe_for"]

ACCURACY_LOG = "online_linear_train_acc"
MOMENTUM = 0.9


class OnlineLinearProbe(nn.Module):
    """``BatchNorm1d(affine=False)`` + ``Linear(feature_dim, num_classes)`` on detached
    features, trained with its own SGD (batch statistics while learning, the running ones in
    :meth:`top1`).

    ``state_dict()`` holds the layer, the normalisation statistics and the epoch's running
    counts; :meth:`checkpoint_state` adds the optimiser (momentum buffers), so a resumed run
    continues it exactly.
    """

    correct: Tensor
    seen: Tensor

    def __init__(
        self, feature_dim: int, num_classes: int, lr: float, device: torch.device | None = None
    ) -> None:
        super().__init__()
        if feature_dim < 1 or num_classes < 2 or not lr > 0:
            raise ValueError(
                f"the online probe needs feature_dim >= 1, num_classes >= 2 and lr > 0, got "
                f"{feature_dim}, {num_classes} and {lr}"
            )
        self.num_classes = num_classes
        self.norm = nn.BatchNorm1d(feature_dim, affine=False, device=device)
        self.linear = nn.Linear(feature_dim, num_classes, device=device)
        nn.init.zeros_(self.linear.weight)  # no draw from the seeded generators
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("correct", torch.zeros((), dtype=torch.int64, device=device))
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64, device=device))
        self.optimizer = torch.optim.SGD(self.linear.parameters(), lr=lr, momentum=MOMENTUM)

    def reset_accuracy(self) -> None:
        """Start a new running accuracy (the trainer's step does so at each epoch's start)."""
        self.correct.zero_()
        self.seen.zero_()

    def update(self, features: Tensor, labels: Tensor) -> Tensor:
        """One SGD step on ``features [B, F]`` (detached here again) and int64 ``labels [B]``
        (-1 = unlabelled: left out); returns the running accuracy, a device scalar. A batch of
        one image has no batch statistics to normalise with: it is left out."""
        x = features.detach().flatten(1).float()
        if x.shape[0] < 2:
            return self.accuracy_so_far()
        labels = labels.to(x.device)
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            logits = self.linear(self.norm(x))  # [B, K] in float32
            per_sample = F.cross_entropy(logits, labels, ignore_index=-1, reduction="none")
            valid = labels >= 0
            loss = per_sample.sum() / valid.sum().clamp_min(1)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            hits = (logits.argmax(dim=1) == labels) & valid
            self.correct += hits.sum()
            self.seen += valid.sum()
        return self.accuracy_so_far()

    def accuracy_so_far(self) -> Tensor:
        """Correct / seen since the last reset, a float32 device scalar (0 before any sample)."""
        return self.correct.float() / self.seen.clamp_min(1).float()

    @torch.no_grad()
    def top1(self, features: Tensor, labels: Tensor) -> float:
        """Top-1 in [0, 1] of the probe on ``features [N, F]`` with ``labels [N]`` (one sync)."""
        x = features.flatten(1).to(self.linear.weight.device, torch.float32)
        training = self.norm.training
        self.norm.eval()
        try:
            logits = self.linear(self.norm(x))  # [N, K]
        finally:
            self.norm.train(training)
        return float((logits.argmax(dim=1).cpu() == labels.cpu()).float().mean())

    def checkpoint_state(self) -> dict[str, Any]:
        return {"module": self.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])


def online_probe_for(
    cfg: Config, backbone: nn.Module, num_classes: int | None, device: torch.device
) -> OnlineLinearProbe | None:
    """The probe ``train.online_linear`` asks for (null: when the data has ``num_classes``)."""
    t = cfg.train
    labelled = num_classes is not None and num_classes >= 2
    if t.online_linear is False or (t.online_linear is None and not labelled):
        return None
    if num_classes is None or num_classes < 2:
        raise ValueError(
            "train.online_linear=true needs class labels (2 or more classes), but the training "
            f"data has {'none' if num_classes is None else num_classes}; "
            "set train.online_linear=false (or leave it unset)"
        )
    lr = t.online_linear_lr * t.batch_size / 256
    return OnlineLinearProbe(feature_dim(backbone), num_classes, lr, device)
