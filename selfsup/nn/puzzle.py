r"""Jigsaw puzzles (Noroozi & Favaro 2016): the permutation set and the tiles of an image.

* :func:`hamming_permutations`: ``P`` permutations of the ``T = g^2`` tiles, chosen greedily
  from all ``T!`` so that each new one is as far as possible, in Hamming distance, from those
  already chosen: the classes of the jigsaw task, kept far apart so that no two puzzles are
  nearly the same question.
* :func:`cut_tiles`: an image cut into a ``g x g`` grid of cells, one ``tile x tile`` tile per
  cell at a random offset inside it (the gap between tiles hides the continuity of edges).
* :func:`normalize_tiles`: each tile's channels to zero mean and unit variance on their own
  (hides brightness and colour cues shared by neighbouring tiles).
* :func:`shuffle_tiles`: the tiles in the order of a permutation; :func:`unshuffle_tiles`
  puts them back.

A permutation ``p`` puts the tile of grid cell ``p[k]`` (row-major) in slot ``k``:

.. math::

    \text{shuffled}_k = \text{tiles}_{p_k}, \qquad \text{tiles}_{p_k} = \text{shuffled}_k .
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "cut_tiles",
    "hamming_distances",
    "hamming_permutations",
    "normalize_tiles",
    "shuffle_tiles",
    "tile_origins",
    "unshuffle_tiles",
]

# Floor on each tile's variance, in the units of the normalised view: a std floor of 0.01,
# about one grey level after the dataset normalisation, so a blank tile stays ~0 instead of
# blowing its rounding noise up to unit variance.
TILE_EPS = 1e-4


def hamming_distances(permutations: Tensor) -> Tensor:
    """Pairwise Hamming distances ``[P, P]`` of permutations ``[P, T]``: in how many slots two
    permutations differ.

    Example:
        >>> hamming_distances(torch.tensor([[0, 1, 2], [0, 2, 1], [2, 0, 1]])).tolist()
        [[0, 2, 3], [2, 0, 2], [3, 2, 0]]
    """
    return (permutations[:, None, :] != permutations[None, :, :]).sum(-1)


@functools.lru_cache(maxsize=8)
def _greedy_set(num_tiles: int, num_permutations: int, seed: int) -> np.ndarray:
    perms = np.array(list(itertools.permutations(range(num_tiles))), dtype=np.int8)  # [T!, T]
    perms = perms[np.random.default_rng(seed).permutation(len(perms))]  # the seed's tie order
    # agree[i, v]: 1 for the candidates holding tile v in slot i, so the agreement of every
    # candidate with a permutation p is sum_i agree[i, p_i]: T additions of [T!] vectors.
    agree = (perms.T[:, None, :] == np.arange(num_tiles, dtype=np.int8)[None, :, None]).view(
        np.uint8
    )  # [T, T, T!]
    min_distance = np.full(len(perms), num_tiles, dtype=np.int16)  # to the chosen set
    sum_distance = np.zeros(len(perms), dtype=np.int32)
    distance = np.empty(len(perms), dtype=np.int16)
    chosen = [0]  # the seed's random first permutation
    min_distance[0] = 0
    for _ in range(num_permutations - 1):
        p = perms[chosen[-1]]
        np.copyto(distance, agree[0, p[0]])
        for slot in range(1, num_tiles):
            distance += agree[slot, p[slot]]
        np.subtract(num_tiles, distance, out=distance)  # [T!] distances to the newest one
        np.minimum(min_distance, distance, out=min_distance)  # chosen ones are at 0
        sum_distance += distance
        farthest = np.flatnonzero(min_distance == min_distance.max())
        chosen.append(int(farthest[np.argmax(sum_distance[farthest])]))  # first of any tie
    return perms[chosen].astype(np.int64)


def hamming_permutations(num_tiles: int = 9, num_permutations: int = 100, seed: int = 0) -> Tensor:
    """The jigsaw task's classes: ``[P, T]`` int64 permutations of ``range(T)``, each chosen
    from all ``T!`` to maximise its minimum Hamming distance to those chosen before (ties: the
    largest summed distance, then the seed's random order); the first is a random one.

    Deterministic in ``seed``; P=1000 of 9 tiles takes about a second (cached per process).

    Example:
        >>> perms = hamming_permutations(9, 9, seed=0)
        >>> perms.shape, sorted(perms[3].tolist()) == list(range(9))
        (torch.Size([9, 9]), True)
        >>> d = hamming_distances(perms)
        >>> int(d[~torch.eye(9, dtype=torch.bool)].min())  # every pair differs in all 9 slots
        9
    """
    if isinstance(num_tiles, bool) or not 2 <= num_tiles <= 9:
        raise ValueError(
            f"num_tiles must be in [2, 9], got {num_tiles}; the set is chosen among all "
            f"num_tiles! permutations, too many beyond 9 (a 3x3 grid)"
        )
    available = math.factorial(num_tiles)
    if isinstance(num_permutations, bool) or not 1 <= num_permutations <= available:
        raise ValueError(
            f"num_permutations must be in [1, {available}] for {num_tiles} tiles (there are "
            f"{num_tiles}! = {available}), got {num_permutations}; the paper uses 1000 of 9"
        )
    return torch.from_numpy(_greedy_set(num_tiles, num_permutations, seed).copy())


def tile_origins(
    offsets: Tensor, grid_size: int, cell_size: int, margin: int = 0
) -> tuple[Tensor, Tensor]:
    """Top-left pixel ``(y0, x0)`` of each tile, ``[N, T]`` each, for ``offsets [N, T, 2]``
    (``(dy, dx)`` inside each cell, cells in row-major order, the grid starting at ``margin``).
    """
    cells = torch.arange(grid_size, device=offsets.device)
    top = margin + cells.repeat_interleave(grid_size) * cell_size  # [T]: the cell's row
    left = margin + cells.repeat(grid_size) * cell_size  # [T]: the cell's column
    return top + offsets[..., 0], left + offsets[..., 1]


def cut_tiles(
    images: Tensor, offsets: Tensor, grid_size: int, cell_size: int, tile_size: int
) -> Tensor:
    """Cut ``images [N, C, S, S]`` into ``[N, T, C, tile, tile]``: the ``g x g`` grid of
    ``cell_size`` cells centred in the image, in each cell the tile at ``offsets [N, T, 2]``
    (``(dy, dx)``, each in ``[0, cell_size - tile_size]``).

    Example:
        >>> x = torch.arange(36.0).reshape(1, 1, 6, 6)
        >>> offsets = torch.tensor([[[0, 0], [1, 1], [0, 1], [1, 0]]])
        >>> cut_tiles(x, offsets, grid_size=2, cell_size=3, tile_size=2)[0, 1, 0]
        tensor([[10., 11.],
                [16., 17.]])
    """
    batch, _, height, width = images.shape
    if height != width or height < grid_size * cell_size or tile_size > cell_size:
        raise ValueError(
            f"a {grid_size}x{grid_size} grid of {cell_size} px cells with {tile_size} px tiles "
            f"does not fit images of {height}x{width}; use square images of at least "
            f"{grid_size * cell_size} px and tiles no larger than a cell"
        )
    margin = (height - grid_size * cell_size) // 2
    y0, x0 = tile_origins(offsets, grid_size, cell_size, margin)  # [N, T] each
    steps = torch.arange(tile_size, device=images.device)
    rows = (y0[..., None] + steps)[..., :, None]  # [N, T, tile, 1]
    cols = (x0[..., None] + steps)[..., None, :]  # [N, T, 1, tile]
    sample = torch.arange(batch, device=images.device)[:, None, None, None]
    tiles = images.permute(0, 2, 3, 1)[sample, rows, cols]  # [N, T, tile, tile, C]
    return tiles.permute(0, 1, 4, 2, 3)  # [N, T, C, tile, tile]


def normalize_tiles(tiles: Tensor, eps: float = TILE_EPS) -> Tensor:
    """Each tile's channels to zero mean and unit variance over its own pixels:
    ``(x - mean) / sqrt(var + eps)`` per tile and channel (biased variance), in float32.

    Example:
        >>> t = normalize_tiles(torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]]))  # mean 2, std 1
        >>> t.flatten().round(decimals=3).tolist()
        [-1.0, 1.0, -1.0, 1.0]
    """
    x = tiles.float()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    var = x.var(dim=(-2, -1), unbiased=False, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def shuffle_tiles(tiles: Tensor, permutations: Tensor) -> Tensor:
    """``tiles [N, T, ...]`` in grid order -> slot ``k`` of sample ``n`` holds the tile of
    cell ``permutations[n, k]`` (``[N, T]`` int64).

    Example:
        >>> shuffle_tiles(torch.tensor([[10, 11, 12]]), torch.tensor([[2, 0, 1]]))
        tensor([[12, 10, 11]])
    """
    sample = torch.arange(tiles.shape[0], device=tiles.device)[:, None]
    return tiles[sample, permutations]


def unshuffle_tiles(shuffled: Tensor, permutations: Tensor) -> Tensor:
    """The inverse of :func:`shuffle_tiles`: the tiles back in grid order.

    Example:
        >>> perm = torch.tensor([[2, 0, 1]])
        >>> unshuffle_tiles(shuffle_tiles(torch.tensor([[10, 11, 12]]), perm), perm)
        tensor([[10, 11, 12]])
    """
    return shuffle_tiles(shuffled, permutations.argsort(dim=1))
