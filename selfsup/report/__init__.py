"""``selfsup report``: one self-contained HTML page per run or comparison of runs.

The page (``report.html``) holds the run summary, the training curves of ``metrics.jsonl``,
the evaluation table of ``eval.json``, a 2-D map of the test embeddings coloured by class, and
the pictures of the method (MAE reconstructions, ViT attention maps). It needs no network:
styles are inline and figures are PNG files next to it. See ``docs/report.md``.

Example::

    from selfsup.report import build_report
    page = build_report(["runs/fm"])                      # runs/fm/report/report.html
    page = build_report(["runs/a", "runs/b"], out="reports/a-vs-b")
"""

from selfsup.report.build import REPORT_DIR, REPORT_FILE, build_report
from selfsup.report.runs import RunRecords, read_run
from selfsup.report.tensorboard import write_tensorboard

__all__ = [
    "REPORT_DIR",
    "REPORT_FILE",
    "RunRecords",
    "build_report",
    "read_run",
    "write_tensorboard",
]
