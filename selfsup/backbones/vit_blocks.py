"""The parts of a ViT: multi-head self-attention, the MLP, the pre-norm block with stochastic
depth, and MAE's weight initialisation (used by the ViT trunk and by MAE's decoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

__all__ = [
    "Attention",
    "Block",
    "Mlp",
    "attend",
    "attention_probabilities",
    "drop_path_rates",
    "explicit_attention",
    "init_transformer_weights",
]

_LN_EPS = 1e-6  # LayerNorm epsilon of timm / MAE / DINO ViTs

# Longest sequence for which attention in bf16/fp16 on the CPU runs as explicit matmuls: PyTorch's
# fused CPU kernel (flash attention) is 2-7x slower there for forward + backward at 10-200 tokens
# and level with it at 577-1025 (bench/RESULTS.md, "the ViT step"); past this the N x N scores
# would cost memory for nothing.
EXPLICIT_ATTENTION_MAX_TOKENS = 1024


def attention_probabilities(q: Tensor, k: Tensor) -> Tensor:
    r""":math:`\mathrm{softmax}(QK^\top/\sqrt{d})` in fp32: ``[B, heads, N, N]``, rows sum to 1."""
    scores = (q @ k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5
    return scores.softmax(dim=-1)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    r""":math:`\mathrm{softmax}(QK^\top/\sqrt{d})V` as two batched matmuls, the softmax in fp32.

    ``q, k, v``: ``[B, heads, N, head_dim]``; returns ``[B, heads, N, head_dim]`` in ``v``'s dtype.
    The same function as ``F.scaled_dot_product_attention(q, k, v)`` (no mask, no dropout).
    """
    return attention_probabilities(q, k).to(v.dtype) @ v


def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Scaled dot-product attention by the fastest kernel for the device, dtype and length.

    On the CPU in bf16/fp16 with at most :data:`EXPLICIT_ATTENTION_MAX_TOKENS` tokens:
    :func:`explicit_attention`; everywhere else (GPUs, fp32, long sequences) PyTorch's fused
    ``F.scaled_dot_product_attention``, which on a GPU never materialises the scores.
    """
    if (
        q.device.type == "cpu"
        and q.dtype in (torch.bfloat16, torch.float16)
        and q.shape[-2] <= EXPLICIT_ATTENTION_MAX_TOKENS
    ):
        return explicit_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def drop_path_rates(max_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rate per block, rising linearly from 0 to ``max_rate`` (DINO, timm).

    Example:
        >>> drop_path_rates(0.1, 3)
        [0.0, 0.05, 0.1]
    """
    if not 0.0 <= max_rate < 1.0:
        raise ValueError(f"drop path rate must be in [0, 1), got {max_rate}; DINO uses 0.1")
    if depth == 1:
        return [0.0]
    return [max_rate * i / (depth - 1) for i in range(depth)]


class Attention(nn.Module):
    r"""Multi-head self-attention :math:`\mathrm{softmax}(QK^\top/\sqrt{d})V` with one ``qkv`` Linear."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads != 0:
            raise ValueError(
                f"embedding width {dim} must split evenly over num_heads={num_heads}; choose "
                "num_heads dividing the width (e.g. width 64 x heads)"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, N, head_dim] each
        return q, k, v

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self._qkv(x)
        out = attend(q, k, v)  # [B, heads, N, head_dim]
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))

    def attention_weights(self, x: Tensor) -> Tensor:
        """Attention probabilities ``[B, heads, N, N]`` (rows sum to 1) for tokens ``x [B, N, D]``."""
        q, k, _ = self._qkv(x)
        return attention_probabilities(q, k)


class Mlp(nn.Module):
    """``Linear(dim, hidden) - GELU - Linear(hidden, dim)``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + drop(attn(norm1(x)))``, then ``x + drop(mlp(norm2(x)))``.

    ``drop_path`` is the stochastic-depth rate: in training, each sample's residual branch is
    dropped with this probability (and the kept ones scaled by ``1 / (1 - p)``); identity in
    eval mode and at 0.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0 (hidden width / width), got {mlp_ratio}")
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # Per-sample residual dropping; no parameters, so state dicts are unchanged.
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def attention_weights(self, x: Tensor) -> Tensor:
        """This block's attention probabilities ``[B, heads, N, N]`` for its input ``x``."""
        return self.attn.attention_weights(self.norm1(x))


def init_transformer_weights(module: nn.Module) -> None:
    """MAE's initialisation: Xavier-uniform Linear weights, zero biases, LayerNorm 1 / 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
