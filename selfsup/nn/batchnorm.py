r"""Split BatchNorm: MoCo's single-device substitute for shuffle-BN.

BatchNorm computes statistics over the batch, so a query and its key seen in the same BN batch
can "communicate" through the batch mean and the model learns to cheat the contrastive task
(MoCo, Sec. 3.3). The official code normalises each GPU's sub-batch separately and shuffles the
key batch across GPUs (:func:`selfsup.nn.shuffle_batch`). On one device the same effect comes
from normalising :math:`S` sub-batches separately (``SplitBatchNorm2d``) and shuffling the key
batch before the key encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SplitBatchNorm2d", "convert_to_split_batchnorm", "replace_norm_layers"]


def _check_splits(num_splits: int) -> None:
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
        raise ValueError(
            f"num_splits must be a positive integer, got {num_splits!r}; use the number of "
            "GPUs the reference recipe ran on (8 for MoCo), or 1 for plain BatchNorm"
        )


class SplitBatchNorm2d(nn.BatchNorm2d):
    r"""BatchNorm2d over ``num_splits`` sub-batches in training; plain BatchNorm2d in eval.

    In training, a batch of :math:`N` samples is normalised as :math:`S` = ``num_splits``
    independent sub-batches of :math:`N / S` samples. Split :math:`s` holds the samples
    :math:`i \equiv s \pmod S` (a strided split: a free reshape of ``[N, C, H, W]`` to
    ``[N/S, S C, H, W]``, where one BatchNorm over :math:`S C` channels computes every split's
    statistics at once). Each split uses the shared affine parameters :math:`\gamma, \beta`.

    The running statistics are updated with the mean over the splits:

    .. math::

        \hat\mu \leftarrow (1 - \alpha)\,\hat\mu + \alpha\,\tfrac1S \textstyle\sum_s \mu_s,
        \qquad
        \hat\sigma^2 \leftarrow (1 - \alpha)\,\hat\sigma^2
                                + \alpha\,\tfrac1S \textstyle\sum_s \sigma^2_s ,

    with :math:`\sigma^2_s` the unbiased variance of split :math:`s` (as in BatchNorm), so
    evaluation uses one set of statistics, exactly as a plain ``nn.BatchNorm2d``.

    Differences from the reference: the official MoCo single-GPU demo uses the same strided
    split. Splits of contiguous chunks would be statistically equivalent (the key batch is
    shuffled before the key encoder) but cost two copies of the activations per layer.

    Args:
        num_features: channels :math:`C`.
        num_splits: :math:`S \ge 1`; the training batch size must be a multiple of it.
        **kwargs: ``eps``, ``momentum``, ``affine``, ``track_running_stats``, ``device``,
            ``dtype`` as for ``nn.BatchNorm2d``.

    Example:
        >>> bn = SplitBatchNorm2d(3, num_splits=2)
        >>> x = torch.randn(4, 3, 5, 5)
        >>> x[1::2] += 100.0  # split 1 (samples 1, 3) far from split 0 (samples 0, 2)
        >>> y = bn(x)  # each split is centred on its own mean, channel by channel
        >>> bool(y[1::2].mean(dim=(0, 2, 3)).abs().max() < 1e-4)
        True
    """

    def __init__(self, num_features: int, num_splits: int, **kwargs: Any) -> None:
        _check_splits(num_splits)
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, C, H, W]``; ``N`` a multiple of ``num_splits`` in training."""
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        self._check_input_dim(x)
        n, c, h, w = x.shape
        splits = self.num_splits
        if n % splits:
            raise ValueError(
                f"SplitBatchNorm2d needs a batch size divisible by num_splits={splits}, got "
                f"{n}; choose a batch size that is a multiple of num_splits (drop the last "
                "incomplete batch) or lower num_splits"
            )
        # Same running-average factor as nn.BatchNorm2d (momentum None: cumulative average).
        factor = 0.0 if self.momentum is None else self.momentum
        tracked = self.track_running_stats and self.running_mean is not None
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)

        mean = var = None
        if tracked:
            assert self.running_mean is not None and self.running_var is not None
            mean = self.running_mean.repeat(splits)  # [S C], updated in place by batch_norm
            var = self.running_var.repeat(splits)  # [S C]
        weight = self.weight.repeat(splits) if self.weight is not None else None  # [S C]
        bias = self.bias.repeat(splits) if self.bias is not None else None  # [S C]
        # [N, C, H, W] -> [N/S, S C, H, W]: channel block s holds samples s, s + S, ...
        out = F.batch_norm(
            x.reshape(n // splits, splits * c, h, w),
            mean,
            var,
            weight,
            bias,
            training=True,
            momentum=factor,
            eps=self.eps,
        )
        if tracked:
            assert mean is not None and var is not None
            assert self.running_mean is not None and self.running_var is not None
            self.running_mean.copy_(mean.view(splits, c).mean(0))  # mean over the splits
            self.running_var.copy_(var.view(splits, c).mean(0))
        return out.reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"


def convert_to_split_batchnorm(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` in ``module`` by a :class:`SplitBatchNorm2d`.

    Only modules whose type is exactly ``nn.BatchNorm2d`` are replaced (not subclasses such as
    ``SyncBatchNorm``-derived or custom norms). The new layers *share* the old parameters and
    buffers (the same tensor objects: an optimiser built before the conversion still updates
    them) and keep the training mode. Children are replaced in place; the (possibly new) root
    is returned, as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
        >>> weight = net[1].weight
        >>> net = convert_to_split_batchnorm(net, num_splits=2)
        >>> type(net[1]).__name__, net[1].weight is weight
        ('SplitBatchNorm2d', True)
    """
    _check_splits(num_splits)

    def split(layer: nn.Module) -> nn.Module | None:
        if type(layer) is not nn.BatchNorm2d:
            return None
        return SplitBatchNorm2d(
            layer.num_features,
            num_splits,
            eps=layer.eps,
            momentum=layer.momentum,
            affine=layer.affine,
            track_running_stats=layer.track_running_stats,
        )

    return replace_norm_layers(module, split)


def replace_norm_layers(
    module: nn.Module, convert: Callable[[nn.Module], nn.Module | None]
) -> nn.Module:
    """Replace each layer for which ``convert(layer)`` returns a new one, recursively.

    The new layer takes over the old one's parameter and buffer tensors (the same objects: an
    optimiser or EMA built before still holds them) and its training mode. Children are replaced
    in place; the (possibly new) root is returned, as ``nn.SyncBatchNorm.convert_sync_batchnorm``
    does. The one walk behind split BatchNorm and the CPU SyncBatchNorm.
    """
    new = convert(module)
    if new is not None:
        new._parameters.update(module._parameters)
        new._buffers.update(module._buffers)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = replace_norm_layers(child, convert)
        if new_child is not child:
            module.add_module(name, new_child)
    return module
