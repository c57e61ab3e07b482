"""`selfsup lab`: --list, a --tiny claim, --report-only, and its usage errors."""

from __future__ import annotations

import pytest

from selfsup.cli import main
from tests.lab.synthetic import synthetic_lab


def test_list_shows_every_claim_with_its_arms_seeds_and_budget(capsys) -> None:
    assert main(["lab", "--list"]) == 0
    out = capsys.readouterr().out
    for claim_id in ("batch-size", "moco-queue", "dino-collapse", "mae-mask-ratio", "families"):
        assert claim_id in out
    assert out.count("budget:") == 10 and out.count("seeds 0,1") == 10
    assert "arms: tau 0.05 | tau 0.1 | tau 0.2 | tau 0.5 | tau 1; seeds 0,1" in out
    assert "min on 2 CPU cores (an estimate from the throughputs in bench/RESULTS.md)" in out
    assert main(["lab", "--list", "--seeds", "0,1,2", "--scale", "0.5"]) == 0
    scaled = capsys.readouterr().out
    assert "x 3 seeds, 0.5 epochs of fashion_mnist" in scaled


def test_a_tiny_claim_prints_its_table_verdict_figure_and_command(tmp_path, capsys) -> None:
    lab = tmp_path / "lab"
    assert main(["lab", "projection-head", "--tiny", "--lab-dir", str(lab)]) == 0
    out = capsys.readouterr().out
    assert "7. Features before the projection head are better" in out
    assert "linear top-1 %" in out and "verdict: " in out
    assert f"figure: {lab}/plots/projection-head.png" in out
    assert f"command: selfsup lab projection-head --tiny --seeds 0,1 --lab-dir {lab}" in out
    assert (lab / "claims" / "projection-head.json").is_file()
    # A tiny lab's report goes beside it, never over docs/claims.md.
    assert main(["lab", "--report-only", "--tiny", "--lab-dir", str(lab)]) == 0
    assert f"wrote {lab / 'claims.md'}" in capsys.readouterr().out


def test_report_only_writes_the_page_from_the_cache(tmp_path, capsys) -> None:
    settings = synthetic_lab(tmp_path / "lab")
    out = tmp_path / "docs" / "claims.md"
    args = ["lab", "--report-only", "--lab-dir", str(settings.lab_dir), "--report", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        "7. Features before the projection head are better: does not hold at this scale" in printed
    )
    assert "9. NT-Xent needs a low temperature: holds" in printed
    assert f"wrote {out}" in printed and out.is_file()
    # Where a hand-written reading would go, with the fingerprint it must start with.
    fingerprint = out.read_text().split("<!-- results: ")[-1].split(" -->")[0]  # claim 9's
    note = settings.lab_dir / "notes" / "temperature.md"
    assert f"no reading: {note} may give one, first line 'results: {fingerprint}'" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lab"], "name a claim (`selfsup lab --list`), `all`, or --report-only"),
        (["lab", "7", "--report-only"], "--report-only rebuilds the report from the cache"),
        (["lab", "nope", "--tiny"], "unknown claim 'nope'"),
        (["lab", "7", "--scale", "0"], "--scale must be > 0"),
        (["lab", "--report-only"], "holds no claim results"),
    ],
)
def test_usage_errors_are_one_line(args, message, tmp_path, capsys) -> None:
    assert main([*args, "--lab-dir", str(tmp_path / "lab")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("selfsup lab: error:")
