"""Multi-crop (Caron et al. 2020, SwAV; DINO): 2 global crops + N small local crops per image.

A method that takes local crops receives ``views`` with the global crops first (``views[:2]``)
and the local crops after them (all of one size). The small crops cost little (a 96 px crop is
~18% of a 224 px one) and add views to match. Which pairs a loss compares is the method's
paper's rule, from :func:`crop_pairs`:

* **targets from the global crops** (SwAV's codes, DINO's teacher, BYOL's and MoCo v3's target
  network): every global crop ``t`` is the target of every other crop ``q != t``;
* **symmetric losses** (SimCLR, Barlow Twins, VICReg): each unordered pair with at least one
  global crop, once.

With 2 views both rules give the two-view loss of the paper exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import torch
from torch import Tensor

__all__ = ["crop_pairs", "forward_by_size", "size_groups"]

Output = TypeVar("Output", Tensor, tuple[Tensor, ...])


def crop_pairs(
    num_views: int, num_global: int = 2, symmetric: bool = False
) -> list[tuple[int, int]]:
    """The (target, query) view pairs a multi-crop loss sums over.

    Args:
        num_views: global + local crops.
        num_global: the leading views that are global crops (targets).
        symmetric: False: ``(t, q)`` for every global ``t`` and every other crop ``q != t``
            (a target network, codes or a teacher on the globals only); True: unordered pairs
            ``(i, j)``, ``i`` global, ``j > i`` (a loss symmetric in its two inputs).

    Example:
        >>> crop_pairs(2), crop_pairs(2, symmetric=True)
        ([(0, 1), (1, 0)], [(0, 1)])
        >>> crop_pairs(4)
        [(0, 1), (0, 2), (0, 3), (1, 0), (1, 2), (1, 3)]
        >>> crop_pairs(4, symmetric=True)
        [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]
    """
    if not 1 <= num_global <= num_views or (num_views < 2):
        raise ValueError(
            f"multi-crop needs at least 2 views and 1 <= num_global <= num_views, got "
            f"num_views={num_views}, num_global={num_global}"
        )
    if symmetric:
        return [(i, j) for i in range(num_global) for j in range(i + 1, num_views)]
    return [(t, q) for t in range(num_global) for q in range(num_views) if q != t]


def size_groups(views: list[Tensor], separate: int = 0) -> list[tuple[int, int]]:
    """``(start, end)`` index ranges of consecutive views with the same shape; the first
    ``separate`` views are each a range of their own.

    Example:
        >>> views = [torch.zeros(2, 1, 8, 8)] * 2 + [torch.zeros(2, 1, 4, 4)] * 3
        >>> size_groups(views), size_groups(views, separate=2)
        ([(0, 2), (2, 5)], [(0, 1), (1, 2), (2, 5)])
    """
    groups: list[tuple[int, int]] = [(i, i + 1) for i in range(min(separate, len(views)))]
    start = len(groups)
    for i in range(start + 1, len(views) + 1):
        if i == len(views) or views[i].shape != views[start].shape:
            groups.append((start, i))
            start = i
    return groups


def forward_by_size(
    module: Callable[[Tensor], Output], views: list[Tensor], separate: int = 0
) -> list[Output]:
    """``module`` applied once per run of same-size views, split back to one output per view.

    One pass per resolution is the official multi-crop forward (SwAV, DINO): BatchNorm
    statistics are per resolution group. ``separate`` leading views go through one pass each
    (BYOL and MoCo v3 normalise each global view on its own batch statistics). A module that
    returns a tuple (e.g. features and projections) gives one tuple per view.

    Example:
        >>> views = [torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 1)]
        >>> [tuple(o.shape) for o in forward_by_size(lambda x: x.sum(1, keepdim=True), views)]
        [(2, 1), (2, 1), (2, 1)]
        >>> pairs = forward_by_size(lambda x: (x, 2 * x), views)
        >>> len(pairs), [tuple(t.shape) for t in pairs[2]]
        (3, [(2, 1), (2, 1)])
    """
    outputs: list[Output] = []
    for start, end in size_groups(views, separate):
        count = end - start
        out = module(torch.cat(views[start:end]) if count > 1 else views[start])
        if count == 1:
            outputs.append(out)
        elif isinstance(out, Tensor):
            outputs.extend(cast(list[Output], list(out.chunk(count))))
        else:
            outputs.extend(cast(list[Output], list(zip(*(t.chunk(count) for t in out)))))
    return outputs
