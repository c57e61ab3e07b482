"""SplitBatchNorm2d against per-split nn.BatchNorm2d, and the model conversion."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from selfsup.nn import SplitBatchNorm2d, convert_to_split_batchnorm


def randomised_bn(c: int, **kwargs: object) -> nn.BatchNorm2d:
    """A BatchNorm2d with non-trivial affine parameters and running statistics (float64)."""
    g = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm2d(c, **kwargs).double()  # type: ignore[arg-type]
    with torch.no_grad():
        if bn.affine:
            bn.weight.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
        if bn.track_running_stats:
            bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64))
            bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
    return bn


def split_from(bn: nn.BatchNorm2d, splits: int) -> SplitBatchNorm2d:
    out = SplitBatchNorm2d(
        bn.num_features,
        splits,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
    ).double()
    out.load_state_dict(bn.state_dict())
    return out


def inputs(n: int, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shift = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1)  # splits differ in mean
    return torch.randn(n, c, 3, 4, generator=g, dtype=torch.float64) * 2 + shift


@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_equals_batchnorm_on_each_split(momentum: float | None) -> None:
    c, splits, n = 3, 4, 8
    bn = randomised_bn(c, momentum=momentum)
    split_bn = split_from(bn, splits)
    # Reference: one nn.BatchNorm2d per split (split s = samples s, s + S, ...).
    refs = [copy.deepcopy(bn) for _ in range(splits)]
    for step in range(2):
        for ref in refs:  # every reference continues from the averaged statistics
            ref.running_mean.copy_(split_bn.running_mean)
            ref.running_var.copy_(split_bn.running_var)
        x = inputs(n, c, seed=step).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        y = split_bn(x)
        y_ref = torch.empty_like(y)
        for s, ref in enumerate(refs):
            y_ref[s::splits] = ref(x_ref[s::splits])
        torch.testing.assert_close(y, y_ref)
        # Running statistics: the mean of the per-split references'.
        mean_ref = torch.stack([r.running_mean for r in refs]).mean(0)
        var_ref = torch.stack([r.running_var for r in refs]).mean(0)
        torch.testing.assert_close(split_bn.running_mean, mean_ref)
        torch.testing.assert_close(split_bn.running_var, var_ref)
        assert int(split_bn.num_batches_tracked) == step + 1
    # Gradients: inputs per sample, shared affine parameters summed over the splits.
    w = torch.randn(n, c, 3, 4, dtype=torch.float64)
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    assert split_bn.weight.grad is not None
    torch.testing.assert_close(split_bn.weight.grad, sum(r.weight.grad for r in refs))
    torch.testing.assert_close(split_bn.bias.grad, sum(r.bias.grad for r in refs))


def test_split_statistics_differ_from_full_batch() -> None:
    bn = randomised_bn(2)
    x = inputs(8, 2, seed=5)
    assert not torch.allclose(split_from(bn, 2)(x), copy.deepcopy(bn)(x))  # the test can fail


def test_eval_and_single_split_equal_batchnorm() -> None:
    bn = randomised_bn(3)
    x = inputs(6, 3, seed=1)  # 6 is not a multiple of 4: eval does not split
    split_bn = split_from(bn, 4).eval()
    torch.testing.assert_close(split_bn(x), copy.deepcopy(bn).eval()(x))
    one = split_from(bn, 1)
    ref = copy.deepcopy(bn)
    torch.testing.assert_close(one(x), ref(x))
    torch.testing.assert_close(one.running_var, ref.running_var)


def test_without_running_stats_or_affine() -> None:
    bn = randomised_bn(2, affine=False, track_running_stats=False)
    split_bn = split_from(bn, 2)
    x = inputs(4, 2, seed=2)
    y_ref = torch.cat([bn(x[0::2]), bn(x[1::2])])
    torch.testing.assert_close(torch.cat([split_bn(x)[0::2], split_bn(x)[1::2]]), y_ref)
    # Eval without running statistics: BatchNorm2d's whole-batch statistics, not split.
    torch.testing.assert_close(split_bn.eval()(x), bn.eval()(x))


def test_bad_batch_and_splits_raise() -> None:
    with pytest.raises(ValueError, match="divisible by num_splits=4"):
        SplitBatchNorm2d(2, 4)(torch.randn(6, 2, 2, 2))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_splits must be a positive integer"):
            SplitBatchNorm2d(2, bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="num_splits must be a positive integer"):
            convert_to_split_batchnorm(nn.BatchNorm2d(2), bad)  # type: ignore[arg-type]


class CustomBN(nn.BatchNorm2d):
    """A subclass: must not be converted (it may carry its own semantics)."""


def test_conversion_keeps_weights_and_only_replaces_batchnorm2d() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), CustomBN(4)),
        nn.Flatten(),
        nn.BatchNorm1d(4 * 5 * 5),
    )
    with torch.no_grad():
        net(torch.randn(8, 1, 5, 5))  # non-trivial running statistics
    net[1].weight.data.uniform_(0.5, 1.5)
    reference = copy.deepcopy(net).eval()
    originals = {name: p for name, p in net.named_parameters()}
    keys_before = list(net.state_dict())
    out = convert_to_split_batchnorm(net, num_splits=2)
    assert out is net
    assert type(net[1]) is SplitBatchNorm2d and type(net[2][1]) is SplitBatchNorm2d
    assert type(net[2][2]) is CustomBN and type(net[4]) is nn.BatchNorm1d
    assert net[1].num_splits == 2 and net[1].training
    for name, p in net.named_parameters():  # the very same tensors
        assert p is originals[name], name
    assert list(net.state_dict()) == keys_before  # checkpoints stay compatible
    for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.randn(4, 1, 5, 5)
    torch.testing.assert_close(net.eval()(x), reference(x))  # eval: unchanged function
    root = nn.BatchNorm2d(3).eval()
    converted = convert_to_split_batchnorm(root, 3)
    assert isinstance(converted, SplitBatchNorm2d) and not converted.training
    assert converted.running_var is root.running_var
