"""The evaluation table: eval.json of every run, one row per run and candidate.

Columns are (dataset, protocol, label fraction) as the results name them, so a run measured on
two datasets, or with 1% / 10% of the labels, gets one column each. Entries without a key
(older files, new protocols) still land in a column: a missing dataset reads "-", a missing
label fraction means all labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from html import escape
from typing import Any

from selfsup.artifact import ENCODER_WEIGHTS
from selfsup.report.runs import RunRecords, numeric

__all__ = ["eval_columns", "eval_table_html", "stale_results_note"]

_PROTOCOLS = ["knn", "linear", "finetune"]
_PROTOCOL_NAMES = {"knn": "k-NN", "linear": "linear", "finetune": "fine-tune"}
_CANDIDATES = ["supervised from scratch", "random encoder", "raw pixels"]

Column = tuple[str, str, str]  # (dataset, protocol, labels); "" where absent


def _column(entry: dict[str, Any]) -> Column:
    return (
        str(entry.get("dataset") or "-"),
        str(entry.get("protocol") or "-"),
        str(entry.get("labels") or ""),
    )


def _fraction(labels: str) -> float:
    try:
        return float(labels.rstrip("%")) if labels else 1e9
    except ValueError:
        return 1e9


def _column_order(column: Column) -> tuple[Any, ...]:
    dataset, protocol, labels = column
    rank = _PROTOCOLS.index(protocol) if protocol in _PROTOCOLS else len(_PROTOCOLS)
    return (dataset, rank, protocol, _fraction(labels), labels)


def _candidate_order(candidate: str) -> int:
    if candidate.startswith("selfsup"):
        return 0
    return 1 + (_CANDIDATES.index(candidate) if candidate in _CANDIDATES else len(_CANDIDATES))


def _results(run: RunRecords) -> list[dict[str, Any]]:
    results = (run.eval or {}).get("results") or []
    return [r for r in results if isinstance(r, dict)]


def eval_columns(runs: Sequence[RunRecords]) -> list[Column]:
    """Every (dataset, protocol, labels) some run has a result for, in reading order."""
    columns = {_column(r) for run in runs for r in _results(run)}
    return sorted(columns, key=_column_order)


def _rows(run: RunRecords) -> list[tuple[str, dict[Column, dict[str, Any]]]]:
    """``(row name, {column: entry})`` per candidate (and network) of ``run``."""
    rows: dict[tuple[str, str], dict[Column, dict[str, Any]]] = {}
    for entry in _results(run):
        candidate = str(entry.get("candidate") or "?")
        rows.setdefault((candidate, str(entry.get("network") or "")), {})[_column(entry)] = entry
    ordered = sorted(rows.items(), key=lambda item: _candidate_order(item[0][0]))
    return [(f"{c} ({n})" if n else c, cells) for (c, n), cells in ordered]


def _cell(entry: dict[str, Any] | None, best: bool) -> str:
    if entry is None:
        return '<td class="num">-</td>'
    top1 = numeric(entry.get("top1"))
    text = "-" if top1 is None else f"{100 * top1:.2f}%"
    detail = {k: entry[k] for k in ("settings", "step", "source", "evaluated_at") if k in entry}
    title = escape(json.dumps(detail, sort_keys=True), quote=True)
    text = f"<b>{text}</b>" if best else text
    return f'<td class="num" title="{title}">{text}</td>'


def _is_best(entry: dict[str, Any] | None, best: float | None) -> bool:
    return entry is not None and best is not None and numeric(entry.get("top1")) == best


def stale_results_note(run: RunRecords) -> str | None:
    """A note when eval.json describes another encoder than the finished run's
    encoder.safetensors (the run was extended after its evaluation)."""
    recorded = (run.eval or {}).get("encoder_sha256")
    weights = run.path / ENCODER_WEIGHTS
    if not recorded or not run.status.finished or not weights.is_file():
        return None
    if hashlib.sha256(weights.read_bytes()).hexdigest() == recorded:
        return None
    return (
        f"{run.label}: eval.json describes encoder {recorded[:12]}, not the run's current "
        f"{ENCODER_WEIGHTS}; run `selfsup eval all {run.path}` again"
    )


def eval_table_html(runs: Sequence[RunRecords]) -> str:
    """The table as HTML: a run column, a candidate column, one column per result kind; the
    best top-1 of each run and column in bold, the settings of a result in its tooltip."""
    columns = eval_columns(runs)
    datasets: list[str] = []
    for dataset, _, _ in columns:
        if dataset not in datasets:
            datasets.append(dataset)
    head1 = "".join(
        f'<th colspan="{sum(c[0] == d for c in columns)}">{escape(d)}</th>' for d in datasets
    )
    head2 = "".join(
        f"<th>{escape(_PROTOCOL_NAMES.get(p, p))}"
        + (f"<br><small>{escape(labels)} labels</small>" if labels else "")
        + "</th>"
        for _, p, labels in columns
    )
    lines = [
        '<table class="eval">',
        f'<tr><th rowspan="2">run</th><th rowspan="2">candidate</th>{head1}</tr>',
        f"<tr>{head2}</tr>",
    ]
    for run in runs:
        rows = _rows(run)
        label = escape(run.label)
        if not rows:
            why = "not evaluated" if run.eval is None else "no results for the current encoder"
            command = escape(f"selfsup eval all {run.path}")
            lines.append(
                f'<tr><td>{label}</td><td class="missing" colspan="{1 + len(columns)}">'
                f"{why}: run <code>{command}</code></td></tr>"
            )
            continue
        best = {}
        for column in columns:
            values = [numeric(cells[column].get("top1")) for _, cells in rows if column in cells]
            known = [v for v in values if v is not None]
            best[column] = max(known) if known else None
        for i, (name, cells) in enumerate(rows):
            run_cell = f'<td rowspan="{len(rows)}">{label}</td>' if i == 0 else ""
            tds = "".join(_cell(cells.get(c), _is_best(cells.get(c), best[c])) for c in columns)
            lines.append(f"<tr>{run_cell}<td>{escape(name)}</td>{tds}</tr>")
    lines.append("</table>")
    return "\n".join(lines)
