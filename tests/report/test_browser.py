"""report.html in headless Chromium with the network cut off: it loads, every figure decodes,
the console stays silent. Skipped where no Chromium/Chrome binary is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from selfsup.report import build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)

pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no Chromium or Chrome binary (apt-get install chromium): report.html not loaded "
    "in a browser",
)


def load(page: Path, profile: Path) -> tuple[dict[str, str], list[str], str]:
    """The <body> attributes after the load event, the console messages and the DOM."""
    assert BROWSER is not None
    proc = subprocess.run(
        [
            BROWSER,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: a CDN fetch would fail
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body is not None, proc.stdout[:500]
    attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return attributes, console, proc.stdout


@pytest.fixture(scope="module")
def page(run_a, tmp_path_factory) -> Path:
    return build_report(
        [run_a], tmp_path_factory.mktemp("browser") / "report", embedding_points=100, log=print
    )


def test_page_loads_with_every_image_and_a_silent_console(page, tmp_path):
    images = re.findall(r"<img ", page.read_text())
    body, console, _ = load(page, tmp_path / "profile")
    assert len(images) >= 7  # curves, the embedding map
    assert body["data-images"] == body["data-images-loaded"] == str(len(images))
    assert console == []


def test_the_check_sees_a_missing_figure_and_a_script_error(page, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(page.parent, broken)
    (broken / "curve_lr.png").unlink()
    html = (broken / "report.html").read_text()
    (broken / "report.html").write_text(html.replace("</body>", "<script>nope()</script></body>"))
    body, console, dom = load(broken / "report.html", tmp_path / "profile")
    assert int(body["data-images-loaded"]) == int(body["data-images"]) - 1
    assert "missing figure curve_lr.png: keep the PNG files next to report.html" in dom
    assert len(console) == 1 and "nope is not defined" in console[0]
