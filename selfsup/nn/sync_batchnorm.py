r"""Synchronised BatchNorm: statistics over the global batch of every process.

BatchNorm in a distributed run normalises each process's sub-batch on its own unless its
statistics are shared. BYOL, SimCLR (large-batch), MoCo v3 and DINO's ResNet recipes use
SyncBatchNorm so that the network sees the statistics of the whole global batch, exactly as one
process with the global batch would.

``torch.nn.SyncBatchNorm`` is PyTorch's implementation, but it only runs on GPUs (it refuses CPU
tensors, and DistributedDataParallel refuses it in a CPU module). :func:`convert_sync_batchnorm`
therefore uses torch's layer on GPUs and :class:`CPUSyncBatchNorm` on the CPU, which computes
the same statistics with two autograd all-reduces over the default process group (gloo):

.. math::

    \mu = \frac{1}{n}\sum_{\text{ranks}} \sum_{i} x_i, \qquad
    \sigma^2 = \frac{1}{n}\sum_{\text{ranks}} \sum_{i} (x_i - \mu)^2, \qquad
    y = \gamma\,\frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta ,

with :math:`n` the global count of values per channel (samples x spatial positions). The
backward of each all-reduce is an all-reduce of the gradients (every rank's loss depends on
every rank's inputs through :math:`\mu, \sigma^2`), so with DistributedDataParallel's gradient
averaging the gradients equal those of one process holding the global batch. The running
statistics use the unbiased :math:`\sigma^2 n / (n - 1)`, as BatchNorm does. Not distributed
(or in eval mode), the layer is a plain BatchNorm.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from selfsup.nn.distributed import world_size

__all__ = ["CPUSyncBatchNorm", "convert_sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward sums the gradients over processes as well."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """SyncBatchNorm for CPU tensors (gloo), any input ``[N, C, *]``; see the module docstring.

    Same arguments as ``nn.BatchNorm2d``; always the default process group. A plain BatchNorm
    when not distributed or in eval mode.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim < 2:
            raise ValueError(f"expected an input [N, C, *], got shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(input)
        if input.device.type != "cpu":
            raise ValueError(
                f"CPUSyncBatchNorm got a {input.device.type} tensor; build the layers with "
                "convert_sync_batchnorm(module, device), which uses torch.nn.SyncBatchNorm there"
            )
        self._check_input_dim(input)
        dims = [0, *range(2, input.ndim)]  # every axis but the channels
        shape = [1, -1] + [1] * (input.ndim - 2)  # [1, C, 1, ...] for broadcasting
        x = input if input.dtype == torch.float64 else input.float()  # half types: float32
        count = float(x.numel() // x.shape[1]) * world_size()  # same on every rank
        mean = _AllReduceSum.apply(x.sum(dim=dims)) / count  # [C]
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dim=dims)) / count  # [C], biased
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            y = y * self.weight.view(shape)
        if self.bias is not None:  # (a projector's last BN may drop its bias: SimCLR v2)
            y = y + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean.detach(), var.detach(), count)
        return y.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: float) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Replace every BatchNorm layer (1d/2d/3d) of ``module`` by a synchronised one for training
    on ``device``: ``torch.nn.SyncBatchNorm`` on a GPU, :class:`CPUSyncBatchNorm` on the CPU.

    The rules of ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``: the new layers take over the
    same parameter and buffer tensors, keep the training mode, and the (possibly new) root is
    returned. Split BatchNorm (:class:`~selfsup.nn.SplitBatchNorm2d`) is left alone: its
    sub-batches are the point.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
        >>> weight = net[1].weight
        >>> net = convert_sync_batchnorm(net, "cpu")
        >>> type(net[1]).__name__, net[1].weight is weight
        ('CPUSyncBatchNorm', True)
    """
    from selfsup.nn.batchnorm import SplitBatchNorm2d, replace_norm_layers

    if torch.device(device).type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    bn_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

    def synced(layer: nn.Module) -> nn.Module | None:
        if not isinstance(layer, bn_types) or isinstance(layer, SplitBatchNorm2d):
            return None
        return CPUSyncBatchNorm(
            layer.num_features,
            eps=layer.eps,
            momentum=layer.momentum,
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
        )

    return replace_norm_layers(module, synced)
