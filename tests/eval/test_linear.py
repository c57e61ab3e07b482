"""Linear probe: learns separable data, stays at chance on noise, never selects on the test split."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import selfsup.eval.linear as linear_module
from selfsup.eval.linear import LinearProbeResult, _stratified_split, linear_probe

FAST = {"epochs": 10, "batch_size": 128}


def blobs(
    seed: int, n: int, num_classes: int = 3, dim: int = 8, spread: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian blobs around fixed, well separated centers (same centers for every seed)."""
    centers = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 4
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return centers[labels] + spread * torch.randn(n, dim, generator=g), labels


def test_linearly_separable_data_is_learned_with_and_without_batch_norm() -> None:
    x, y = blobs(0, 600)
    xt, yt = blobs(1, 300)
    # Offset and scale the features: standardisation must make this irrelevant.
    result = linear_probe(x * 50 + 100, y, xt * 50 + 100, yt, 3, **FAST)
    assert isinstance(result, LinearProbeResult)
    assert result.test_accuracy >= 0.99
    assert result.val_accuracy >= 0.99
    assert result.epochs == FAST["epochs"]

    with_bn = linear_probe(x * 50 + 100, y, xt * 50 + 100, yt, 3, batch_norm=True, **FAST)
    assert with_bn.test_accuracy >= 0.99
    # A different head trains a different classifier from the same seed.
    assert [h["train_loss"] for h in with_bn.history] != [h["train_loss"] for h in result.history]


def test_random_labels_give_chance_accuracy() -> None:
    g = torch.Generator().manual_seed(0)
    x, xt = torch.randn(800, 16, generator=g), torch.randn(2000, 16, generator=g)
    y, yt = torch.randint(0, 4, (800,), generator=g), torch.randint(0, 4, (2000,), generator=g)
    result = linear_probe(x, y, xt, yt, 4, **FAST)
    assert 0.18 < result.test_accuracy < 0.32  # chance is 0.25; sd of the estimate ~0.01


def test_lr_is_selected_on_validation_only() -> None:
    x, y = blobs(0, 600, spread=2.0)
    xt, yt = blobs(1, 300, spread=2.0)
    lrs = (1e-7, 0.05, 0.5)
    result = linear_probe(x, y, xt, yt, 3, lrs=lrs, **FAST)

    assert [h["lr"] for h in result.history] == list(lrs)
    best = max(result.history, key=lambda h: h["val_accuracy"])
    assert result.lr == best["lr"] != 1e-7  # an lr that barely moves the weights loses on val
    assert result.val_accuracy == best["val_accuracy"]

    # Garbage test labels and features: selection and validation numbers must not move.
    g = torch.Generator().manual_seed(9)
    garbage = linear_probe(
        x, y, torch.randn(50, 8, generator=g), torch.randint(0, 3, (50,), generator=g), 3,
        lrs=lrs, **FAST,
    )  # fmt: skip
    assert garbage.lr == result.lr
    assert garbage.history == result.history
    assert garbage.val_accuracy == result.val_accuracy
    assert garbage.test_accuracy != result.test_accuracy


def test_test_split_is_scored_once_after_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    scored: list[int] = []
    original = linear_module._accuracy

    def spy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        scored.append(x.shape[0])
        return original(model, x, y)

    monkeypatch.setattr(linear_module, "_accuracy", spy)
    x, y = blobs(0, 600)
    xt, yt = blobs(1, 77)  # a size no validation split here has (it holds ~10% of 600)
    linear_probe(x, y, xt, yt, 3, lrs=(0.01, 0.1), **FAST)
    # One validation score per lr, then the test split, once, at the end.
    assert len(scored) == 3 and scored[-1] == 77
    assert scored[0] == scored[1] and abs(scored[0] - 60) <= 2


def test_standardisation_uses_training_statistics_only() -> None:
    x, y = blobs(0, 600)
    xt, yt = blobs(1, 300)
    # Shifting only the test features breaks a probe normalised with training statistics; one
    # that (wrongly) re-normalised the test split would not notice the shift.
    shifted = linear_probe(x, y, xt + 40.0, yt, 3, **FAST)
    assert shifted.test_accuracy < 0.7


def test_reproducible_for_a_seed() -> None:
    x, y = blobs(0, 300, spread=3.0)
    xt, yt = blobs(1, 100, spread=3.0)
    a = linear_probe(x, y, xt, yt, 3, seed=4, **FAST)
    b = linear_probe(x, y, xt, yt, 3, seed=4, **FAST)
    c = linear_probe(x, y, xt, yt, 3, seed=5, **FAST)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    assert a.history != c.history


def test_batch_larger_than_train_and_weight_decay() -> None:
    x, y = blobs(0, 100)
    xt, yt = blobs(1, 50)
    result = linear_probe(x, y, xt, yt, 3, epochs=30, batch_size=4096, weight_decay=1e-4)
    assert result.test_accuracy >= 0.95


def test_stratified_split_counts_and_disjointness() -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 7 + [3] * 1 + [4] * 15)
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    fit, val = _stratified_split(labels, 6, 0.2, seed=0)
    assert sorted(fit.tolist() + val.tolist()) == list(range(len(labels)))
    # round(0.2 * n_c), keeping one training sample per class: 10, 6, 1 (1.4), 0, 3.
    assert torch.bincount(labels[val], minlength=6).tolist() == [10, 6, 1, 0, 3, 0]
    again_fit, again_val = _stratified_split(labels, 6, 0.2, seed=0)
    assert torch.equal(val, again_val) and torch.equal(fit, again_fit)
    _, other_val = _stratified_split(labels, 6, 0.2, seed=1)
    assert not torch.equal(val, other_val)


def test_accepts_features_on_any_float_dtype() -> None:
    x, y = blobs(0, 300)
    xt, yt = blobs(1, 100)
    result = linear_probe(x.double(), y, xt.half(), yt.int(), 3, **FAST)
    assert result.test_accuracy >= 0.99


def _valid() -> dict:
    x, y = blobs(0, 40)
    xt, yt = blobs(1, 10)
    return {
        "train_features": x,
        "train_labels": y,
        "test_features": xt,
        "test_labels": yt,
        "num_classes": 3,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"epochs": 0}, "epochs"),
        ({"lrs": ()}, "lrs"),
        ({"lrs": (0.1, 0.0)}, "lrs"),
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": 0.001}, "holds out no sample"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"train_labels": torch.zeros(39, dtype=torch.int64)}, "train_labels must be"),
        ({"test_labels": torch.zeros(11, dtype=torch.int64)}, "test_labels must be"),
        ({"train_labels": torch.full((40,), 3)}, r"\[0, 3\)"),
        ({"test_labels": torch.full((10,), -1)}, r"\[0, 3\)"),
        ({"train_features": torch.zeros(0, 8)}, "empty"),
        ({"test_features": torch.zeros(0, 8)}, "empty"),
        ({"test_features": torch.zeros(10, 5)}, "dims"),
        ({"train_features": torch.zeros(40, 2, 4)}, "2-D"),
        ({"train_features": torch.full((40, 8), float("nan"))}, "NaN"),
    ],
)
def test_bad_input_raises(change: dict, message: str) -> None:
    kwargs = _valid() | change
    with pytest.raises(ValueError, match=message):
        linear_probe(**kwargs)


def _reference_sgd(x, y, classes, epochs, lr, batch, seed, weight_decay):
    """One classifier trained the plain way: nn.Linear + torch.optim.SGD, one lr."""
    import math

    from selfsup.eval.linear import _Standardize

    generator = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(x.shape[1], classes)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(classes, x.shape[1], generator=generator) * 0.01)
        linear.bias.zero_()
    model = torch.nn.Sequential(_Standardize(x), linear)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = x.shape[0] // batch
    total, step = epochs * steps, 0
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for b in range(steps):
            idx = order[b * batch : (b + 1) * batch]
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return linear


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_lrs_trained_side_by_side_equal_separate_sgd_runs(weight_decay):
    from selfsup.eval.linear import _train_classifiers

    torch.manual_seed(0)
    x, y = torch.randn(200, 6), torch.randint(0, 4, (200,))
    lrs = [0.01, 0.3, 2.0]
    models, _ = _train_classifiers(x, y, 4, 3, lrs, 32, False, weight_decay, seed=5)
    for lr, model in zip(lrs, models, strict=True):
        ref = _reference_sgd(x, y, 4, 3, lr, 32, 5, weight_decay)
        torch.testing.assert_close(model[1].weight, ref.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model[1].bias, ref.bias, rtol=1e-5, atol=1e-6)
