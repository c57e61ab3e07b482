"""Optimisers for self-supervised pre-training: LARS, parameter groups, learning-rate scaling.

Typical use in any training loop::

    groups = param_groups(model, weight_decay=1e-6)          # no decay / no LARS on BN, bias
    lr = scaled_lr(0.075, global_batch_size=512, rule="sqrt")
    optimizer = build_optimizer("lars", groups, lr=lr, weight_decay=1e-6)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

import torch
from torch import Tensor, nn
from torch.optim.optimizer import ParamsT

__all__ = [
    "LARS",
    "build_optimizer",
    "clip_grad_norm_per_tensor_",
    "clip_gradients_",
    "param_groups",
    "scaled_lr",
]

OPTIMIZERS = ("lars", "sgd", "adamw")
LR_RULES = ("linear", "sqrt", "none")


class LARS(torch.optim.Optimizer):
    r"""SGD with momentum and a layer-wise trust ratio (LARS, You et al. 2017).

    For every parameter tensor :math:`w` with gradient :math:`g`, at learning rate
    :math:`\eta_{lr}`, momentum :math:`\mu` and weight decay :math:`\lambda`:

    .. math::

        d &= g + \lambda w \\
        r &= \begin{cases} \eta \, \lVert w \rVert / \lVert d \rVert
               & \lVert w \rVert > 0 \text{ and } \lVert d \rVert > 0 \\
               1 & \text{otherwise} \end{cases} \\
        v &\leftarrow \mu v + r\, d \\
        w &\leftarrow w - \eta_{lr}\, v

    The trust ratio is the one of the official SimCLR (``lars_optimizer.py``) and BYOL
    (``scale_by_lars``) code: weight decay is added to the gradient first and the ratio uses
    the norm of that sum, :math:`\lVert g + \lambda w \rVert`. The LARS paper's
    :math:`\eta \lVert w \rVert / (\lVert g \rVert + \lambda \lVert w \rVert)` is an upper
    bound of it (triangle inequality); the two agree when :math:`g \parallel w`.
    The learning rate is applied after the momentum buffer, as in BYOL and
    ``torch.optim.SGD``; SimCLR's "classic momentum" puts it inside the buffer, which
    differs only while the learning rate changes (warm-up, cosine).

    Parameter groups with ``lars_exclude=True`` (BatchNorm and bias parameters, see
    :func:`param_groups`) get neither weight decay nor the trust ratio: they are updated
    exactly like ``torch.optim.SGD(momentum=mu)`` without weight decay, whatever their
    ``weight_decay`` entry says.

    The update runs on whole lists of tensors with ``torch._foreach_*`` ops, grouped by
    device and dtype; it never reads a value back to the host.

    Args:
        params: parameters or parameter groups (dicts may set ``lr``, ``momentum``,
            ``weight_decay``, ``eta``, ``lars_exclude``).
        lr: learning rate.
        momentum: momentum factor :math:`\mu \in [0, 1)`; 0 disables the buffer.
        weight_decay: L2 coefficient :math:`\lambda \ge 0` (1e-6 in the SimCLR paper).
        eta: trust coefficient :math:`\eta > 0` (0.001 in SimCLR and BYOL).
        lars_exclude: default for groups that do not set it.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        lars_exclude: bool = False,
    ) -> None:
        _check_hyperparameters(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "lars_exclude": lars_exclude,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_hyperparameters(
                lr=group["lr"],
                momentum=group["momentum"],
                weight_decay=group["weight_decay"],
                eta=group["eta"],
            )

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Perform one update; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Bucket by (device, dtype) so every foreach call sees homogeneous lists.
            buckets: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise ValueError(
                        "LARS does not support sparse gradients; use dense embeddings "
                        "(sparse=False) or a sparse-capable optimiser for those parameters"
                    )
                params, grads = buckets.setdefault((p.device, p.dtype), ([], []))
                params.append(p)
                grads.append(grad)
            for params, grads in buckets.values():
                self._update(params, grads, group)
        return loss

    def _update(self, params: list[Tensor], grads: list[Tensor], group: dict[str, Any]) -> None:
        """Apply the LARS update to same-device, same-dtype ``params`` (P tensors)."""
        lr, momentum = group["lr"], group["momentum"]
        steps: list[Tensor]
        if group["lars_exclude"]:
            steps = grads  # plain SGD(+momentum): no weight decay, no trust ratio
        else:
            wd, eta = group["weight_decay"], group["eta"]
            decayed = list(torch._foreach_add(grads, params, alpha=wd)) if wd != 0 else grads
            w_norm = torch.stack(torch._foreach_norm(params))  # [P]
            d_norm = torch.stack(torch._foreach_norm(decayed))  # [P]
            # Zero-norm guard: a zero weight (fresh zero init) or a zero update keeps ratio 1.
            usable = (w_norm > 0) & (d_norm > 0)
            trust = torch.where(usable, eta * w_norm / d_norm, torch.ones_like(w_norm))  # [P]
            ratios: list[Tensor] = list(trust.unbind(0))
            steps = list(torch._foreach_mul(decayed, ratios))  # r * d, new tensors
        if momentum != 0:
            bufs: list[Tensor] = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:  # first step only: mu * 0 + d = d exactly
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, steps)
            steps = bufs
        torch._foreach_add_(params, steps, alpha=-lr)


def _check_hyperparameters(lr: float, momentum: float, weight_decay: float, eta: float) -> None:
    if not (math.isfinite(lr) and lr >= 0):
        raise ValueError(f"lr must be a finite number >= 0, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}; SimCLR/BYOL use 0.9")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(
            f"weight_decay must be a finite number >= 0, got {weight_decay}; "
            "SimCLR uses 1e-6 with LARS"
        )
    if not (math.isfinite(eta) and eta > 0):
        raise ValueError(
            f"eta (LARS trust coefficient) must be > 0, got {eta}; the default is 0.001"
        )


GROUP_OPTIONS = ("fixed_lr", "lr_scale")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    decay_norm_and_bias: bool = False,
    *,
    norm_and_bias_lr_scale: float = 1.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Split trainable parameters into a weight group and a BatchNorm/bias group.

    Parameters with ``ndim <= 1`` (biases, BatchNorm/LayerNorm scales and shifts, tokens
    stored as vectors) get ``weight_decay=0`` (``weight_decay`` with ``decay_norm_and_bias``,
    as MoCo v2's official SGD) and ``lars_exclude=True``; all others (conv and linear weights)
    get ``weight_decay`` and ``lars_exclude=False``. Each group says whether it decays
    (``"decay"``), which a weight-decay schedule reads. Parameters with
    ``requires_grad=False`` are left out, and so are empty groups.

    Every group also carries how the training step sets its learning rate from the schedule
    (:class:`~selfsup.train.step.TrainStep`): ``lr = schedule[k] * lr_scale``, or
    ``peak_lr * lr_scale`` every step when ``fixed_lr`` (neither warmed up nor decayed).

    Args:
        model: the module whose parameters are optimised (a method: its heads included).
        weight_decay: L2 coefficient of the weight group.
        decay_norm_and_bias: decay biases and norm parameters too (MoCo v2, SimSiam).
        norm_and_bias_lr_scale: ``lr_scale`` of the bias/norm groups (Barlow Twins: 0.0048 /
            0.2 = 0.024, its learning rates for biases+BN and for weights); 1 = the weights' lr.
        options: submodule name -> group options for the parameters under it (``"fixed_lr"``:
            bool, ``"lr_scale"``: float), e.g. ``{"predictor": {"fixed_lr": True}}`` for
            SimSiam's predictor at the peak lr; those parameters get groups of their own (still
            split into weights and biases/norms). What a method declares with
            :meth:`~selfsup.methods.base.Method.param_group_options`.

    Returns:
        Parameter-group dicts for ``torch.optim`` optimisers (``lars_exclude``, ``decay``,
        ``lr_scale`` and ``fixed_lr`` are read by :class:`LARS` and the training step and
        ignored by the optimisers of ``torch.optim``).

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        >>> groups = param_groups(model, 1e-4, options={"1": {"fixed_lr": True}})
        >>> [(len(g["params"]), g["lars_exclude"], g["fixed_lr"]) for g in groups]
        [(1, False, False), (1, True, False), (1, False, True), (1, True, True)]
    """
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not (math.isfinite(norm_and_bias_lr_scale) and norm_and_bias_lr_scale > 0):
        raise ValueError(
            f"norm_and_bias_lr_scale must be a finite number > 0, got {norm_and_bias_lr_scale}; "
            "1 gives biases and norm parameters the weights' learning rate"
        )
    options = dict(options or {})
    for prefix, opts in options.items():
        unknown = set(opts) - set(GROUP_OPTIONS)
        if unknown:
            raise ValueError(
                f"unknown parameter-group option(s) {sorted(unknown)} for {prefix!r}; choose "
                f"from {', '.join(GROUP_OPTIONS)}"
            )
        if not any(_under(name, prefix) for name, _ in model.named_parameters()):
            raise ValueError(
                f"parameter-group options name {prefix!r}, which holds no parameter of the "
                "model; name a submodule (e.g. 'predictor')"
            )
    # (options prefix or "", is weight) -> parameters, in model.parameters() order
    split: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owner = max((k for k in options if _under(name, k)), key=len, default="")
        split.setdefault((owner, p.ndim > 1), []).append(p)
    groups = []
    for owner in ["", *options]:
        opts = options.get(owner, {})
        scale = float(opts.get("lr_scale", 1.0))
        fixed = bool(opts.get("fixed_lr", False))
        groups += [
            {
                "params": split.get((owner, True), []),
                "weight_decay": weight_decay,
                "lars_exclude": False,
                "decay": True,
                "lr_scale": scale,
                "fixed_lr": fixed,
            },
            {
                "params": split.get((owner, False), []),
                "weight_decay": weight_decay if decay_norm_and_bias else 0.0,
                "lars_exclude": True,
                "decay": decay_norm_and_bias,
                "lr_scale": scale * norm_and_bias_lr_scale,
                "fixed_lr": fixed,
            },
        ]
    return [g for g in groups if g["params"]]


def _under(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` lies in submodule ``prefix`` (``"predictor"`` holds
    ``"predictor.0.weight"``, not ``"predictor2.weight"``)."""
    return name == prefix or name.startswith(prefix + ".")


def build_optimizer(
    name: Literal["lars", "sgd", "adamw"],
    groups: ParamsT,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eta: float = 0.001,
) -> torch.optim.Optimizer:
    """Build an optimiser by name.

    * ``"lars"``: :class:`LARS` (``momentum``, ``eta``) -- SimCLR, BYOL.
    * ``"sgd"``: ``torch.optim.SGD`` with ``momentum`` -- MoCo, linear probes.
    * ``"adamw"``: ``torch.optim.AdamW`` with ``betas`` -- MAE (0.9, 0.95), DINO.

    ``weight_decay`` is the default for groups that do not set their own (the groups of
    :func:`param_groups` always do).
    """
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


@torch.no_grad()
def clip_grad_norm_per_tensor_(params: Iterable[Tensor], max_norm: float) -> None:
    r"""Clip each parameter's gradient to L2 norm ``max_norm`` on its own (DINO's rule).

    For every gradient :math:`g`: :math:`g \leftarrow g \cdot \min(1, c / (\lVert g
    \rVert_2 + 10^{-6}))` with :math:`c` = ``max_norm`` (3.0 in DINO). Unlike
    :func:`torch.nn.utils.clip_grad_norm_`, which rescales all gradients by one global norm,
    a single exploding tensor does not shrink the others. Fused ``_foreach`` calls, no host sync.

    Example:
        >>> a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
        >>> a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.5])
        >>> clip_grad_norm_per_tensor_([a, b], max_norm=1.0)
        >>> a.grad.round(decimals=4).tolist(), b.grad.tolist()  # a: norm 5 -> 1; b unchanged
        ([0.6000000238418579, 0.800000011920929], [0.5])
    """
    if not (math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a finite number > 0, got {max_norm}; DINO uses 3.0")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    torch._foreach_add_(norms, 1e-6)
    torch._foreach_reciprocal_(norms)
    torch._foreach_mul_(norms, max_norm)
    torch._foreach_clamp_max_(norms, 1.0)
    torch._foreach_mul_(grads, norms)


ClipMode = Literal["global", "per_tensor"]


def clip_gradients_(params: Sequence[Tensor], max_norm: float, mode: ClipMode = "global") -> None:
    """Clip gradients in place as ``optim.clip_grad`` / ``optim.clip_grad_mode`` say.

    ``"global"``: one norm over all gradients (:func:`torch.nn.utils.clip_grad_norm_`);
    ``"per_tensor"``: each parameter's gradient on its own (:func:`clip_grad_norm_per_tensor_`,
    DINO). The trainer and the benchmark both clip through here.
    """
    if mode == "per_tensor":
        clip_grad_norm_per_tensor_(params, max_norm)
    elif mode == "global":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        raise ValueError(f"clip mode must be 'global' or 'per_tensor', got {mode!r}")


def scaled_lr(
    base_lr: float, global_batch_size: int, rule: Literal["linear", "sqrt", "none"]
) -> float:
    r"""Learning rate for a global batch of ``B`` images under a scaling rule.

    * ``"linear"``: :math:`\text{base} \cdot B / 256` (Goyal et al.; MoCo, BYOL, MAE, DINO,
      and SimCLR's default with base 0.3).
    * ``"sqrt"``: :math:`\text{base} \cdot \sqrt{B}` (SimCLR with LARS at small batches,
      base 0.075).
    * ``"none"``: ``base_lr`` unchanged.

    ``B`` is the *global* batch (all processes, all accumulation steps).

    Example:
        >>> scaled_lr(0.3, 512, "linear"), scaled_lr(0.075, 256, "sqrt")
        (0.6, 1.2)
    """
    if isinstance(global_batch_size, bool) or global_batch_size < 1:
        raise ValueError(
            f"global_batch_size must be a positive integer, got {global_batch_size}; pass "
            "the batch summed over all processes"
        )
    if not (math.isfinite(base_lr) and base_lr >= 0):
        raise ValueError(f"base_lr must be a finite number >= 0, got {base_lr}")
    if rule == "linear":
        return base_lr * global_batch_size / 256
    if rule == "sqrt":
        return base_lr * math.sqrt(global_batch_size)
    if rule == "none":
        return base_lr
    raise ValueError(f"unknown learning-rate rule {rule!r}; choose one of {', '.join(LR_RULES)}")
