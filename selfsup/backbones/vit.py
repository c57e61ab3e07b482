r"""Vision Transformer (Dosovitskiy et al. 2021) in the layout of MAE and DINO.

An image ``[B, C, H, W]`` is cut into ``L = (H/p)(W/p)`` patches of ``p x p`` pixels, each
linearly embedded (a stride-``p`` convolution), and a fixed 2-D sin-cos position embedding is
added. A learnable ``cls`` token is prepended and the sequence runs through pre-norm
Transformer blocks

.. math::

    x \leftarrow x + \mathrm{MHSA}(\mathrm{LN}(x)), \qquad
    x \leftarrow x + \mathrm{MLP}(\mathrm{LN}(x))

and a final LayerNorm. The forward pass is split so that masked image modelling can run the
encoder on a subset of the tokens: :meth:`VisionTransformer.patch_tokens` (embedding + position),
then any selection of tokens, then :meth:`VisionTransformer.forward_tokens` (cls, blocks, norm).

Module and parameter names (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.i.norm1``, ``blocks.i.attn.qkv``, ``blocks.i.attn.proj``, ``blocks.i.norm2``,
``blocks.i.mlp.fc1``, ``blocks.i.mlp.fc2``, ``norm``) and their shapes follow timm and the
official MAE code, so their ViT encoder weights load with ``load_state_dict``.

Differences from the reference:
    * ``pos_embed`` is a registered buffer (official MAE: a frozen ``nn.Parameter``); the state
      dict key and shape are the same, and it is never handed to an optimiser.
    * Inputs whose patch grid differs from the one built for get the grid part of
      ``pos_embed`` resized bicubically on the fly (DINO's ``interpolate_pos_encoding``; MAE
      does it once when loading a checkpoint for a new resolution).
    * ``pool="mean"`` averages the patch tokens *after* the final LayerNorm; MAE's fine-tuning
      model instead drops that norm and puts a new LayerNorm after the average.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.backbones.vit_blocks import (
    _LN_EPS,
    Attention,
    Block,
    Mlp,
    drop_path_rates,
    init_transformer_weights,
)

__all__ = [
    "VIT_PRESETS",
    "Attention",
    "Block",
    "Mlp",
    "PatchEmbed",
    "VisionTransformer",
    "build_vit",
    "init_transformer_weights",
    "interpolate_pos_embed",
    "sincos_pos_embed_2d",
]

# name -> (embed_dim, depth, num_heads). vit_micro is a CPU-sized model for 28-32 px images
# with patch 4 (49-64 tokens); the others are the DeiT/ViT sizes.
VIT_PRESETS: dict[str, tuple[int, int, int]] = {
    "vit_micro": (128, 6, 4),
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
}


def sincos_pos_embed_2d(embed_dim: int, grid_size: int, cls_token: bool = False) -> Tensor:
    r"""Fixed 2-D sin-cos position embedding of a ``grid_size x grid_size`` patch grid.

    The patch in row ``i``, column ``j`` (token index ``i * grid_size + j``) gets

    .. math::

        [\sin(j\omega), \cos(j\omega), \sin(i\omega), \cos(i\omega)], \qquad
        \omega_k = 10000^{-k / (D/4)}, \; k = 0 \dots D/4 - 1

    so the first half of the ``D = embed_dim`` channels encodes the column and the second half
    the row (the layout of MAE's ``get_2d_sincos_pos_embed``). ``cls_token=True`` prepends a
    row of zeros for the cls token.

    Returns:
        float32 ``[grid_size**2, embed_dim]`` (``[1 + grid_size**2, embed_dim]`` with cls).

    Example:
        >>> pe = sincos_pos_embed_2d(8, 3)
        >>> pe.shape
        torch.Size([9, 8])
        >>> pe[1, :2]  # row 0, column 1: sin(1), sin(1 / 100)
        tensor([0.8415, 0.0100])
    """
    if embed_dim < 4 or embed_dim % 4 != 0:
        raise ValueError(
            f"a 2-D sin-cos position embedding needs embed_dim divisible by 4 (sin and cos of "
            f"rows and columns), got {embed_dim}; use e.g. {max(4, embed_dim // 4 * 4)}"
        )
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1 patches per side, got {grid_size}")
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [D/4]
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # [g, g] each
    angle_col = cols.reshape(-1, 1) * omega  # [g*g, D/4]
    angle_row = rows.reshape(-1, 1) * omega  # [g*g, D/4]
    pe = torch.cat(
        [angle_col.sin(), angle_col.cos(), angle_row.sin(), angle_row.cos()], dim=1
    ).float()  # [g*g, D]
    if cls_token:
        pe = torch.cat([pe.new_zeros(1, embed_dim), pe])  # [1 + g*g, D]
    return pe


def interpolate_pos_embed(
    pos_embed: Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1
) -> Tensor:
    """Resize the patch part of a square-grid position embedding to ``grid = (rows, cols)``.

    ``pos_embed`` is ``[1, num_prefix_tokens + g*g, D]``; the prefix (cls) rows are kept, the
    ``g x g`` grid is resized bicubically (``align_corners=False``, as DeiT, DINO and MAE do).
    The input is returned unchanged when the grid already matches.

    Returns:
        ``[1, num_prefix_tokens + rows*cols, D]``.

    Example:
        >>> pe = sincos_pos_embed_2d(16, 7, cls_token=True)[None]  # [1, 50, 16]
        >>> interpolate_pos_embed(pe, (4, 5)).shape
        torch.Size([1, 21, 16])
    """
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ValueError(
            f"pos_embed must be [1, prefix + g*g, D], got {tuple(pos_embed.shape)}; add the "
            "leading batch dimension with pos_embed[None]"
        )
    rows, cols = grid
    if rows < 1 or cols < 1:
        raise ValueError(f"target grid must have >= 1 row and column, got {grid}")
    num_patches = pos_embed.shape[1] - num_prefix_tokens
    side = math.isqrt(max(num_patches, 0))
    if num_patches < 1 or side * side != num_patches:
        raise ValueError(
            f"pos_embed has {num_patches} patch positions after {num_prefix_tokens} prefix "
            "tokens, not a square grid; check num_prefix_tokens (1 for a cls token)"
        )
    if (rows, cols) == (side, side):
        return pos_embed
    prefix, patches = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = pos_embed.shape[2]
    patches = patches.reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, g, g]
    patches = F.interpolate(patches, size=(rows, cols), mode="bicubic", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)  # [1, rows*cols, D]
    return torch.cat([prefix, patches], dim=1)


class PatchEmbed(nn.Module):
    """Linear embedding of non-overlapping ``p x p`` patches as a stride-``p`` convolution."""

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, L, D], row-major patches


class VisionTransformer(nn.Module):
    """ViT trunk without a classifier: ``forward`` returns ``[B, feature_dim]`` features.

    Args:
        image_size: side of the square images it is built for (the position-embedding grid is
            ``image_size / patch_size``); other sizes divisible by ``patch_size`` also work.
        patch_size: side of a patch in pixels; must divide ``image_size``.
        in_channels: image channels (1 for grey, 3 for RGB).
        embed_dim: token width ``D`` (divisible by 4 and by ``num_heads``).
        depth: number of Transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width / ``D``.
        pool: ``"cls"`` -- features are the final-normed cls token (MAE linear probe, DINO);
            ``"mean"`` -- the average of the final-normed patch tokens.
        drop_path_rate: stochastic depth of the last block, rising linearly from 0 in the
            first (DINO's student: 0.1); active in training mode only.

    Example:
        >>> vit = VisionTransformer(28, 4, in_channels=1, embed_dim=32, depth=2, num_heads=2)
        >>> vit(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 32])
        >>> vit.patch_tokens(torch.randn(2, 1, 28, 28)).shape  # 7 x 7 patches
        torch.Size([2, 49, 32])
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_channels: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        pool: Literal["cls", "mean"] = "cls",
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if patch_size < 1 or image_size < patch_size or image_size % patch_size != 0:
            raise ValueError(
                f"patch_size={patch_size} must divide image_size={image_size}; e.g. patch 4 "
                "for 28 or 32 px images, patch 16 for 224 px"
            )
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1 (1 grey, 3 RGB), got {in_channels}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1 Transformer block, got {depth}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.pool = pool
        self.feature_dim = embed_dim
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2

        self.patch_embed = PatchEmbed(patch_size, in_channels, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed sin-cos embedding; row 0 (all zeros) belongs to the cls token.
        pos = sincos_pos_embed_2d(embed_dim, self.grid_size, cls_token=True)
        self.register_buffer("pos_embed", pos[None])  # [1, 1 + L, D]
        self.pos_embed: Tensor
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, rate)
            for rate in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=_LN_EPS)

        init_transformer_weights(self)
        # The patch embedding is a Linear on flattened patches: initialise it as one.
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)

    def _grid(self, x: Tensor) -> tuple[int, int]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images [B, {self.in_channels}, H, W], got {tuple(x.shape)}; build the "
                "ViT with in_channels matching the data"
            )
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image size {height}x{width} is not divisible by patch_size={self.patch_size}; "
                f"resize or crop to a multiple of {self.patch_size}"
            )
        return height // self.patch_size, width // self.patch_size

    def patch_tokens(self, x: Tensor) -> Tensor:
        """Patch embeddings plus their fixed position embedding: ``[B, L, D]``, no cls token.

        Patches are in row-major order (``index = row * cols + col``), like ``patchify``.
        """
        rows, cols = self._grid(x)
        tokens = self.patch_embed(x)  # [B, L, D]
        pos = interpolate_pos_embed(self.pos_embed, (rows, cols))  # [1, 1 + L, D]
        return tokens + pos[:, 1:]

    def _with_cls(self, tokens: Tensor) -> Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls.to(tokens.dtype), tokens], dim=1)  # [B, 1 + L', D]

    def forward_tokens(self, tokens: Tensor) -> Tensor:
        """Prepend the cls token to any subset of patch tokens ``[B, L', D]``, run the blocks and
        the final norm: ``[B, 1 + L', D]``."""
        x = self._with_cls(tokens)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        """All patches, no masking: the cls token (``pool="cls"``) or the mean of the patch tokens
        (``pool="mean"``), both taken after the final LayerNorm. ``[B, C, H, W] -> [B, D]``."""
        x = self.forward_tokens(self.patch_tokens(x))  # [B, 1 + L, D]
        return x[:, 0] if self.pool == "cls" else x[:, 1:].mean(dim=1)

    def last_attention(self, x: Tensor) -> Tensor:
        """Self-attention probabilities of the last block, ``[B, heads, 1 + L, 1 + L]``.

        Token 0 is the cls token; ``attn[:, h, 0, 1:]`` reshaped to the patch grid is the map
        DINO shows (what the cls token looks at).
        """
        tokens = self._with_cls(self.patch_tokens(x))
        for block in self.blocks[:-1]:
            tokens = block(tokens)
        last: Block = self.blocks[-1]  # type: ignore[assignment]
        return last.attention_weights(tokens)


def build_vit(
    name: str,
    image_size: int,
    patch_size: int,
    in_channels: int,
    pool: Literal["cls", "mean"] = "cls",
    drop_path_rate: float = 0.0,
) -> VisionTransformer:
    """A ViT preset from :data:`VIT_PRESETS` (``vit_micro``, ``vit_tiny``, ``vit_small``, ``vit_base``).

    Example:
        >>> vit = build_vit("vit_micro", image_size=32, patch_size=4, in_channels=3)
        >>> vit.feature_dim, len(vit.blocks), vit.num_patches
        (128, 6, 64)
    """
    if name not in VIT_PRESETS:
        raise ValueError(f"unknown ViT {name!r}; choose one of {', '.join(VIT_PRESETS)}")
    embed_dim, depth, num_heads = VIT_PRESETS[name]
    return VisionTransformer(
        image_size=image_size,
        patch_size=patch_size,
        in_channels=in_channels,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        pool=pool,
        drop_path_rate=drop_path_rate,
    )
