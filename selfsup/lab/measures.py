"""What an arm is measured by, each a function of its finished run directory.

The evaluation measures go through the library's own protocols (``selfsup.eval``): k-NN, the
linear probe and fine-tuning via :func:`~selfsup.eval.run.evaluate_run` (eval.json and the
feature cache land in the arm's run directory, so ``selfsup report`` works on it), the
representation after the projection head via the same linear-probe protocol on
``projector(encoder(x))`` (:func:`projected_encoder`). The training measures read the run's
``metrics.jsonl``. Accuracies are in percent.

:data:`MEASURES_VERSION` is part of every cached result's key: change it when a measure's code
changes what it returns, and the lab measures again (without training again).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import Config, apply_overrides
from selfsup.data import ImageDataset
from selfsup.eval.run import EvalRow

__all__ = ["MEASURES", "MEASURES_VERSION", "Measure", "MeasureContext", "projected_encoder"]

MEASURES_VERSION = 1
TAIL = 0.25  # training logs: the mean over the last quarter of the logged steps


@dataclass
class MeasureContext:
    """A finished arm: its run directory, configuration, labelled data and eval settings."""

    run_dir: Path
    cfg: Config
    eval_sets: tuple[ImageDataset, ImageDataset]
    device: str
    eval_overrides: tuple[str, ...]
    finetune_labels: str
    measures: tuple[str, ...] = ()  # all this arm is measured by: the feature protocols run once
    _rows: dict[tuple[Any, ...], EvalRow] = field(default_factory=dict)

    def row(self, protocols: tuple[str, ...], labels: tuple[str, ...] = ("100%",)) -> EvalRow:
        """The arm's encoder under ``protocols`` (no baselines), evaluated once per context;
        k-NN and linear together when both are wanted, so the features are extracted once
        (and not cached on disk: the lab caches the numbers)."""
        if set(protocols) <= {"knn", "linear"}:
            protocols = tuple(p for p in ("knn", "linear") if p in protocols or p in self.measures)
        key = (protocols, labels)
        if key not in self._rows:
            from selfsup.eval.run import evaluate_run

            (self._rows[key],) = evaluate_run(
                self.run_dir,
                protocols,
                baselines=False,
                device=self.device,
                eval_sets=self.eval_sets,
                overrides=self.eval_overrides,
                labels=labels,
                cache=False,
            )
        return self._rows[key]

    def eval_config(self) -> Config:
        return apply_overrides(copy.deepcopy(self.cfg), self.eval_overrides).validate()

    def records(self, kind: str) -> list[dict[str, Any]]:
        lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
        return [r for r in map(json.loads, lines) if r.get("kind") == kind]

    def tail_mean(self, key: str) -> float:
        """Mean of ``key`` over the last quarter of the logged training steps."""
        values = [float(r[key]) for r in self.records("train") if key in r]
        if not values:
            raise ValueError(f"{self.run_dir}/metrics.jsonl logs no {key!r}")
        tail = values[-max(1, math.ceil(TAIL * len(values))) :]
        return sum(tail) / len(tail)


@dataclass(frozen=True)
class Measure:
    """A named number an arm is judged by."""

    name: str
    label: str  # table header
    fn: Callable[[MeasureContext], float]
    digits: int = 2


def projected_encoder(method: nn.Module) -> nn.Module:
    """``projector(encoder(x))``: the representation *after* the projection head (SimCLR's
    ``z``), for the same evaluation protocols as the encoder's ``h``. Eval mode."""
    projector = getattr(method, "projector", None)
    encoder = getattr(method, "encoder", None)
    if not isinstance(projector, nn.Module) or not isinstance(encoder, nn.Module):
        raise ValueError(
            f"{type(method).__name__} has no projection head to evaluate after; the "
            "representation after the head exists for SimCLR, MoCo, BYOL, SimSiam, Barlow "
            "Twins, VICReg and SwAV"
        )
    return nn.Sequential(encoder, nn.Flatten(1), projector).eval()


def _linear_after_projector(ctx: MeasureContext) -> float:
    """The linear-probe protocol (:func:`~selfsup.eval.protocols.feature_protocol`, as
    ``selfsup eval linear``) on ``projector(encoder(x))`` of the run's last checkpoint."""
    from selfsup import build
    from selfsup.eval.from_checkpoint import load_method
    from selfsup.eval.labelled import label_subset
    from selfsup.eval.protocols import feature_protocol
    from selfsup.eval.run import features_of

    cfg = ctx.eval_config()
    train_set, test_set = ctx.eval_sets
    method = load_method(cfg, ctx.run_dir, build.input_channels(cfg, train_set))
    encoder = projected_encoder(method).to(ctx.device)
    classes = int(train_set.num_classes or 0)
    subset = label_subset("100%", train_set, classes, cfg, ctx.run_dir)
    train = features_of(encoder, train_set, cfg, ctx.device)
    test = features_of(encoder, test_set, cfg, ctx.device)
    top1, _ = feature_protocol(
        "linear", "after the projector", train, test, subset, cfg, classes, ctx.device, None
    )
    return 100 * top1


def _top1(ctx: MeasureContext, protocol: str) -> float:
    """``selfsup eval <protocol>`` top-1 of the arm's encoder on all labels, in percent."""
    return 100 * ctx.row((protocol,)).results[(protocol, "100%")]


def _finetune(ctx: MeasureContext) -> float:
    labels = ctx.finetune_labels
    return 100 * ctx.row(("finetune",), (labels,)).results[("finetune", labels)]


def _teacher_entropy(ctx: MeasureContext) -> float:
    """DINO's teacher entropy (nats, logged per step) as a share of ln K: 0 = one dimension,
    1 = uniform targets."""
    return ctx.tail_mean("teacher_entropy") / math.log(ctx.cfg.dino.out_dim)


def _train_seconds(ctx: MeasureContext) -> float:
    """Training seconds, from the last segment's rate (exact when the run was not resumed)."""
    end = ctx.records("end")[-1]
    return float(end["wall_time_s"]) / max(1, int(end["ran_steps"])) * int(end["step"])


def _step_ms(ctx: MeasureContext) -> float:
    end = ctx.records("end")[-1]
    return 1000 * float(end["wall_time_s"]) / max(1, int(end["ran_steps"]))


def _encoder_flops(ctx: MeasureContext) -> float:
    """MAE: FLOPs of the encoder on the visible patches as a percentage of the same encoder on
    all patches (one image; ``FlopCounterMode``, as ``selfsup bench``)."""
    from selfsup import build
    from selfsup.bench.machine import count_flops
    from selfsup.methods.mae import MAE

    cfg = ctx.cfg
    torch.manual_seed(0)
    method = build.make_method(cfg, build.input_channels(cfg, ctx.eval_sets[0]))
    if not isinstance(method, MAE):
        raise ValueError(f"encoder_flops measures MAE runs, not {cfg.method}")
    x = torch.zeros(1, method.in_channels, cfg.views.size, cfg.views.size)
    with torch.no_grad():
        visible = count_flops(lambda: method.forward_encoder(x))
        full = count_flops(lambda: method.encoder(x))
    return 100 * visible / full


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("knn", "k-NN top-1 %", lambda c: _top1(c, "knn")),
        Measure("linear", "linear top-1 %", lambda c: _top1(c, "linear")),
        Measure("linear_z", "linear top-1 % after the projector", _linear_after_projector),
        Measure("finetune", "fine-tune top-1 %", _finetune),
        Measure(
            "feature_std",
            "encoder feature std x sqrt(D)",
            lambda c: float((c.row(("knn",)).representation or {})["embedding_std"]),
            digits=3,
        ),
        Measure("embedding_std", "embedding std", lambda c: c.tail_mean("embedding_std"), digits=4),
        Measure("teacher_entropy", "teacher entropy / ln K", _teacher_entropy, digits=3),
        Measure("train_s", "training s", _train_seconds, digits=0),
        Measure("step_ms", "ms per step", _step_ms, digits=0),
        Measure("encoder_flops", "encoder FLOPs % of all patches", _encoder_flops, digits=1),
    )
}
