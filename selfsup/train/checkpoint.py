"""Checkpoints that resume exactly and load without executing code.

* Training checkpoints (``checkpoints/last.pt``) hold only tensors and plain Python containers, so
  they load with ``torch.load(weights_only=True)``: a crafted pickle cannot run code.
* The exported encoder is ``encoder.safetensors`` + ``encoder.json`` (no pickle at all).
* Every write goes to a temporary file in the same directory, is fsynced, then renamed over the
  old file: a crash at any instant leaves the previous checkpoint loadable. Temporary files left
  by a killed process are removed by :func:`remove_stale_temp_files` when the run starts again.
* :class:`BestCheckpoints` keeps the k best checkpoints of a run next to ``last.pt``, indexed by
  ``best.json``, which is the single source of truth: a file it does not list is deleted.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.artifact import load_encoder_state, save_encoder  # noqa: F401 (re-exported)


class CheckpointError(RuntimeError):
    """A checkpoint or run directory that cannot be read or written; the message says what to do."""


# ``atomic_write`` names its temporary files ``.<name>.<8 random characters>.tmp`` (mkstemp).
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file next to ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write {path}: {err}. The previous file, if any, is intact; free disk space "
            "or choose a writable run_dir"
        ) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Delete the temporary files a killed ``atomic_write`` left in ``directory``; returns them.

    Only names of the form ``.<name>.<8 characters>.tmp`` are touched. Call it when no other
    process writes into ``directory`` (a run starting or resuming).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if _TEMP_NAME.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: the RNGs a checkpoint saves and restores."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(view_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state that shapes the rest of a run, as tensors and plain containers."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if view_generator is not None:
        state["views"] = view_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], view_generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured (its tensors may have been loaded to any device)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].cpu().numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if view_generator is not None and "views" in state:
        view_generator.set_state(state["views"].cpu())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically save a training checkpoint (tensors and plain containers only)."""
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; start without --resume or pass the run dir"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain-tensor selfsup checkpoint "
            f"({_unpickling_reason(err)}). Only checkpoints written by selfsup (weights_only) "
            "are accepted"
        ) from None
    except Exception as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise CheckpointError(
            f"cannot read {path}: the file is damaged or not a checkpoint ({reason}); resume from "
            "another checkpoint (checkpoints/best-*.pt) or start the run again without --resume"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a selfsup checkpoint (a dict); pass a "
            "checkpoints/*.pt file written by selfsup pretrain"
        )
    return state


def _unpickling_reason(err: Exception) -> str:
    """The one informative line of torch's weights-only refusal (what it would not load)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [
        line
        for line in lines[1:]
        if not line.startswith(("Please file", "Check the documentation"))
    ]
    return (useful or lines or [type(err).__name__])[0]


BEST_INDEX = "best.json"
_BEST_FILE = re.compile(r"^best-step\d+\.pt$")


class BestCheckpoints:
    """The ``k`` best checkpoints of a run by one metric, as ``best-step<N>.pt`` next to ``last.pt``.

    ``best.json`` lists them best first (file, step, epoch, value) under the metric's name and
    direction; ties keep the earlier step. An update writes the new file (atomically), then the
    index (atomically), then deletes the ``best-step*.pt`` files the index no longer lists, so a
    kill at any instant leaves every listed file complete; an unlisted leftover is deleted by
    the next update. ``last.pt`` and files of other names are never touched.
    """

    def __init__(self, directory: Path, k: int, metric: str, higher_is_better: bool) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1 (with keep_best=0 build no BestCheckpoints), got {k}")
        self.directory = Path(directory)
        self.k = k
        self.metric = metric
        self.higher_is_better = higher_is_better

    @property
    def index_path(self) -> Path:
        return self.directory / BEST_INDEX

    def entries(self) -> list[dict[str, Any]]:
        """The kept checkpoints, best first; [] without an index or if it ranks another metric."""
        if not self.index_path.is_file():
            return []
        try:
            index = json.loads(self.index_path.read_text())
            entries = list(index["checkpoints"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"cannot read {self.index_path} ({err}); delete it to start a new best-k list "
                "(the best-step*.pt files it listed are then removed)"
            ) from None
        if (index.get("metric"), index.get("higher_is_better")) != (
            self.metric,
            self.higher_is_better,
        ):
            warnings.warn(
                f"{self.index_path} ranks checkpoints by {index.get('metric')!r}, this run by "
                f"{self.metric!r}: its best checkpoints will be replaced",
                stacklevel=2,
            )
            return []
        return entries

    def offer(self, step: int, epoch: int, value: float, state: dict[str, Any]) -> bool:
        """Keep ``state``, the checkpoint at ``step``, if ``value`` ranks among the k best.

        Returns whether it was kept. Offering a step again (a resumed run replaying it)
        replaces that step's entry. A NaN/inf value is never kept.
        """
        if not math.isfinite(value):
            return False
        name = f"best-step{step}.pt"
        candidate: dict[str, Any] = {"file": name, "step": step, "epoch": epoch, "value": value}
        entries = [e for e in self.entries() if e["step"] != step]
        kept = sorted([*entries, candidate], key=self._rank)[: self.k]
        if candidate in kept:
            save_checkpoint(self.directory / name, state)
        self._commit(kept)
        return candidate in kept

    def truncate(self, step: int) -> None:
        """Forget the checkpoints after ``step``: a run resumed at ``step`` offers them again."""
        if self.index_path.is_file():
            self._commit([e for e in self.entries() if e["step"] <= step])
        else:
            self._remove_unlisted([])

    def clear(self) -> None:
        """Forget every best checkpoint (a new run in an existing run directory)."""
        self.index_path.unlink(missing_ok=True)
        self._remove_unlisted([])

    def _rank(self, entry: dict[str, Any]) -> tuple[float, int]:
        value = float(entry["value"])
        return (-value if self.higher_is_better else value, int(entry["step"]))

    def _commit(self, kept: list[dict[str, Any]]) -> None:
        index = {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "k": self.k,
            "checkpoints": kept,
        }
        text = json.dumps(index, indent=2) + "\n"

        def write(tmp: Path) -> None:
            tmp.write_text(text)

        atomic_write(self.index_path, write)
        self._remove_unlisted(kept)

    def _remove_unlisted(self, kept: list[dict[str, Any]]) -> None:
        if not self.directory.is_dir():
            return
        listed = {e["file"] for e in kept}
        for path in self.directory.iterdir():
            if _BEST_FILE.match(path.name) and path.name not in listed:
                path.unlink(missing_ok=True)
