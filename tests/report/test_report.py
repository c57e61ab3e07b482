"""selfsup report end to end on tiny runs: what the page holds, where it goes, what it never
touches, and the one-line refusals."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from selfsup.cli import main
from selfsup.report import build_report
from selfsup.report.curves import collect_curves
from selfsup.report.runs import read_run
from tests.report.conftest import snapshot


def _images(page: Path) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page.read_text())


@pytest.fixture(scope="module")
def single(run_a, tmp_path_factory) -> tuple[Path, list[str], dict]:
    """The report of run_a in its default place, the progress lines, the files before."""
    before = snapshot(run_a)
    lines: list[str] = []
    page = build_report([run_a], embedding_points=150, log=lines.append)
    return page, lines, before


def test_one_run_report_lands_in_run_report_with_its_figures(run_a, single):
    page, lines, _ = single
    assert page == run_a / "report" / "report.html"
    html = page.read_text()
    images = _images(page)
    for name in ("curve_loss.png", "curve_lr.png", "curve_knn_top1.png", "simclr_a_embedding.png"):
        assert name in images
    assert all((page.parent / name).is_file() for name in images)
    assert "curve_mean_loss.png" in images and "curve_img_per_s.png" in images
    # Summary: from config.yaml, the setup and end records.
    for text in ("simclr", "resnet18, width 0.125", "digits", "finished at step 44", "cpu / fp32"):
        assert text in html
    assert "2 of 2" in html  # epochs
    # Progress on stderr (log), one line per figure, no network references in the page.
    assert any("curve loss" in line for line in lines)
    assert any("embedding map" in line for line in lines)
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_eval_table_shows_every_result_of_eval_json(run_a, single):
    page, _, _ = single
    html = page.read_text()
    results = json.loads((run_a / "eval.json").read_text())["results"]
    assert {r["candidate"] for r in results} == {"selfsup simclr", "random encoder", "raw pixels"}
    for entry in results:
        assert f"{100 * entry['top1']:.2f}%" in html
    table = html[html.index('<table class="eval">') :]
    assert table.index("selfsup simclr") < table.index("random encoder") < table.index("raw pixels")


def test_the_run_directory_is_untouched_outside_report(run_a, single):
    _, _, before = single
    assert snapshot(run_a) == before


def test_several_runs_share_one_table_and_overlaid_curves(run_a, run_b, tmp_path):
    with pytest.raises(ValueError, match="--out"):
        build_report([run_a, run_b], embedding_points=0, log=lambda _: None)
    page = build_report([run_a, run_b], tmp_path / "cmp", embedding_points=0, log=lambda _: None)
    html = page.read_text()
    assert html.count('<table class="eval">') == 1
    table = html[html.index('<table class="eval">') : html.index("</table>", html.index('"eval"'))]
    assert "simclr_a" in table and "simclr_b" in table
    assert table.count("selfsup simclr") == 2
    loss = next(c for c in collect_curves([read_run(run_a), read_run(run_b)]) if c.key == "loss")
    assert [s.label for s in loss.series] == ["simclr_a", "simclr_b"]
    assert "curve_loss.png" in _images(page)


def test_a_run_without_eval_json_says_how_to_evaluate_it(run_a, tmp_path):
    run = tmp_path / "fresh"
    shutil.copytree(run_a, run, ignore=shutil.ignore_patterns("report"))
    (run / "eval.json").unlink()
    page = build_report([run], embedding_points=0, log=lambda _: None)
    assert f"not evaluated: run <code>selfsup eval all {run}</code>" in page.read_text()


def test_an_earlier_reports_figures_are_removed_when_no_longer_shown(run_a, tmp_path):
    out = tmp_path / "rep"
    build_report([run_a], out, embedding_points=100, log=lambda _: None)
    assert (out / "simclr_a_embedding.png").is_file()
    (out / "mine.png").write_bytes(b"not the report's")
    build_report([run_a], out, embedding_points=0, log=lambda _: None)
    assert not (out / "simclr_a_embedding.png").exists()
    assert (out / "mine.png").is_file()  # never shown by a report: left alone


def test_bad_inputs_are_one_line_errors(run_a, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a selfsup run directory"):
        build_report([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report([tmp_path / "missing"])
    started = tmp_path / "started"
    started.mkdir()
    shutil.copy(run_a / "config.yaml", started / "config.yaml")
    with pytest.raises(FileNotFoundError, match=r"no metrics\.jsonl"):
        build_report([started])
    with pytest.raises(ValueError, match="given twice"):
        build_report([run_a, run_a])
    with pytest.raises(ValueError, match="inside the run directory"):
        build_report([run_a], run_a / "checkpoints")
    assert not (tmp_path / "empty" / "report").exists()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfsup report: error:") and "not a selfsup run directory" in err
    assert len(err.splitlines()) == 1


def test_cli_prints_progress_on_stderr_and_the_page_on_stdout(run_a, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", str(run_a), "--out", str(out), "--embedding-points", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"wrote {out / 'report.html'}"
    assert "report: curve loss" in captured.err


def test_without_matplotlib_the_message_names_the_install(run_a, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ValueError, match="pip install matplotlib"):
        build_report([run_a], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


def test_unfinished_runs_use_the_last_checkpoint_or_say_there_is_no_encoder(run_a, tmp_path):
    run = tmp_path / "killed"
    shutil.copytree(run_a, run, ignore=shutil.ignore_patterns("report", "eval.json"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # no end record
    (run / "encoder.safetensors").unlink()
    html = build_report([run], embedding_points=100, log=lambda _: None).read_text()
    assert "unfinished, last logged step 44" in html and "no end record" in html
    assert "(checkpoints/last.pt, step 44)" in html  # the embedding map's encoder
    shutil.rmtree(run / "checkpoints")
    (run / "metrics.jsonl").write_text(lines[0] + "\n")  # the setup record alone
    html = build_report([run], embedding_points=100, log=lambda _: None).read_text()
    assert "killed: no encoder to draw" in html and "has written no checkpoint" in html
    assert "no train or epoch records in metrics.jsonl yet" in html
