"""Projection and prediction heads: one MLP builder shared by every method.

``mlp`` builds ``Linear[-BN]-act`` blocks followed by a final ``Linear[-BN]``; the presets
(``simclr_projector`` here, MoCo/BYOL/DINO heads later) are thin calls to it, so a head's
structure is readable from its arguments alone.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DINOHead", "ScaleOnlyBatchNorm1d", "WeightNormLinear", "mlp", "simclr_projector"]


class ScaleOnlyBatchNorm1d(nn.BatchNorm1d):
    r"""BatchNorm1d with a learnable scale :math:`\gamma` but no shift :math:`\beta`.

    :math:`y = \gamma \, (x - \mu) / \sqrt{\sigma^2 + \epsilon}`. This is TensorFlow's
    ``BatchNormalization(center=False, scale=True)``, which the official SimCLR v2 code puts
    after the last projection layer. ``bias`` is registered as ``None``, so the state dict
    has no ``bias`` entry; ``nn.SyncBatchNorm.convert_sync_batchnorm`` keeps that.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=True,
            track_running_stats=track_running_stats,
        )
        self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:  # only during nn.BatchNorm1d.__init__
            nn.init.zeros_(self.bias)


def _batch_norm(dim: int, affine: bool | Literal["scale"]) -> nn.BatchNorm1d:
    if affine == "scale":
        return ScaleOnlyBatchNorm1d(dim)
    if isinstance(affine, bool):
        return nn.BatchNorm1d(dim, affine=affine)
    raise ValueError(
        f"last_batch_norm_affine must be True, False or 'scale', got {affine!r}; "
        "use 'scale' for a learnable scale without shift (SimCLR v2)"
    )


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    num_layers: int = 2,
    batch_norm: bool = True,
    last_batch_norm: bool = False,
    last_batch_norm_affine: bool | Literal["scale"] = True,
    activation: type[nn.Module] = nn.ReLU,
    bias: bool | None = None,
) -> nn.Sequential:
    """Build ``[Linear -> (BN) -> activation] * (num_layers - 1) -> Linear -> (BN)``.

    Args:
        in_dim: input features.
        hidden_dim: width of every hidden layer (unused when ``num_layers == 1``).
        out_dim: output features.
        num_layers: number of Linear layers, >= 1.
        batch_norm: BatchNorm1d after every hidden Linear (before the activation).
        last_batch_norm: BatchNorm1d after the last Linear (MoCo v3, SimCLR v2).
        last_batch_norm_affine: the last BN's learnable parameters: ``True`` scale and shift,
            ``False`` none (MoCo v3 projector), ``"scale"`` scale only (SimCLR v2).
        activation: activation class, instantiated without arguments (``nn.ReLU``,
            ``nn.GELU``...).
        bias: bias of the Linear layers. ``None`` (default): a Linear has a bias exactly when
            no BatchNorm follows it, since BN's mean subtraction cancels a bias.

    Returns:
        ``nn.Sequential`` of the layers in order (flat, so ``head[0]`` is the first Linear).

    Example:
        >>> head = mlp(512, 2048, 128, num_layers=3)
        >>> [type(m).__name__ for m in head]  # doctest: +NORMALIZE_WHITESPACE
        ['Linear', 'BatchNorm1d', 'ReLU', 'Linear', 'BatchNorm1d', 'ReLU', 'Linear']
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 128])
    """
    for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if value < 1:
            raise ValueError(f"{name} must be a positive number of features, got {value}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1 (the number of Linear layers), got {num_layers}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=(not batch_norm) if bias is None else bias))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(activation())
        dim = hidden_dim
    last_bias = (not last_batch_norm) if bias is None else bias
    layers.append(nn.Linear(dim, out_dim, bias=last_bias))
    if last_batch_norm:
        layers.append(_batch_norm(out_dim, last_batch_norm_affine))
    return nn.Sequential(*layers)


def simclr_projector(
    in_dim: int,
    version: Literal["v1", "v2"] = "v2",
    hidden_dim: int | None = None,
    out_dim: int = 128,
) -> nn.Sequential:
    """SimCLR projection head g(h): encoder features ``[B, in_dim]`` -> ``[B, out_dim]``.

    * ``"v1"`` follows the SimCLR paper (Chen et al. 2020a, Sec. 2.1):
      ``Linear(in, hidden) - ReLU - Linear(hidden, out)``, both Linear layers with bias,
      no BatchNorm.
    * ``"v2"`` follows the official SimCLR v2 code (``google-research/simclr``,
      ``tf2/model.py``, ``ProjectionHead`` with ``num_proj_layers=3``):
      ``[Linear(no bias) - BN - ReLU] x 2 - Linear(no bias) - BN(scale, no shift)``.

    In both, ``hidden_dim`` defaults to ``in_dim`` as in the official code, where the hidden
    width is the encoder width (2048 for ResNet-50, which is the "2048" quoted for v2).

    Differences from the reference: the official v1 *code* already uses BatchNorm in its
    head (it is v2's layout with 2 layers); ``"v1"`` here is the paper's BN-free head.
    Weights are initialised with PyTorch's defaults, not the official N(0, 0.01).

    Example:
        >>> head = simclr_projector(512, "v2")
        >>> head(torch.randn(8, 512)).shape
        torch.Size([8, 128])
    """
    hidden = in_dim if hidden_dim is None else hidden_dim
    if version == "v1":
        return mlp(in_dim, hidden, out_dim, num_layers=2, batch_norm=False, bias=True)
    if version == "v2":
        return mlp(
            in_dim,
            hidden,
            out_dim,
            num_layers=3,
            batch_norm=True,
            last_batch_norm=True,
            last_batch_norm_affine="scale",
        )
    raise ValueError(f"unknown SimCLR projector version {version!r}; choose 'v1' or 'v2'")


class WeightNormLinear(nn.Module):
    r"""Bias-free Linear layer with weight normalisation: :math:`W_i = g_i\, v_i / \lVert v_i
    \rVert_2` per output row (Salimans & Kingma 2016), DINO's last layer.

    ``direction`` (:math:`v`, ``[out, in]``) is initialised like DINO's Linear layers
    (truncated normal, std 0.02) and ``gain`` (:math:`g`, ``[out, 1]``) with ones. With
    ``norm_last_layer=True`` the gain is frozen at 1 (``requires_grad=False``), so every
    output is a cosine similarity between the L2-normalised input and a unit prototype: DINO's
    default, which stabilises training. Same parametrisation as
    ``torch.nn.utils.weight_norm(nn.Linear(in, out, bias=False))`` (``weight_v``/``weight_g``).

    Example:
        >>> layer = WeightNormLinear(4, 3, norm_last_layer=True)
        >>> [round(n, 4) for n in layer.weight().norm(dim=1).tolist()]  # unit rows, gain at 1
        [1.0, 1.0, 1.0]
        >>> layer(torch.randn(2, 4)).shape, layer.gain.requires_grad
        (torch.Size([2, 3]), False)
    """

    def __init__(self, in_dim: int, out_dim: int, norm_last_layer: bool = True) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"in_dim and out_dim must be >= 1, got {in_dim} and {out_dim}")
        self.direction = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.direction, std=0.02)
        self.gain = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    def weight(self) -> Tensor:
        r"""The effective weight :math:`g\, v / \lVert v \rVert` (``[out, in]``)."""
        return self.gain * self.direction / self.direction.norm(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight())

    def extra_repr(self) -> str:
        out_dim, in_dim = self.direction.shape
        return f"in_dim={in_dim}, out_dim={out_dim}, norm_last_layer={not self.gain.requires_grad}"


class DINOHead(nn.Module):
    r"""DINO projection head: MLP -> L2-normalise -> weight-normalised Linear to ``out_dim``.

    .. math::

        h(x) = W \, \frac{m(x)}{\lVert m(x) \rVert_2}, \qquad
        m = \mathrm{Linear}(d, 2048) - \mathrm{GELU} - \mathrm{Linear}(2048, 2048) -
        \mathrm{GELU} - \mathrm{Linear}(2048, 256)

    with :math:`W` a :class:`WeightNormLinear` to :math:`K` = ``out_dim`` prototypes (65536 in
    the paper) without bias. ``batch_norm`` adds BatchNorm1d after the hidden layers (off in
    the paper's ViT recipe). Linear layers start from a truncated normal (std 0.02) with zero
    biases, as in the official code. ``forward`` returns the ``[B, K]`` logits;
    :meth:`bottleneck` the normalised ``[B, 256]`` embedding before the last layer.

    Example:
        >>> head = DINOHead(32, out_dim=100, hidden_dim=64, bottleneck_dim=16)
        >>> head(torch.randn(4, 32)).shape, head.bottleneck(torch.randn(4, 32)).shape
        (torch.Size([4, 100]), torch.Size([4, 16]))
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        num_layers: int = 3,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        self.mlp = mlp(
            in_dim,
            hidden_dim,
            bottleneck_dim,
            num_layers=num_layers,
            batch_norm=batch_norm,
            activation=nn.GELU,
            bias=True,
        )
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, norm_last_layer)
        self.out_dim = out_dim

    def bottleneck(self, x: Tensor) -> Tensor:
        """The L2-normalised MLP output ``[B, bottleneck_dim]``."""
        return F.normalize(self.mlp(x), dim=-1, p=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(self.bottleneck(x))
