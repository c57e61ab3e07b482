"""The run summary: what each run trained, on what, for how long, on which device."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from selfsup.config.views import ViewsConfig
from selfsup.report.runs import RunRecords, numeric

__all__ = ["summary_rows", "summary_table_html"]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.2f} h"


def _backbone(run: RunRecords) -> str:
    b = run.cfg.backbone
    if b.name.startswith("vit"):
        return f"{b.name}, patch {b.patch_size}"
    if b.name.startswith("resnet"):
        return f"{b.name}, width {b.width:g}"
    return b.name


def _steps(run: RunRecords) -> str:
    done = run.end.get("step", run.status.last_step)
    total = run.setup.get("total_steps")
    if done is None:
        return "-"
    return f"{done} of {total}" if total is not None and total != done else str(done)


def _epochs(run: RunRecords) -> str:
    per_epoch = numeric(run.setup.get("steps_per_epoch"))
    done = run.end.get("step", run.status.last_step)
    total = numeric(run.setup.get("total_steps"))
    planned = f"{total / per_epoch:.3g}" if per_epoch and total else str(run.cfg.train.epochs)
    if not per_epoch or done is None:
        return f"{planned} planned"
    return f"{done / per_epoch:.3g} of {planned}"


def _wall(run: RunRecords) -> str:
    wall = numeric(run.end.get("wall_time_s"))
    if wall is None:
        return "- (no end record: unfinished)"
    ran, step = run.end.get("ran_steps"), run.end.get("step")
    if ran is not None and step is not None and ran != step:
        return f"{_duration(wall)} (last session: {ran} steps)"
    return _duration(wall)


def _last(run: RunRecords, key: str) -> str:
    for records in (run.epoch, run.train):
        for record in reversed(records):
            value = numeric(record.get(key))
            if value is not None:
                return f"{100 * value:.2f}%" if key.endswith("_top1") else f"{value:.4g}"
    return "-"


def _int(value: object) -> str:
    number = numeric(value)
    return "-" if number is None else f"{int(number):,}"


def _view_size(views: ViewsConfig) -> str:
    """``views.size``, or the progressive sides (views.progressive_*) that reach it."""
    if views.progressive_start_size is None:
        return f"{views.size} px"
    return (
        f"{views.progressive_start_size} -> {views.size} px (progressive, reached at "
        f"{views.progressive_until:.0%} of the steps)"
    )


def summary_rows(run: RunRecords) -> list[tuple[str, str]]:
    """``(field, value)`` pairs describing ``run``; unknown values read "-"."""
    cfg, setup = run.cfg, run.setup
    data: str = cfg.data.dataset
    if cfg.data.eval_dataset and cfg.data.eval_dataset != data:
        data += f" (evaluated on {cfg.data.eval_dataset})"
    precision = setup.get("autocast", cfg.train.precision)
    return [
        ("path", str(run.path)),
        ("status", run.status.describe()),
        ("method", cfg.method),
        ("backbone", _backbone(run)),
        ("dataset", data),
        ("view size", _view_size(cfg.views)),
        ("global batch", str(setup.get("global_batch_size", cfg.train.batch_size))),
        ("steps", _steps(run)),
        ("epochs", _epochs(run)),
        ("wall time", _wall(run)),
        ("device / precision", f"{setup.get('device', '-')} / {precision}"),
        ("learning rate", str(setup.get("lr_rule", "-"))),
        (
            "parameters (encoder)",
            f"{_int(setup.get('parameters'))} ({_int(setup.get('encoder_parameters'))})",
        ),
        ("last loss", _last(run, "loss")),
        ("last online k-NN", _last(run, "knn_top1")),
        ("skipped steps (NaN/inf)", str(run.skipped)),
        ("collapse warnings", str(len(run.warnings))),
    ]


def summary_table_html(runs: Sequence[RunRecords]) -> str:
    """One column per run, one row per field."""
    rows = [summary_rows(run) for run in runs]
    head = "".join(f"<th>{escape(run.label)}</th>" for run in runs)
    lines = ['<table class="summary">', f"<tr><th></th>{head}</tr>"]
    for i, (name, _) in enumerate(rows[0]):
        cells = "".join(f"<td>{escape(r[i][1])}</td>" for r in rows)
        lines.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    lines.append("</table>")
    for run in runs:
        warnings = run.warnings
        for epoch, text in warnings[:5]:
            lines.append(
                f'<p class="warning">{escape(run.label)}, epoch {epoch}: {escape(text)}</p>'
            )
        if len(warnings) > 5:
            more = f"{run.label}: {len(warnings) - 5} more warnings in metrics.jsonl"
            lines.append(f'<p class="warning">{escape(more)}</p>')
    return "\n".join(lines)
