import math

import numpy as np
import pytest
import torch

from selfsup.backbones import vit_blocks
from selfsup.backbones.vit import (
    VIT_PRESETS,
    VisionTransformer,
    build_vit,
    interpolate_pos_embed,
    sincos_pos_embed_2d,
)
from selfsup.backbones.vit_blocks import attend, explicit_attention


def _numpy_sincos(dim: int, grid: int) -> np.ndarray:
    """Element by element: columns in the first half of the channels, rows in the second."""
    quarter = dim // 4
    out = np.zeros((grid * grid, dim))
    for i in range(grid):  # row
        for j in range(grid):  # column
            for k in range(quarter):
                w = 10000.0 ** (-k / quarter)
                t = i * grid + j
                out[t, k] = math.sin(j * w)
                out[t, quarter + k] = math.cos(j * w)
                out[t, 2 * quarter + k] = math.sin(i * w)
                out[t, 3 * quarter + k] = math.cos(i * w)
    return out


def _tiny_vit(pool="cls", size=28) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(size, 4, in_channels=1, embed_dim=32, depth=2, num_heads=2, pool=pool)


@pytest.mark.parametrize(("dim", "grid"), [(16, 5), (32, 7)])
def test_sincos_pos_embed_matches_numpy_reference(dim, grid):
    pe = sincos_pos_embed_2d(dim, grid)
    assert pe.dtype == torch.float32 and pe.shape == (grid * grid, dim)
    np.testing.assert_allclose(pe.numpy(), _numpy_sincos(dim, grid), atol=1e-6)
    with_cls = sincos_pos_embed_2d(dim, grid, cls_token=True)
    assert with_cls.shape == (1 + grid * grid, dim)
    assert torch.equal(with_cls[0], torch.zeros(dim))
    assert torch.equal(with_cls[1:], pe)
    # Hand values: row 0, column 1, first channel is sin(1 * 10000^0); its row half is sin(0), cos(0).
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-6)
    assert pe[1, dim // 2].item() == 0.0 and pe[1, 3 * dim // 4].item() == 1.0


def test_sincos_pos_embed_refuses_widths_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(18, 4)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_shapes_on_28px_with_patch_4(pool):
    vit = _tiny_vit(pool).eval()
    x = torch.randn(3, 1, 28, 28)
    tokens = vit.patch_tokens(x)
    assert tokens.shape == (3, 49, 32)
    assert vit.forward_tokens(tokens[:, :10]).shape == (3, 11, 32)  # any subset of tokens
    out = vit(x)
    assert out.shape == (3, vit.feature_dim) == (3, 32)
    full = vit.forward_tokens(tokens)  # [3, 50, 32]
    expected = full[:, 0] if pool == "cls" else full[:, 1:].mean(dim=1)
    torch.testing.assert_close(out, expected)


def test_patch_tokens_are_a_linear_patch_embedding_plus_fixed_positions():
    vit = _tiny_vit()
    x = torch.randn(2, 1, 28, 28)
    conv = vit.patch_embed.proj
    # Patch (row 1, column 2) by hand: the flattened pixels through the conv's weights.
    patch = x[:, :, 4:8, 8:12].reshape(2, -1)  # [2, 16]
    by_hand = patch @ conv.weight.reshape(32, -1).T + conv.bias
    pos = torch.from_numpy(_numpy_sincos(32, 7)).float()
    torch.testing.assert_close(
        vit.patch_tokens(x)[:, 1 * 7 + 2], by_hand + pos[9], atol=1e-5, rtol=0
    )
    assert "pos_embed" in dict(vit.named_buffers())
    assert all(name != "pos_embed" for name, _ in vit.named_parameters())  # never optimised


def test_other_image_sizes_use_a_bicubically_resized_position_grid():
    vit = _tiny_vit().eval()
    x = torch.randn(2, 1, 16, 20)  # 4 x 5 patches instead of 7 x 7
    assert vit(x).shape == (2, 32)
    tokens = vit.patch_tokens(x)
    assert tokens.shape == (2, 20, 32)
    pos = vit.pos_embed[0, 1:].reshape(1, 7, 7, 32).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(pos, size=(4, 5), mode="bicubic", align_corners=False)
    expected = vit.patch_embed(x) + resized.permute(0, 2, 3, 1).reshape(1, 20, 32)
    torch.testing.assert_close(tokens, expected)
    with pytest.raises(ValueError, match="not divisible by patch_size=4"):
        vit(torch.randn(1, 1, 30, 28))


def test_interpolate_pos_embed_invariants():
    pe = sincos_pos_embed_2d(16, 6, cls_token=True)[None]  # [1, 37, 16]
    assert interpolate_pos_embed(pe, (6, 6)) is pe  # same grid: untouched
    out = interpolate_pos_embed(pe, (3, 5))
    assert out.shape == (1, 16, 16)
    assert torch.equal(out[:, 0], pe[:, 0])  # the cls row is kept
    # Rows and columns are not mixed up: transposing commutes with resizing.
    grid = pe[0, 1:].reshape(6, 6, 16)
    transposed = torch.cat([pe[:, :1], grid.transpose(0, 1).reshape(1, 36, 16)], dim=1)
    back = interpolate_pos_embed(transposed, (5, 3))[0, 1:].reshape(5, 3, 16).transpose(0, 1)
    torch.testing.assert_close(back, out[0, 1:].reshape(3, 5, 16))
    # Bicubic weights sum to one: a constant embedding stays constant.
    const = torch.full((1, 1 + 36, 4), 0.25)
    torch.testing.assert_close(interpolate_pos_embed(const, (9, 2)), torch.full((1, 19, 4), 0.25))
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(pe[:, :-1], (3, 3))


def test_last_attention_is_the_attention_the_last_block_applies():
    vit = _tiny_vit().eval()
    x = torch.randn(2, 1, 28, 28)
    attn = vit.last_attention(x)
    assert attn.shape == (2, 2, 50, 50)  # [B, heads, 1 + L, 1 + L]
    torch.testing.assert_close(attn.sum(dim=-1), torch.ones(2, 2, 50))
    # Rebuild the last block's attention output from these weights and compare.
    cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(2, -1, -1)
    tokens = vit.blocks[0](torch.cat([cls, vit.patch_tokens(x)], dim=1))  # [2, 50, 32]
    last = vit.blocks[1]
    h = last.norm1(tokens)
    v = last.attn.qkv(h).reshape(2, 50, 3, 2, 16)[:, :, 2].transpose(1, 2)  # [B, heads, N, 16]
    mixed = (attn @ v).transpose(1, 2).reshape(2, 50, 32)
    torch.testing.assert_close(last.attn.proj(mixed), last.attn(h), atol=1e-5, rtol=1e-4)


def test_matches_timm_vision_transformer_given_the_same_weights():
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    torch.manual_seed(0)
    theirs = timm_vit.VisionTransformer(
        img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2, num_classes=0
    ).eval()
    ours = _tiny_vit().eval()
    ours.load_state_dict(theirs.state_dict())  # strict: same names and shapes
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-4)


def test_build_vit_presets_and_errors():
    vit = build_vit("vit_tiny", image_size=32, patch_size=4, in_channels=3, pool="mean")
    assert (
        (vit.embed_dim, len(vit.blocks), vit.num_heads) == VIT_PRESETS["vit_tiny"] == (192, 12, 3)
    )
    assert vit.pool == "mean" and vit.num_patches == 64
    micro = build_vit("vit_micro", 28, 4, 1)
    assert micro(torch.randn(2, 1, 28, 28)).shape == (2, 128)
    with pytest.raises(ValueError, match="unknown ViT 'vit_huge'"):
        build_vit("vit_huge", 224, 16, 3)
    with pytest.raises(ValueError, match="must divide image_size"):
        build_vit("vit_micro", 30, 4, 1)
    with pytest.raises(ValueError, match="num_heads"):
        VisionTransformer(28, 4, 1, embed_dim=32, depth=1, num_heads=3)
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        micro(torch.randn(2, 3, 28, 28))


def _reference_attention(q, k, v):
    """Attention written out per (sample, head) in float64, as the equation reads."""
    out = torch.empty_like(q, dtype=torch.float64)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            scores = q[b, h].double() @ k[b, h].double().T / math.sqrt(q.shape[-1])
            out[b, h] = scores.softmax(dim=-1) @ v[b, h].double()
    return out


def test_explicit_attention_is_scaled_dot_product_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, requires_grad=True) for _ in range(3))
    ours = explicit_attention(q, k, v)
    torch.testing.assert_close(ours.double(), _reference_attention(q, k, v), atol=1e-5, rtol=1e-5)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(ours, fused, atol=1e-5, rtol=1e-5)
    # Same gradients as the fused kernel.
    weights = torch.randn_like(ours)
    ours_grads = torch.autograd.grad((ours * weights).sum(), (q, k, v))
    fused_grads = torch.autograd.grad((fused * weights).sum(), (q, k, v))
    for a, b in zip(ours_grads, fused_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_attend_runs_short_bf16_sequences_on_the_cpu_as_explicit_matmuls(monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 10, 8) for _ in range(3))
    fused_calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        fused_calls.append(args[0].shape[-2])
        return original(*args, **kwargs)

    monkeypatch.setattr(vit_blocks.F, "scaled_dot_product_attention", counting)
    q16, k16, v16 = (t.bfloat16() for t in (q, k, v))
    out = attend(q16, k16, v16)
    assert fused_calls == [] and out.dtype == torch.bfloat16
    assert torch.equal(out, explicit_attention(q16, k16, v16))
    # The bf16 result is the fp64 one up to bf16 rounding.
    torch.testing.assert_close(out.double(), _reference_attention(q, k, v), atol=3e-2, rtol=3e-2)
    attend(q, k, v)  # fp32: the fused kernel
    long = torch.randn(1, 1, vit_blocks.EXPLICIT_ATTENTION_MAX_TOKENS + 1, 8).bfloat16()
    attend(long, long, long)  # too long for N x N scores: the fused kernel
    assert fused_calls == [10, vit_blocks.EXPLICIT_ATTENTION_MAX_TOKENS + 1]


def test_a_bf16_vit_under_autocast_matches_its_fp32_forward():
    vit = _tiny_vit().eval()
    x = torch.randn(4, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = vit(x)
    torch.testing.assert_close(low.float(), vit(x), atol=0.1, rtol=0.05)
