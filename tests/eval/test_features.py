"""Feature extraction: eval mode, mode restoration, shapes/dtypes, per-image equivalence."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import selfsup.eval.features as features_module
from selfsup.eval.features import extract_features

MEAN, STD = 0.5, 0.25


def normalise(images: Tensor) -> Tensor:
    return (images.float() / 255.0 - MEAN) / STD


class SmallEncoder(nn.Module):
    """Conv-BN-ReLU-Dropout-pool: batch-dependent and random in train mode, not in eval."""

    def __init__(self, pooled_map: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pooled_map = pooled_map
        self.seen_training: list[bool] = []
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x: Tensor) -> Tensor:
        self.seen_training.append(self.training or self.bn.training or self.drop.training)
        out = self.pool(self.drop(torch.relu(self.bn(self.conv(x)))))  # [B, 6, 1, 1]
        return out if self.pooled_map else out.flatten(1)


def make_batches(sizes: list[int], seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(0, 256, (b, 3, 8, 8), generator=g, dtype=torch.uint8),
            torch.randint(0, 10, (b,), generator=g),
        )
        for b in sizes
    ]


def test_shapes_dtypes_and_partial_last_batch() -> None:
    encoder = SmallEncoder()
    batches = make_batches([4, 4, 3])
    features, labels = extract_features(encoder, batches, normalise)
    assert features.shape == (11, 6)
    assert features.dtype == torch.float32 and features.device.type == "cpu"
    assert labels.dtype == torch.int64 and labels.device.type == "cpu"
    assert torch.equal(labels, torch.cat([y for _, y in batches]))
    assert not features.requires_grad


def test_matches_per_image_eval_forward() -> None:
    torch.manual_seed(0)
    encoder = SmallEncoder()
    batches = make_batches([5, 2])
    features, _ = extract_features(encoder, batches, normalise)
    encoder.eval()
    with torch.no_grad():
        expected = torch.cat([encoder(normalise(img[None])) for imgs, _ in batches for img in imgs])
    # Eval mode: BN uses running statistics and dropout is off, so features do not depend on
    # the batch they were computed in.
    torch.testing.assert_close(features, expected)


def test_runs_in_eval_and_restores_training_flags() -> None:
    encoder = SmallEncoder()
    encoder.train()
    encoder.bn.eval()  # a deliberately frozen submodule must stay frozen afterwards
    extract_features(encoder, make_batches([2, 2]), normalise)
    assert encoder.seen_training == [False, False]
    assert encoder.training and encoder.conv.training and encoder.drop.training
    assert not encoder.bn.training

    encoder.eval()
    extract_features(encoder, make_batches([2]), normalise)
    assert not any(m.training for m in encoder.modules())


def test_restores_training_flags_on_error() -> None:
    encoder = SmallEncoder().train()

    def failing_batches():
        yield from make_batches([2])
        raise RuntimeError("loader broke")

    with pytest.raises(RuntimeError, match="loader broke"):
        extract_features(encoder, failing_batches(), normalise)
    assert all(m.training for m in encoder.modules())

    with pytest.raises(ValueError, match="labels"):
        extract_features(
            encoder, [(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(3))], normalise
        )
    assert all(m.training for m in encoder.modules())


def test_flattens_pooled_maps_and_casts_to_float32() -> None:
    encoder = SmallEncoder(pooled_map=True)
    features, _ = extract_features(encoder, make_batches([3]), normalise)
    assert features.shape == (3, 6)

    double = SmallEncoder().to(torch.float64)
    features, _ = extract_features(double, make_batches([3]), lambda x: normalise(x).double())
    assert features.dtype == torch.float32


def test_channels_last_gives_same_features() -> None:
    encoder = SmallEncoder()
    batches = make_batches([4, 1])
    plain, _ = extract_features(encoder, batches, normalise)
    cl, _ = extract_features(encoder, batches, normalise, channels_last=True)
    torch.testing.assert_close(cl, plain)


def test_host_flushes_do_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = SmallEncoder()
    batches = make_batches([3, 3, 2])
    whole, labels = extract_features(encoder, batches, normalise)
    monkeypatch.setattr(features_module, "_HOST_FLUSH_BYTES", 1)  # copy after every batch
    flushed, flushed_labels = extract_features(encoder, batches, normalise)
    torch.testing.assert_close(flushed, whole)
    assert torch.equal(flushed_labels, labels)


def test_features_are_usable_by_autograd() -> None:
    # Inference-mode tensors cannot be saved for backward; the returned ones must be ordinary.
    features, _ = extract_features(SmallEncoder(), make_batches([4]), normalise)
    assert not features.is_inference()
    weight = torch.randn(6, 2, requires_grad=True)
    (features @ weight).sum().backward()
    # d/dW sum(F W) = F^T 1: every column of the gradient is the column sums of the features.
    expected = features.sum(dim=0, keepdim=True).T.expand(6, 2)  # [6, 2]
    torch.testing.assert_close(weight.grad, expected)


def test_generator_is_consumed_once() -> None:
    batches = iter(make_batches([2, 3]))
    features, _ = extract_features(SmallEncoder(), batches, normalise)
    assert features.shape[0] == 5
    with pytest.raises(ValueError, match="no samples"):
        extract_features(SmallEncoder(), batches, normalise)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ((torch.zeros(2, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)), "images"),
        (
            (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2, 1, dtype=torch.int64)),
            "labels",
        ),
    ],
)
def test_bad_batches_raise(batch: tuple[Tensor, Tensor], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        extract_features(SmallEncoder(), [batch], normalise)


def test_bad_encoder_output_raises() -> None:
    class Scalar(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.mean()

    with pytest.raises(ValueError, match="encoder output"):
        extract_features(Scalar(), make_batches([2]), normalise)

    class Varying(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.flatten(1)[:, : x.shape[0]]

    with pytest.raises(ValueError, match="fixed output size"):
        extract_features(Varying(), make_batches([2, 3]), normalise)
