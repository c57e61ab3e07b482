"""Per-group learning rates: a fixed lr for some submodules (SimSiam's predictor) and a scale for
biases and norm parameters (Barlow Twins), through param_groups and the training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from selfsup import build
from selfsup.config import Config, apply_overrides
from selfsup.methods.base import Method, StepOutput
from selfsup.train.optim import build_optimizer, param_groups
from selfsup.train.step import TrainStep
from selfsup.views import MultiViewTransform, ViewSpec


class _Toy(Method):
    """A backbone and a predictor; the predictor's options are the constructor's."""

    def __init__(self, options: dict[str, dict[str, object]]) -> None:
        recipe = MultiViewTransform([ViewSpec(size=4, blur_p=0.0)] * 2, [0.5], [0.25])
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), recipe)
        self.predictor = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.options = options

    def param_group_options(self) -> dict[str, dict[str, object]]:  # type: ignore[override]
        return self.options

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        return StepOutput(self.predictor(self.backbone(views[0])).pow(2).mean())


def _ids(params: list[torch.Tensor]) -> set[int]:
    return {id(p) for p in params}


def test_options_give_a_submodule_its_own_groups_split_by_weights_and_biases() -> None:
    model = _Toy({})
    groups = param_groups(
        model, 1e-4, norm_and_bias_lr_scale=0.5, options={"predictor": {"fixed_lr": True}}
    )
    assert [(g["fixed_lr"], g["lars_exclude"], g["lr_scale"]) for g in groups] == [
        (False, False, 1.0),
        (False, True, 0.5),
        (True, False, 1.0),
        (True, True, 0.5),
    ]
    backbone, predictor = model.backbone[1], model.predictor
    assert _ids(groups[0]["params"]) == {id(backbone.weight)}
    assert _ids(groups[1]["params"]) == {id(backbone.bias)}
    assert _ids(groups[2]["params"]) == {id(predictor[0].weight)}
    assert _ids(groups[3]["params"]) == _ids([predictor[0].bias, *predictor[1].parameters()])
    # lr_scale multiplies with the bias/norm scale; no options: the two plain groups
    scaled = param_groups(model, 0.0, norm_and_bias_lr_scale=0.5, options={"predictor": {}})
    assert [g["lr_scale"] for g in scaled] == [1.0, 0.5, 1.0, 0.5]
    plain = param_groups(model, 0.0)
    assert [(g["fixed_lr"], g["lr_scale"]) for g in plain] == [(False, 1.0)] * 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"options": {"predictor": {"momentum": 0.5}}}, "unknown parameter-group option"),
        ({"options": {"pred": {"fixed_lr": True}}}, "holds no parameter"),
        ({"norm_and_bias_lr_scale": 0.0}, "norm_and_bias_lr_scale"),
    ],
)
def test_bad_options_are_refused_naming_them(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        param_groups(_Toy({}), 0.0, **kwargs)  # type: ignore[arg-type]


def test_the_step_sets_fixed_groups_to_the_peak_and_scales_the_others() -> None:
    torch.manual_seed(0)
    model = _Toy({"predictor": {"fixed_lr": True}})
    groups = param_groups(model, 0.0, norm_and_bias_lr_scale=0.1, options=model.options)
    optimizer = build_optimizer("sgd", groups, lr=0.0, weight_decay=0.0)
    lrs = np.array([0.0, 0.5, 1.0, 0.25])
    step = TrainStep(model, optimizer, lrs, steps_per_epoch=2)
    images = torch.randint(0, 256, (6, 1, 4, 4), dtype=torch.uint8)
    for k in range(len(lrs)):
        step(images, k)
        seen = [(g["fixed_lr"], g["lars_exclude"], g["lr"]) for g in optimizer.param_groups]
        assert seen == [
            (False, False, pytest.approx(lrs[k])),
            (False, True, pytest.approx(0.1 * lrs[k])),
            (True, False, pytest.approx(1.0)),  # the peak: neither warmed up nor decayed
            (True, True, pytest.approx(0.1)),
        ]


def test_build_reads_the_methods_options_and_the_config_scale() -> None:
    cfg = apply_overrides(
        Config(),
        [
            "method=simsiam",
            "views.size=16",
            "backbone.width=0.125",
            "views.mean=[0.5]",
            "views.std=[0.25]",
            "simsiam.proj_hidden_dim=16",
            "simsiam.proj_out_dim=16",
            "simsiam.pred_hidden_dim=4",
            "optim.norm_and_bias_lr_scale=0.25",
        ],
    )
    method = build.make_method(cfg, in_channels=1)
    optimizer, _ = build.make_optimizer(cfg, method)
    fixed = {id(p) for g in optimizer.param_groups if g["fixed_lr"] for p in g["params"]}
    assert fixed == {id(p) for p in method.predictor.parameters()}
    assert {g["lr_scale"] for g in optimizer.param_groups if g["lars_exclude"]} == {0.25}
    cfg.simsiam.fixed_predictor_lr = False
    optimizer, _ = build.make_optimizer(cfg, build.make_method(cfg, in_channels=1))
    assert not any(g["fixed_lr"] for g in optimizer.param_groups)
