"""metrics.jsonl as TensorBoard event files in ``RUN/tensorboard/`` (optional package).

``train`` records become ``train/<key>`` scalars and ``epoch`` records ``epoch/<key>``
scalars, both at the record's step. Earlier event files in that folder (an earlier
conversion) are replaced, so converting again never shows a curve twice.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from selfsup.report.runs import RunRecords, numeric

__all__ = ["TENSORBOARD_DIR", "require_tensorboard", "write_tensorboard"]

TENSORBOARD_DIR = "tensorboard"
_SKIP = {"kind", "step", "epoch"}


def require_tensorboard() -> None:
    """Raise a one-line ValueError naming the install command when tensorboard is missing."""
    try:
        importlib.import_module("tensorboard")
    except ImportError:
        raise ValueError(
            "--tensorboard needs the tensorboard package: pip install tensorboard "
            "(or pip install 'selfsup[report]')"
        ) from None


def write_tensorboard(run: RunRecords) -> Path:
    """Write ``run``'s metrics as event files into ``run.path / "tensorboard"``; returns it."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    out = run.path / TENSORBOARD_DIR
    if out.is_dir():
        for old in out.glob("events.out.tfevents.*"):
            old.unlink()
    writer = SummaryWriter(log_dir=str(out))
    try:
        for kind, records in (("train", run.train), ("epoch", run.epoch)):
            for record in records:
                step = numeric(record.get("step"))
                if step is None:
                    continue
                for key, value in record.items():
                    number = numeric(value)
                    if key not in _SKIP and number is not None:
                        writer.add_scalar(f"{kind}/{key}", number, int(step))
    finally:
        writer.close()
    return out
