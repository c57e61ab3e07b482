"""``eval.json``: every evaluation result of a run, accumulated, each naming its encoder.

One entry per (candidate, protocol, labels, dataset, network): evaluating k-NN after a full evaluation
replaces the k-NN entries and keeps the linear ones. Every entry carries the SHA-256 of the
encoder it measured (:func:`~selfsup.eval.run_encoder.encoder_sha256`), the step and the
source of its weights. When the run's encoder changes (a run extended with ``--resume``), the
entries of the earlier encoder move to ``superseded``, so that ``results`` only ever describe
the encoder the run holds now::

    {"format": "selfsup-eval/2",
     "encoder_sha256": "...",          # the encoder the results describe
     "results": [{"candidate": "selfsup simclr", "protocol": "knn",
                  "dataset": "fashion_mnist", "network": "online", "top1": 0.842,
                  "settings": {"k": 20, "temperature": 0.07}, "encoder_sha256": "...",
                  "step": 4680, "source": "encoder.safetensors",
                  "evaluated_at": "2026-11-30T19:40:00Z"}, ...],
     "superseded": [...]}

Baseline candidates (``random encoder``, ``raw pixels``) have no network; they carry the run
encoder's hash too, since they were measured next to it under the same protocol. Files of the
first format (a list of rows) are read and rewritten in this one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from selfsup.train.checkpoint import atomic_write

__all__ = ["EVAL_FILE", "EVAL_FORMAT", "read_results", "record_results"]

EVAL_FILE = "eval.json"
EVAL_FORMAT = "selfsup-eval/2"
KEY_FIELDS = ("candidate", "protocol", "labels", "dataset", "network")


def _key(entry: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(entry.get(k) for k in KEY_FIELDS)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The run's eval.json as ``{"format", "encoder_sha256", "results", "superseded"}``
    (empty when there is none; a first-format list is converted, with no encoder hash)."""
    path = Path(run_dir) / EVAL_FILE
    empty: dict[str, Any] = {
        "format": EVAL_FORMAT,
        "encoder_sha256": None,
        "results": [],
        "superseded": [],
    }
    if not path.is_file():
        return empty
    data = json.loads(path.read_text())
    if isinstance(data, list):  # selfsup-eval/1: [{"name", "knn", "linear", "linear_lr"}]
        old = []
        for row in data:
            for protocol in ("knn", "linear"):
                if row.get(protocol) is not None:
                    old.append(
                        {
                            "candidate": row["name"],
                            "protocol": protocol,
                            "dataset": None,
                            "network": row.get("network"),
                            "top1": row[protocol],
                            "encoder_sha256": None,
                        }
                    )
        return {**empty, "superseded": old}
    return {**empty, **data}


def record_results(
    run_dir: str | Path, entries: list[dict[str, Any]], encoder_sha256: str
) -> dict[str, Any]:
    """Merge ``entries`` (each with the :data:`KEY_FIELDS`, ``top1``, ``settings``, ``step``,
    ``source``) into the run's eval.json for the encoder ``encoder_sha256``; writes it
    atomically and returns the file's content."""
    data = read_results(run_dir)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kept = []
    for entry in data["results"]:
        if entry.get("encoder_sha256") == encoder_sha256:
            kept.append(entry)
        else:
            data["superseded"].append(entry)
    new = {_key(e): {**e, "encoder_sha256": encoder_sha256, "evaluated_at": stamp} for e in entries}
    results = [e for e in kept if _key(e) not in new] + list(new.values())
    data.update(format=EVAL_FORMAT, encoder_sha256=encoder_sha256, results=results)
    text = json.dumps(data, indent=2)

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(Path(run_dir) / EVAL_FILE, write)
    return data
