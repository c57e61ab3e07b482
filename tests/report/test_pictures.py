"""A ViT/MAE run's report shows the MAE reconstructions and the cls-token attention maps."""

from __future__ import annotations

import pytest

from selfsup.report import build_report
from tests.conftest import METHOD_OVERRIDES
from tests.report.conftest import train_run

Image = pytest.importorskip("PIL.Image")


def test_mae_run_report_has_reconstructions_and_attention(tmp_path, run_a):
    run = train_run(tmp_path / "mae", *METHOD_OVERRIDES["mae"], "train.max_steps=3", evaluate=False)
    lines: list[str] = []
    page = build_report([run], embedding_points=0, log=lines.append)
    html = page.read_text()
    assert "<h2>Pictures</h2>" in html
    assert "mae: MAE reconstructions" in html and "mae: cls-token attention" in html
    grid = Image.open(page.parent / "mae_mae_reconstructions.png")
    assert grid.size == (3 * 128, 8 * 128 + 24)  # original | masked | reconstruction, 8 rows
    assert Image.open(page.parent / "mae_attention.png").format == "PNG"
    assert any("MAE reconstructions" in line for line in lines)
    assert "not evaluated" in html
    # A ResNet SimCLR run has neither picture.
    other = build_report([run_a], tmp_path / "simclr", embedding_points=0, log=lambda _: None)
    assert "<h2>Pictures</h2>" not in other.read_text()
