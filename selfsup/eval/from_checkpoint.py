"""A run's method rebuilt from a training checkpoint: for the network the exported encoder does
not hold (the other of online / target), for pictures that need the whole method (MAE's
decoder), and for runs that are still training or were interrupted.

The checkpoint loads with ``torch.load(weights_only=True)`` and its method state passes through
:func:`~selfsup.methods.upgrade.upgrade_method_state`, so run directories of earlier versions
still open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup import build
from selfsup.config import Config
from selfsup.methods import Method
from selfsup.methods.upgrade import upgrade_method_state
from selfsup.train.checkpoint import CheckpointError, load_checkpoint

__all__ = ["checkpoint_encoder", "load_method", "method_from_checkpoint"]


def load_method(
    cfg: Config, run_dir: str | Path, in_channels: int, checkpoint: str | Path | None = None
) -> Method:
    """The run's method with the weights of ``checkpoint`` (default ``checkpoints/last.pt``),
    in eval mode on the CPU."""
    path = Path(checkpoint or Path(run_dir) / "checkpoints" / "last.pt")
    return method_from_checkpoint(cfg, load_checkpoint(path), in_channels, path)


def method_from_checkpoint(
    cfg: Config, state: dict[str, Any], in_channels: int, path: Path
) -> Method:
    """The run's method with the weights of a loaded checkpoint ``state`` (read from ``path``),
    in eval mode on the CPU."""
    if "method" not in state:
        raise CheckpointError(f"{path} is not a selfsup training checkpoint (no method state)")
    torch.manual_seed(cfg.train.seed)
    method = build.make_method(cfg, in_channels)
    fmt = str(state.get("format", "selfsup-checkpoint/1"))
    try:
        method.load_state_dict(upgrade_method_state(cfg.method, state["method"], fmt))
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{path} does not fit the run's config.yaml ({str(err).splitlines()[0]})"
        ) from None
    return method.eval()


def checkpoint_encoder(
    cfg: Config,
    run_dir: str | Path,
    in_channels: int,
    network: str = "auto",
    checkpoint: str | Path | None = None,
) -> nn.Module:
    """The backbone the method evaluates for ``network`` (``auto``: its own protocol, e.g.
    DINO's teacher), from a checkpoint, in eval mode."""
    return load_method(cfg, run_dir, in_channels, checkpoint).encoder_for(network).eval()
