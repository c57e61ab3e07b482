"""Progressive resizing (views.progressive_*): the side per step, the views at a side, the
config's refusals and a short run that logs its sides and resumes bitwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from selfsup import build, progress
from selfsup.bench import time_to_accuracy
from selfsup.bench.harness import BenchStep
from selfsup.config.errors import ConfigError
from selfsup.report.runs import read_run
from selfsup.report.summary import summary_rows
from selfsup.train.step import TrainStep
from selfsup.train.trainer import Trainer
from selfsup.views import MultiViewTransform, dino_views, progressive_size, progressive_sizes
from tests.conftest import METHOD_OVERRIDES, tiny_config
from tests.train.test_reliability import _comparable, _equal, _state, small

# 16 px views from 8 px over the first half of the run, in 4 px steps
PROGRESSIVE = (
    "views.size=16",
    "views.progressive_start_size=8",
    "views.progressive_until=0.5",
)


# -- the side per step ----------------------------------------------------------------------------
def test_the_side_grows_linearly_rounded_down_to_the_multiple_then_stays_at_the_end():
    # 100 steps, 16 -> 32 px until step 50: 16 + 16 k / 50, floored to a multiple of 4
    sides = {k: progressive_size(k, 100, 16, 32, until=0.5, multiple=4) for k in range(100)}
    assert sides[0] == 16  # the start
    assert sides[12] == 16 and sides[13] == 20  # 19.84 -> 16, 20.16 -> 20
    assert sides[25] == 24  # the middle of the ramp: exactly half-way
    assert sides[49] == 28  # 31.68 -> 28: never the end before `until`
    assert all(sides[k] == 32 for k in range(50, 100))  # the end from until * total_steps on
    assert sorted(sides.values()) == list(sides.values())  # never shrinks
    assert set(sides.values()) == {16, 20, 24, 28, 32}  # a few shapes only
    # until=1: the whole run ramps, the last step is still below the end (16 + 16 * 99 / 100)
    assert progressive_size(99, 100, 16, 32, until=1.0, multiple=4) == 28
    assert progressive_size(74, 100, 16, 32, until=0.75) == 28  # the defaults: until 0.75, 4 px
    assert progressive_size(75, 100, 16, 32) == 32


def test_the_side_never_drops_below_the_rounded_start_nor_passes_the_end():
    # a start off the multiple rounds down (10 -> 8); an end off the multiple is reached exactly
    assert [progressive_size(k, 10, 10, 30, 0.5, 4) for k in (0, 4, 5)] == [8, 24, 30]
    # a multiple larger than the start keeps the start until the first multiple
    assert [progressive_size(k, 4, 8, 40, 1.0, 16) for k in range(4)] == [8, 16, 16, 32]
    assert progressive_size(3, 10, 16, 16, 0.5, 4) == 16  # start == end: constant
    assert progressive_sizes(10, 10, 30, 0.5, 4).tolist() == [
        progressive_size(k, 10, 10, 30, 0.5, 4) for k in range(10)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, 8, 16, 0.5, 4), "total_steps >= 1"),
        ((-1, 10, 8, 16, 0.5, 4), "step >= 0"),
        ((0, 10, 17, 16, 0.5, 4), "start <= end"),
        ((0, 10, 8, 16, 0.0, 4), r"until is a fraction of the run in \(0, 1\]"),
        ((0, 10, 8, 16, 1.5, 4), "until"),
        ((0, 10, 8, 16, 0.5, 0), "multiple must be a positive"),
    ],
)
def test_impossible_schedules_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        progressive_size(*args)


# -- the views at a side --------------------------------------------------------------------------
def test_at_size_scales_the_local_crops_with_the_globals_and_is_built_once():
    t = MultiViewTransform(dino_views(32, 16, 2), mean=[0.5], std=[0.25])
    assert t.at_size(32) is t
    half = t.at_size(16)
    assert [s.size for s in half.specs] == [16, 16, 8, 8]
    assert [s.size for s in t.at_size(24).specs] == [24, 24, 12, 12]
    assert [s.size for s in t.at_size(12).specs] == [12, 12, 8, 8]  # locals: at least 8 px
    assert t.at_size(16) is half  # cached: nothing rebuilt per step
    # everything but the side is the recipe's; the blur kernel follows the side
    assert half.specs[0].crop_scale == t.specs[0].crop_scale
    assert half.specs[2].blur_p == t.specs[2].blur_p
    assert half.specs[0].blur_kernel_size <= t.specs[0].blur_kernel_size
    g = torch.Generator().manual_seed(0)
    views = half(torch.zeros(3, 1, 20, 20, dtype=torch.uint8), g)
    assert [tuple(v.shape) for v in views] == [(3, 1, 16, 16)] * 2 + [(3, 1, 8, 8)] * 2
    with pytest.raises(ValueError, match="positive int"):
        t.at_size(0)


def _step(*overrides: str, steps_per_epoch: int = 10) -> tuple[TrainStep, torch.Tensor]:
    cfg = tiny_config(*overrides)
    data = build.train_dataset(cfg)
    build.resolve_normalization(cfg, data)
    torch.manual_seed(0)
    method = build.make_method(cfg, data.channels)
    step = TrainStep.from_config(cfg, method, steps_per_epoch, "cpu")
    return step, data.get_batch(torch.arange(8))[0]


@pytest.mark.parametrize(
    ("method", "extra", "expected"),
    [
        # 10 steps, 16 px from 8 px until step 5: 8 + 8 k / 5 floored to 4 px
        ("simclr", (), {0: [8, 8], 3: [12, 12], 5: [16, 16], 9: [16, 16]}),
        # DINO on a ResNet, 32 px globals and 16 px locals from 16 px
        (
            "dino",
            ("views.size=32", "views.local_size=16", "views.progressive_start_size=16"),
            {0: [16, 16, 8, 8], 3: [24, 24, 12, 12], 5: [32, 32, 16, 16]},
        ),
    ],
)
def test_the_step_draws_its_views_at_the_side_of_the_global_step(method, extra, expected):
    step, images = _step(*METHOD_OVERRIDES[method], *PROGRESSIVE, *extra)
    g = torch.Generator().manual_seed(0)
    for k, sides in expected.items():
        views = step.views(images, g, k)
        assert [v.shape[-1] for v in views] == sides and step.view_size(k) == sides[0]
    full = step.method.view_recipe.global_size  # without a step: the recipe's own size
    assert [v.shape[-1] for v in step.views(images, g)][:2] == [full, full]
    result = step(images, 0, g)  # the method trains at the smallest side
    assert torch.isfinite(result.loss)


@pytest.mark.parametrize("method", ["swav", "rotation", "colorization", "byol"])
def test_every_method_that_takes_it_trains_at_a_smaller_side(method):
    step, images = _step(*METHOD_OVERRIDES[method], *PROGRESSIVE)
    g = torch.Generator().manual_seed(0)
    assert step.views(images, g, 0)[0].shape[-1] == 8
    assert torch.isfinite(step(images, 0, g).loss)


def test_without_progressive_resizing_nothing_changes():
    step, images = _step("views.size=16")
    assert step.view_sizes is None and step.view_size(3) is None
    g = torch.Generator().manual_seed(0)
    assert step.views(images, g, 0)[0].shape[-1] == 16


# -- the config -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("views.progressive_start_size=4",), r"views.progressive_start_size must be .* >= 8"),
        (("views.progressive_start_size=24",), r"progressive_start_size=24 must be in \[8, views"),
        (
            ("backbone.name=vit_micro", "backbone.patch_size=2", "views.progressive_start_size=8"),
            r"progressive_start_size=8: vit_micro has a fixed patch grid.*null with a ViT",
        ),
        (
            (*METHOD_OVERRIDES["jigsaw"], "views.progressive_start_size=8"),
            r"progressive_start_size=8: jigsaw .* null for jigsaw",
        ),
        (
            (*METHOD_OVERRIDES["colorization"], "views.progressive_start_size=8",
             "views.progressive_step=2"),
            r"views.progressive_step=2: colorization.output_stride=4 must divide",
        ),
        (("views.progressive_until=0",), r"views.progressive_until is a fraction .* \(0, 1\]"),
        (("views.progressive_step=0",), r"views.progressive_step must be an integer >= 1"),
    ],
)  # fmt: skip
def test_impossible_progressive_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("views.size=16", *overrides)


# -- a run ----------------------------------------------------------------------------------------
def _train_lines(run_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == "train"]


def test_a_progressive_run_logs_its_sides_and_resumes_bitwise(tmp_path, capsys, monkeypatch):
    readings = iter(float(i) for i in range(1, 10**6))  # one second a reading: an early estimate
    monkeypatch.setattr(progress, "now", lambda: next(readings))
    # 160 digits in batches of 16: 10 steps an epoch, 20 in all, 8 -> 16 px until step 10
    straight = Trainer(small(*PROGRESSIVE), tmp_path / "a")
    straight.fit()
    plan, estimate = capsys.readouterr().err.splitlines()[:2]
    grows = "views 8 -> 16 px (progressive, reached at 50% of the steps), batch 16, cpu, fp32"
    assert grows in plan
    assert estimate.endswith("(measured on the early, smaller views: expect longer)")
    sides = [x["view_size"] for x in _train_lines(tmp_path / "a")]
    assert sides == progressive_sizes(20, 8, 16, 0.5, 4).tolist()
    assert sides[0] == 8 and sides[-1] == 16 and set(sides) == {8, 12, 16}

    first = Trainer(small(*PROGRESSIVE, "train.max_steps=7"), tmp_path / "b")
    first.fit()  # stopped on the ramp, at 12 px
    second = Trainer(small(*PROGRESSIVE), tmp_path / "b")
    second.fit(resume=True)
    assert second.step == straight.step == 20
    assert _equal(_state(straight), _state(second))
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")
    rows = dict(summary_rows(read_run(tmp_path / "b")))  # `selfsup report` states the rule
    assert rows["view size"] == "8 -> 16 px (progressive, reached at 50% of the steps)"


def test_the_benchmarks_step_keeps_the_configured_size_and_calibration_walks_the_ramp(
    monkeypatch,
):
    cfg = small(*PROGRESSIVE)
    data = build.train_dataset(cfg)
    build.resolve_normalization(cfg, data)
    bench = BenchStep(cfg, 1, torch.device("cpu"), steps_per_epoch=10)
    images = data.get_batch(torch.arange(4))[0]
    assert bench.views(images)[0].shape[-1] == 16  # what `selfsup bench` reports: views.size
    assert bench.train_step.view_sizes is None

    built: list[Trainer] = []

    class Recorded(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(time_to_accuracy, "Trainer", Recorded)
    time_to_accuracy.calibrate(cfg, data, steps=3, warmup=1)
    # the throw-away run spans the schedule (4 steps, 8 -> 16 px) instead of its first side
    assert built[0].train_step.view_sizes.tolist() == progressive_sizes(4, 8, 16, 0.5, 4).tolist()
