r"""Exponential moving averages of a network: the target / key / teacher of the momentum family.

MoCo's key encoder, BYOL's target and DINO's teacher are all the same object: a copy of the
online network that receives no gradient and follows it by an exponential moving average of
the *parameters* after every optimiser step,

.. math::

    \theta_t \leftarrow m\, \theta_t + (1 - m)\, \theta_o ,

with a momentum :math:`m` close to 1 (0.999 MoCo v2, 0.99 -> 1 MoCo v3, 0.996 -> 1 BYOL and
DINO, see :func:`cosine_momentum`). The update is one fused ``torch._foreach_*`` call over all
parameter tensors, and never reads a value back to the host.

What happens to *buffers* (BatchNorm running statistics) differs between methods and is an
explicit choice (``buffers=``): the official BYOL and MoCo code let the target keep its own
statistics, computed from the batches it sees (``"keep"``).
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

__all__ = [
    "EMATarget",
    "EMAUpdater",
    "cosine_momentum",
    "ema_update_",
    "make_target",
    "momentum_schedule",
]

BufferPolicy = Literal["keep", "copy", "ema"]
_BUFFER_POLICIES = ("keep", "copy", "ema")


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    r"""EMA momentum rising from ``base`` to 1 on a half cosine (BYOL, MoCo v3, DINO).

    .. math::

        m_k = 1 - (1 - m_0)\, \frac{\cos(\pi k / K) + 1}{2},

    so :math:`m_0` = ``base`` at step :math:`k = 0` and :math:`m_K = 1` at :math:`k = K` =
    ``total_steps``. BYOL's :math:`\tau_k` with :math:`\tau_{base} = 0.996`.

    Args:
        base: momentum at step 0, in ``[0, 1]``.
        step: global step :math:`k`, ``0 <= step <= total_steps``.
        total_steps: :math:`K \ge 1`, the number of optimiser steps of the run.

    Returns:
        The momentum :math:`m_k` (a Python float: schedules are host-side numbers).

    Example:
        >>> cosine_momentum(0.996, 0, 100), cosine_momentum(0.996, 100, 100)
        (0.996, 1.0)
        >>> round(cosine_momentum(0.99, 50, 100), 6)  # half-way: (base + 1) / 2
        0.995
    """
    if not (math.isfinite(base) and 0.0 <= base <= 1.0):
        raise ValueError(
            f"base momentum must be in [0, 1], got {base}; EMA targets use values close to 1 "
            "(0.996 BYOL/DINO, 0.99 MoCo v3)"
        )
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(
            f"total_steps must be a positive integer, got {total_steps!r}; pass the number of "
            "optimiser steps of the run (epochs * steps_per_epoch)"
        )
    if not 0 <= step <= total_steps:
        raise ValueError(
            f"step must be in [0, total_steps] = [0, {total_steps}], got {step}; pass the "
            "global optimiser step (Progress.step) and the run's total_steps"
        )
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


def momentum_schedule(
    base: float, total_steps: int, schedule: Literal["cosine", "constant"] = "cosine"
) -> np.ndarray:
    r"""The momentum of the EMA update after each optimiser step ``k = 0 .. K-1``, as an array.

    Precomputed like the learning-rate schedule (DINO's ``momentum_schedule[it]``): after step
    :math:`k`, :math:`k + 1` steps are done, so entry :math:`k` is :math:`m_{k+1}` of
    :func:`cosine_momentum` and the last update of the run uses exactly :math:`m_K = 1`. (The
    official BYOL/DINO code uses :math:`m_k` and stops one step short of 1.) ``"constant"``
    repeats ``base`` (MoCo v2).

    Example:
        >>> momentum_schedule(0.9, 4).round(4).tolist()
        [0.9146, 0.95, 0.9854, 1.0]
        >>> momentum_schedule(0.999, 3, "constant").tolist()
        [0.999, 0.999, 0.999]
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(
            f"momentum schedule must be 'cosine' or 'constant', got {schedule!r}; 'cosine' is "
            "the BYOL/MoCo v3/DINO schedule, 'constant' MoCo v2's"
        )
    cosine_momentum(base, 0, max(1, total_steps))  # validates base and total_steps
    if schedule == "constant":
        return np.full(total_steps, float(base))
    return np.array([cosine_momentum(base, k + 1, total_steps) for k in range(total_steps)])


def make_target(online: nn.Module) -> nn.Module:
    """Deep copy of ``online`` that receives no gradient: the EMA target / key encoder.

    Every parameter of the copy has ``requires_grad=False`` (so an optimiser built from
    ``requires_grad`` parameters skips it and autograd never tracks it); buffers and the
    train/eval mode are copied as they are. The copy starts equal to ``online``, as in MoCo,
    BYOL and DINO.

    Example:
        >>> online = nn.Linear(3, 2)
        >>> target = make_target(online)
        >>> torch.equal(target.weight, online.weight), target.weight.requires_grad
        (True, False)
        >>> target.weight is online.weight
        False
    """
    if not isinstance(online, nn.Module):
        raise ValueError(
            f"make_target needs an nn.Module, got {type(online).__name__}; pass the online "
            "network (e.g. the backbone and projector in an nn.Sequential)"
        )
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


def _check_policy(buffers: str) -> None:
    if buffers not in _BUFFER_POLICIES:
        raise ValueError(
            f"buffers policy must be one of {_BUFFER_POLICIES}, got {buffers!r}; use 'keep' "
            "for the official BYOL/MoCo behaviour (the target keeps its own BN statistics)"
        )


def _owned(
    module: nn.Module, kind: Literal["parameter", "buffer"]
) -> list[tuple[str, nn.Module, str]]:
    """``(qualified name, owning module, attribute name)`` for every parameter or buffer.

    Tensors shared between modules are listed once (as ``named_parameters`` does).
    """
    if kind == "parameter":
        names = [name for name, _ in module.named_parameters()]
    else:
        names = [name for name, _ in module.named_buffers()]
    out = []
    for name in names:
        owner_path, _, attr = name.rpartition(".")
        out.append((name, module.get_submodule(owner_path), attr))
    return out


def _pair(
    target: nn.Module, online: nn.Module, kind: Literal["parameter", "buffer"]
) -> tuple[list[tuple[nn.Module, str]], list[tuple[nn.Module, str]]]:
    """Match the target's and the online module's tensors of one kind by name, shape and dtype."""
    t_items, o_items = _owned(target, kind), _owned(online, kind)
    t_names = [name for name, _, _ in t_items]
    o_names = [name for name, _, _ in o_items]
    if t_names != o_names:
        only_t = sorted(set(t_names) - set(o_names))[:5]
        only_o = sorted(set(o_names) - set(t_names))[:5]
        raise ValueError(
            f"target and online modules have different {kind}s (only in target: {only_t}, "
            f"only in online: {only_o}, or a different order); build the target with "
            "make_target(online) and pass the unwrapped modules (not a DDP wrapper on one side)"
        )
    for name, t_owner, t_attr in t_items:
        t = _fetch(t_owner, t_attr, kind)
        o = _fetch(online.get_submodule(name.rpartition(".")[0]), t_attr, kind)
        if t.shape != o.shape or t.dtype != o.dtype:
            raise ValueError(
                f"{kind} {name!r} differs between target ({tuple(t.shape)}, {t.dtype}) and "
                f"online ({tuple(o.shape)}, {o.dtype}); the target must be a copy of the online "
                "module with the same shapes and dtypes (make_target(online), then .to() both)"
            )
    return (
        [(owner, attr) for _, owner, attr in t_items],
        [(owner, attr) for _, owner, attr in o_items],
    )


def _fetch(owner: nn.Module, attr: str, kind: Literal["parameter", "buffer"]) -> Tensor:
    tensor = owner._parameters[attr] if kind == "parameter" else owner._buffers[attr]
    assert tensor is not None  # named_parameters / named_buffers skip None entries
    return tensor


def _lerp_(targets: list[Tensor], onlines: list[Tensor], momentum: float | Tensor) -> None:
    """``t <- m t + (1 - m) o`` for every pair, fused, without a host sync."""
    if not targets:
        return
    if isinstance(momentum, Tensor):
        # A tensor momentum stays on the device: a Scalar argument would call .item().
        torch._foreach_mul_(targets, momentum)
        torch._foreach_add_(targets, torch._foreach_mul(onlines, 1.0 - momentum))
    else:
        # lerp(t, o, w) = t + w (o - t); exact at both ends: w = 0 keeps t, w = 1 gives o.
        torch._foreach_lerp_(targets, onlines, 1.0 - momentum)


def _check_momentum(momentum: float | Tensor) -> None:
    if isinstance(momentum, Tensor):
        if momentum.numel() != 1 or not momentum.is_floating_point():
            raise ValueError(
                f"a tensor momentum must be a floating-point scalar, got shape "
                f"{tuple(momentum.shape)} and dtype {momentum.dtype}; pass e.g. "
                "torch.tensor(0.996)"
            )
        return  # its value stays on the device: not read back to check the range
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise ValueError(
            f"EMA momentum must be in [0, 1], got {momentum}; 1 freezes the target, 0 copies "
            "the online module, typical values are 0.99-0.9999"
        )


def _update(
    t_params: list[Tensor],
    o_params: list[Tensor],
    t_bufs: list[Tensor],
    o_bufs: list[Tensor],
    momentum: float | Tensor,
    buffers: BufferPolicy,
) -> None:
    _lerp_(t_params, o_params, momentum)
    if buffers == "keep":
        return
    if buffers == "copy":
        if t_bufs:
            torch._foreach_copy_(t_bufs, o_bufs)
        return
    floating = [i for i, b in enumerate(t_bufs) if b.is_floating_point()]
    integer = [i for i, b in enumerate(t_bufs) if not b.is_floating_point()]
    _lerp_([t_bufs[i] for i in floating], [o_bufs[i] for i in floating], momentum)
    if integer:  # counters (num_batches_tracked) are copied, never averaged
        torch._foreach_copy_([t_bufs[i] for i in integer], [o_bufs[i] for i in integer])


@torch.no_grad()
def ema_update_(
    target: nn.Module,
    online: nn.Module,
    momentum: float | Tensor,
    buffers: BufferPolicy = "keep",
) -> None:
    r"""In place: :math:`\theta_t \leftarrow m\,\theta_t + (1 - m)\,\theta_o` over parameters.

    One fused ``_foreach`` call, no host sync; :class:`EMAUpdater` pairs the tensors once for a
    training loop. ``momentum``: :math:`m \in [0, 1]` (1 keeps the target, 0 copies
    ``online``), or a 0-d device tensor (no range check). ``buffers``: ``"keep"`` the target
    keeps its own BatchNorm statistics (BYOL/MoCo official), ``"copy"`` takes the online ones,
    ``"ema"`` averages floating-point buffers; integer buffers are never averaged. Raises
    ``ValueError`` when names, shapes or dtypes differ, or ``m`` is outside ``[0, 1]``.

    Example:
        >>> online, target = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> ema_update_(target, online, momentum=0.0)  # m = 0 copies the online weights
        >>> torch.equal(target.weight, online.weight)
        True
    """
    EMAUpdater(target, online, buffers).update(momentum)


class EMAUpdater:
    r"""The EMA update of :func:`ema_update_`, with the parameter pairing done once.

    The constructor checks that ``target`` and ``online`` match (names, shapes, dtypes) and
    records which module owns each tensor; :meth:`update` then only looks the tensors up and
    runs the fused update. Looking them up at every call (rather than caching the tensors)
    keeps the updater valid after ``.to(device)``, which replaces buffers, and after
    ``load_state_dict(assign=True)``, which replaces parameters.

    Not an ``nn.Module`` and holds no state of its own: the target's tensors are the state,
    checkpointed with the method that owns the target.

    Example:
        >>> online = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        >>> target = make_target(online)
        >>> updater = EMAUpdater(target, online, buffers="keep")
        >>> with torch.no_grad():
        ...     _ = online[0].weight.add_(1.0)
        >>> updater.update(0.5)  # target moves half-way towards the online weights
        >>> torch.allclose(target[0].weight, online[0].weight - 0.5)
        True
    """

    def __init__(
        self, target: nn.Module, online: nn.Module, buffers: BufferPolicy = "keep"
    ) -> None:
        _check_policy(buffers)
        if target is online:
            raise ValueError(
                "target and online are the same module, so the EMA would do nothing; build "
                "the target with make_target(online)"
            )
        self.buffers: BufferPolicy = buffers
        self._t_params, self._o_params = _pair(target, online, "parameter")
        self._t_bufs: list[tuple[nn.Module, str]] = []
        self._o_bufs: list[tuple[nn.Module, str]] = []
        if buffers != "keep":
            self._t_bufs, self._o_bufs = _pair(target, online, "buffer")

    @torch.no_grad()
    def update(self, momentum: float | Tensor) -> None:
        r""":math:`\theta_t \leftarrow m\,\theta_t + (1 - m)\,\theta_o` (and buffers, per policy)."""
        _check_momentum(momentum)
        _update(
            [_fetch(m, a, "parameter") for m, a in self._t_params],
            [_fetch(m, a, "parameter") for m, a in self._o_params],
            [_fetch(m, a, "buffer") for m, a in self._t_bufs],
            [_fetch(m, a, "buffer") for m, a in self._o_bufs],
            momentum,
            self.buffers,
        )


class EMATarget(nn.Module):
    r"""The momentum network of BYOL, MoCo and DINO: one object for the target / key encoder /
    teacher, which the methods differ from only in heads and loss.

    Holds the no-gradient copy of the online network (``module``, from :func:`make_target`),
    the per-step momentum array (``schedule``, from :func:`momentum_schedule`, set by
    :meth:`configure`) and the momentum of the latest update (``momentum``, a 0-d buffer that
    the methods log). :meth:`update` after optimiser step :math:`k` applies
    :math:`\theta_t \leftarrow m_k\, \theta_t + (1 - m_k)\, \theta_o` over parameters; the
    target keeps its own BatchNorm statistics (``buffers="keep"``, as the official code).

    Example:
        >>> online = nn.Sequential(nn.Linear(2, 2))
        >>> target = EMATarget(online, momentum_base=0.5, schedule="constant")
        >>> with torch.no_grad():
        ...     _ = online[0].weight.add_(1.0)
        >>> target.update(step=0, total_steps=10)  # half-way to the online weights
        >>> torch.allclose(target.module[0].weight, online[0].weight - 0.5), float(target.momentum)
        (True, 0.5)
    """

    momentum: Tensor  # 0-d buffer: the momentum of the latest update (momentum_base before)

    def __init__(
        self,
        online: nn.Module,
        momentum_base: float,
        schedule: Literal["cosine", "constant"] = "cosine",
        buffers: BufferPolicy = "keep",
    ) -> None:
        super().__init__()
        _check_momentum(momentum_base)
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        self.momentum_base = float(momentum_base)
        self.schedule_kind: Literal["cosine", "constant"] = schedule
        self.module = make_target(online)
        for module in self.module.modules():  # the target never drops paths (DINO's teacher)
            if isinstance(module, StochasticDepth):
                module.p = 0.0
        # Pairs tensors by name once, looks them up per update (valid after .to(device)).
        self._updater = EMAUpdater(self.module, online, buffers)
        self.register_buffer("momentum", torch.tensor(self.momentum_base))
        self.schedule: np.ndarray | None = None  # derived from the run length, not state

    def configure(self, total_steps: int) -> None:
        """Precompute the momentum of every update of a run of ``total_steps`` steps."""
        self.schedule = momentum_schedule(self.momentum_base, total_steps, self.schedule_kind)

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)

    def __getitem__(self, index: int) -> nn.Module:
        """``target[0]`` is the EMA copy of the online network's first module (the backbone)."""
        return self.module[index]  # type: ignore[index]

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> None:
        """The EMA update after optimiser step ``step`` (0-based) of ``total_steps``."""
        if self.schedule is None or len(self.schedule) != total_steps:
            self.configure(total_steps)  # a user loop that never called configure
        assert self.schedule is not None
        momentum = float(self.schedule[step])
        self._updater.update(momentum)
        self.momentum.fill_(momentum)

    def extra_repr(self) -> str:
        return f"momentum_base={self.momentum_base}, schedule={self.schedule_kind}"
