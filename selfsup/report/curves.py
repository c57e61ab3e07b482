"""Training curves from metrics.jsonl: one figure per logged value, runs overlaid.

Every numeric value of ``train`` records (every ``train.log_every`` steps: the loss, the
learning rate, throughput, a method's logs such as ``target_momentum`` or
``teacher_entropy``) and of ``epoch`` records (``mean_loss``, online ``knn_top1`` /
``linear_top1``, collapse metrics) is drawn against the step; what no run logged is not drawn.
A value logged both ways is one figure: the train records as a line, the epoch records as
dots, unless the epoch records only repeat the train value of the same step (a method log
copied into the epoch record), which is not drawn twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from selfsup.report.runs import RunRecords, numeric

__all__ = ["DESCRIPTIONS", "Curve", "collect_curves", "plot_curve"]

_SKIP = {"kind", "step", "epoch", "skipped_steps"}
_EPOCH_SKIP = _SKIP | {"loss"}  # an epoch's "loss" is its last step's, already in the train curve
_ORDER = [
    "loss",
    "mean_loss",
    "lr",
    "img_per_s",
    "knn_top1",
    "linear_top1",
    "embedding_std",
    "rankme",
    "alignment",
    "uniformity",
]

# What a curve means and what a healthy one looks like; shown under the figure.
DESCRIPTIONS = {
    "loss": "training loss at the logged steps: falls quickly, then slowly; a flat line from the "
    "start or NaN gaps mean nothing is learned",
    "mean_loss": "mean training loss of each epoch",
    "lr": "learning rate: linear warm-up, then the cosine decay",
    "img_per_s": "training throughput (images per second) since the previous logged step",
    "knn_top1": "online k-NN top-1 accuracy of the evaluated encoder on the labelled eval split "
    "(subset bank); should rise and settle well above chance",
    "linear_top1": "online linear probe top-1 accuracy; should rise with training",
    "embedding_std": "per-dimension standard deviation of the L2-normalised embeddings; about "
    "1/sqrt(dim) when they spread out, below 0.01 when every image maps to the same point "
    "(collapse; the trainer then warns)",
    "rankme": "effective rank of the embeddings (RankMe); falling towards 1 means dimensional "
    "collapse: the embeddings fill fewer and fewer directions",
    "alignment": "mean squared distance between the normalised embeddings of two views of one "
    "image; low is good, but 0 with a uniformity near 0 means collapse",
    "uniformity": "log of the mean exp(-2 x squared distance) between embeddings of different "
    "images; more negative is more spread out, near 0 means collapse",
    "target_momentum": "EMA momentum of the target network (rises towards 1 on a cosine)",
    "teacher_temperature": "DINO's teacher temperature (its warm-up schedule)",
    "teacher_entropy": "entropy of DINO's teacher output; pinned at log(out_dim) means a "
    "uniform output, falling to 0 a one-hot collapse",
    "kl": "DINO's loss minus the teacher entropy (the KL part); near 0 for long means the "
    "student copies a collapsed teacher",
}


@dataclass
class Series:
    """One run's values of a curve: ``dots`` for epoch values next to a train line."""

    label: str
    steps: list[float]
    values: list[float]
    dots: bool = False


@dataclass
class Curve:
    """One figure: the values of ``key`` against the step, one or two series per run."""

    key: str
    series: list[Series] = field(default_factory=list)

    @property
    def name(self) -> str:
        """File name stem, e.g. ``loss``."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.key)

    @property
    def percent(self) -> bool:
        return self.key.endswith("_top1")


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _copied_keys(run: RunRecords) -> set[str]:
    """Epoch keys the train records also log whose epoch values equal the train value of the
    same step wherever both exist (the last step is always logged, so they meet there)."""
    train_keys = {k for r in run.train for k in r}
    by_step = {r.get("step"): r for r in run.train}
    copied = set()
    for key in {k for r in run.epoch for k in r} & train_keys:
        same = True
        for r in run.epoch:
            mine, theirs = numeric(r.get(key)), numeric(by_step.get(r.get("step"), {}).get(key))
            if mine is not None and theirs is not None and not _same(mine, theirs):
                same = False
        if same:
            copied.add(key)
    return copied


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        x, y = numeric(r.get("step")), numeric(r.get(key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _numeric_keys(records: list[dict], skip: set[str]) -> set[str]:
    return {k for r in records for k, v in r.items() if k not in skip and numeric(v) is not None}


def collect_curves(runs: Sequence[RunRecords]) -> list[Curve]:
    """Every curve some run can draw, the known ones first."""
    per_run = []
    for run in runs:
        train = _numeric_keys(run.train, _SKIP)
        epoch = _numeric_keys(run.epoch, _EPOCH_SKIP | _copied_keys(run))
        per_run.append((run, train, epoch))
    keys = set().union(*(train | epoch for _, train, epoch in per_run))
    order = [k for k in _ORDER if k in keys] + sorted(keys - set(_ORDER))
    curves = []
    for key in order:
        curve = Curve(key)
        for run, train, epoch in per_run:
            if key in train:
                curve.series.append(Series(run.label, *_series(run.train, key)))
            if key in epoch:
                label = f"{run.label} (per epoch)" if key in train else run.label
                curve.series.append(Series(label, *_series(run.epoch, key), dots=key in train))
        curves.append(curve)
    return curves


def plot_curve(curve: Curve, path: Path) -> Path:
    """Draw ``curve`` as a PNG at ``path`` (matplotlib's Agg canvas, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.6, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for series in curve.series:
        values = [100 * y for y in series.values] if curve.percent else series.values
        if series.dots:  # same colour as the run's line just drawn
            color = ax.lines[-1].get_color() if ax.lines else None
            ax.plot(series.steps, values, "o", markersize=5, color=color, label=series.label)
            continue
        marker = "o" if len(series.steps) <= 30 else None
        ax.plot(
            series.steps, values, marker=marker, markersize=3, linewidth=1.2, label=series.label
        )
    ax.set_title(curve.key)
    ax.set_xlabel("step")
    ax.set_ylabel(f"{curve.key} (%)" if curve.percent else curve.key)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(True, alpha=0.3)
    if len(curve.series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
