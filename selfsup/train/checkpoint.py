"""Checkpoints that resume exactly and load without executing code.

* Training checkpoints (``checkpoints/last.pt``) hold only tensors and plain Python containers, so
  they load with ``torch.load(weights_only=True)``: a crafted pickle cannot run code.
* The exported encoder is ``encoder.safetensors`` + ``encoder.json`` (no pickle at all).
* Every write goes to a temporary file in the same directory, is fsynced, then renamed over the
  old file: a crash at any instant leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or written; the message says what to do."""


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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if view_generator is not None and "views" in state:
        view_generator.set_state(state["views"])


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
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain-tensor selfsup checkpoint ({err}). "
            "Only checkpoints written by selfsup (weights_only) are accepted"
        ) from None


def save_encoder(run_dir: Path, encoder: nn.Module, meta: dict[str, Any]) -> Path:
    """Export the encoder as ``encoder.safetensors`` with its rebuild recipe in ``encoder.json``."""
    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    weights = run_dir / "encoder.safetensors"
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(meta, indent=2)

    def write_meta(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(run_dir / "encoder.json", write_meta)
    return weights


def load_encoder_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an exported encoder's weights and metadata (no pickle involved)."""
    run_dir = Path(run_dir)
    weights, meta = run_dir / "encoder.safetensors", run_dir / "encoder.json"
    if not weights.is_file() or not meta.is_file():
        raise CheckpointError(
            f"{run_dir} has no exported encoder (encoder.safetensors + encoder.json); finish or "
            "resume the pre-training run first"
        )
    return load_file(str(weights)), json.loads(meta.read_text())
