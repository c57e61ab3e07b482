"""MLP builder and SimCLR projector presets: layer structure, shapes, BatchNorm variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfsup.nn import ScaleOnlyBatchNorm1d, mlp, simclr_projector


def layout(module: nn.Sequential) -> list[str]:
    """Compact structure: 'Linear(4,8,bias)', 'BN(8,affine)', 'ReLU'..."""
    out = []
    for m in module:
        if isinstance(m, nn.Linear):
            bias = "bias" if m.bias is not None else "nobias"
            out.append(f"Linear({m.in_features},{m.out_features},{bias})")
        elif isinstance(m, ScaleOnlyBatchNorm1d):
            out.append(f"BN({m.num_features},scale)")
        elif isinstance(m, nn.BatchNorm1d):
            out.append(f"BN({m.num_features},{'affine' if m.affine else 'plain'})")
        else:
            out.append(type(m).__name__)
    return out


def test_mlp_default_two_layers() -> None:
    head = mlp(16, 32, 8)
    assert layout(head) == ["Linear(16,32,nobias)", "BN(32,affine)", "ReLU", "Linear(32,8,bias)"]
    assert head(torch.randn(5, 16)).shape == (5, 8)


def test_mlp_three_layers_last_bn_gelu() -> None:
    head = mlp(16, 32, 8, num_layers=3, last_batch_norm=True, activation=nn.GELU)
    assert layout(head) == [
        "Linear(16,32,nobias)",
        "BN(32,affine)",
        "GELU",
        "Linear(32,32,nobias)",
        "BN(32,affine)",
        "GELU",
        "Linear(32,8,nobias)",
        "BN(8,affine)",
    ]


def test_mlp_without_batch_norm_keeps_biases() -> None:
    head = mlp(6, 10, 4, num_layers=3, batch_norm=False)
    assert layout(head) == [
        "Linear(6,10,bias)",
        "ReLU",
        "Linear(10,10,bias)",
        "ReLU",
        "Linear(10,4,bias)",
    ]


@pytest.mark.parametrize("bias", [True, False])
def test_mlp_explicit_bias_overrides_rule(bias: bool) -> None:
    head = mlp(6, 10, 4, num_layers=2, last_batch_norm=True, bias=bias)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [m.bias is not None for m in linears] == [bias, bias]


def test_mlp_single_layer_is_one_linear() -> None:
    head = mlp(6, 999, 4, num_layers=1)
    assert layout(head) == ["Linear(6,4,bias)"]


@pytest.mark.parametrize(
    ("affine", "expected"),
    [(True, "BN(4,affine)"), (False, "BN(4,plain)"), ("scale", "BN(4,scale)")],
)
def test_mlp_last_batch_norm_affine_variants(affine: bool | str, expected: str) -> None:
    head = mlp(6, 8, 4, last_batch_norm=True, last_batch_norm_affine=affine)  # type: ignore[arg-type]
    assert layout(head)[-1] == expected


def test_mlp_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        mlp(4, 4, 4, num_layers=0)
    with pytest.raises(ValueError, match="out_dim"):
        mlp(4, 4, 0)
    with pytest.raises(ValueError, match="'scale'"):
        mlp(4, 4, 4, last_batch_norm=True, last_batch_norm_affine="shift")  # type: ignore[arg-type]


def test_scale_only_batch_norm_matches_formula() -> None:
    torch.manual_seed(0)
    bn = ScaleOnlyBatchNorm1d(3)
    assert bn.bias is None and "bias" not in bn.state_dict()
    assert [name for name, _ in bn.named_parameters()] == ["weight"]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
    x = torch.randn(10, 3) * 3 + 1
    expected = bn.weight * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(bn(x), expected)
    # No shift: the normalised output has zero mean per feature whatever the scale.
    torch.testing.assert_close(bn(x).mean(0), torch.zeros(3), atol=1e-6, rtol=0)
    bn.reset_parameters()
    torch.testing.assert_close(bn.weight.detach(), torch.ones(3))
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(bn))
    assert sync[0].bias is None and sync[0].weight is not None


def test_simclr_v1_is_paper_head() -> None:
    head = simclr_projector(64, "v1")
    assert layout(head) == ["Linear(64,64,bias)", "ReLU", "Linear(64,128,bias)"]
    head = simclr_projector(64, "v1", hidden_dim=256, out_dim=32)
    assert layout(head) == ["Linear(64,256,bias)", "ReLU", "Linear(256,32,bias)"]
    assert head(torch.randn(3, 64)).shape == (3, 32)


def test_simclr_v2_follows_official_code() -> None:
    head = simclr_projector(64)
    assert layout(head) == [
        "Linear(64,64,nobias)",
        "BN(64,affine)",
        "ReLU",
        "Linear(64,64,nobias)",
        "BN(64,affine)",
        "ReLU",
        "Linear(64,128,nobias)",
        "BN(128,scale)",
    ]
    head = simclr_projector(2048, "v2", hidden_dim=512, out_dim=64)
    assert head(torch.randn(4, 2048)).shape == (4, 64)
    # Parameters: three weight matrices, two BN (gamma, beta) pairs, one last gamma.
    expected = 2048 * 512 + 512 * 512 + 512 * 64 + 2 * (2 * 512) + 64
    assert sum(p.numel() for p in head.parameters()) == expected


def test_simclr_projector_rejects_unknown_version() -> None:
    with pytest.raises(ValueError, match="'v1' or 'v2'"):
        simclr_projector(64, "v3")  # type: ignore[arg-type]
