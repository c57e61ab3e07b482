"""The evaluation table from eval.json entries, with and without the optional keys."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from selfsup.config import Config
from selfsup.report.runs import RunRecords
from selfsup.report.table import eval_columns, eval_table_html, stale_results_note
from selfsup.train.run_dir import RunStatus


def _run(label: str, results: list[dict] | None, path: Path | None = None) -> RunRecords:
    run = RunRecords(path or Path(label), label, Config(), RunStatus(True, True, 4, 4))
    run.eval = None if results is None else {"encoder_sha256": "abc", "results": results}
    return run


def _entry(candidate: str, protocol: str, top1: float, **extra) -> dict:
    return {"candidate": candidate, "protocol": protocol, "dataset": "fm", "top1": top1, **extra}


def _rows(html: str) -> list[list[str]]:
    """The text of each body row's cells."""
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)[2:]
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)] for r in rows
    ]


def test_columns_per_protocol_and_label_fraction_in_reading_order():
    run = _run(
        "a",
        [
            _entry("selfsup dino", "finetune", 0.9, labels="10%"),
            _entry("selfsup dino", "linear", 0.8, labels="100%"),
            _entry("selfsup dino", "linear", 0.5, labels="1%"),
            _entry("selfsup dino", "knn", 0.7),
            _entry("selfsup dino", "linear", 0.6, labels="10%"),
        ],
    )
    assert eval_columns([run]) == [
        ("fm", "knn", ""),
        ("fm", "linear", "1%"),
        ("fm", "linear", "10%"),
        ("fm", "linear", "100%"),
        ("fm", "finetune", "10%"),
    ]
    html = eval_table_html([run])
    assert "1% labels" in html and "fine-tune" in html
    assert _rows(html) == [["a", "selfsup dino", "70.00%", "50.00%", "60.00%", "80.00%", "90.00%"]]


def test_candidates_ordered_best_bold_absent_cells_dashed():
    results = [
        _entry("raw pixels", "knn", 0.8),
        _entry("random encoder", "knn", 0.3),
        _entry("supervised from scratch", "linear", 0.95),
        _entry("selfsup simclr", "knn", 0.7, network="online"),
        _entry("selfsup simclr", "linear", 0.75, network="online"),
    ]
    html = eval_table_html([_run("a", results)])
    assert [r[-3:] for r in _rows(html)] == [
        ["selfsup simclr (online)", "70.00%", "75.00%"],
        ["supervised from scratch", "-", "95.00%"],
        ["random encoder", "30.00%", "-"],
        ["raw pixels", "80.00%", "-"],
    ]
    assert re.findall(r"<b>([^<]*)</b>", html) == ["95.00%", "80.00%"]


def test_entries_missing_keys_and_runs_side_by_side():
    odd = [{"candidate": "selfsup mae", "top1": None}, {"protocol": "knn", "top1": 0.5}]
    html = eval_table_html([_run("a", odd), _run("b", None), _run("c", [])])
    rows = _rows(html)
    assert rows[0][:2] == ["a", "selfsup mae"] and "-" in rows[0]
    assert rows[1][0] == "?"  # the second row of run a: candidate unknown
    assert rows[2] == ["b", "not evaluated: run selfsup eval all b"]
    assert rows[3] == ["c", "no results for the current encoder: run selfsup eval all c"]


def test_results_of_another_encoder_are_flagged(tmp_path):
    (tmp_path / "encoder.safetensors").write_bytes(b"weights")
    run = _run("a", [_entry("selfsup simclr", "knn", 0.7)], tmp_path)
    note = stale_results_note(run)
    assert note is not None and "selfsup eval all" in note
    assert run.eval is not None
    run.eval["encoder_sha256"] = hashlib.sha256(b"weights").hexdigest()
    assert stale_results_note(run) is None
