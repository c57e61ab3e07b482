"""A run's encoder for evaluation and embedding: the exported file of a finished run, or the
last checkpoint's encoder while the run trains or after it was interrupted.

Which one, and its identity, travel with it: :class:`RunEncoder` carries the SHA-256 of the
weights (``encoder_sha256``; for a finished run the hash of ``encoder.safetensors`` itself,
the same one ``selfsup export`` records), the step they are from and where they came from, so
that every evaluation result names the encoder it describes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from selfsup import build
from selfsup.artifact import ENCODER_WEIGHTS, load_encoder_state
from selfsup.config import Config
from selfsup.eval.from_checkpoint import method_from_checkpoint
from selfsup.progress import say
from selfsup.train.checkpoint import CheckpointError, load_checkpoint
from selfsup.train.run_dir import run_status

__all__ = ["RunEncoder", "encoder_sha256", "load_encoder", "load_run_config"]


def load_run_config(run_dir: str | Path) -> Config:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a selfsup run directory (no config.yaml)")
    return Config.from_yaml(path)


@dataclass
class RunEncoder:
    """A run's encoder (eval mode), its config, its export metadata and its identity."""

    encoder: nn.Module
    cfg: Config
    meta: dict[str, Any]
    sha256: str = ""  # of the weights (safetensors serialisation of the state dict)
    step: int | None = None  # the training step the weights are from, when known
    source: str = ENCODER_WEIGHTS  # "encoder.safetensors" or "checkpoints/last.pt"

    @property
    def in_channels(self) -> int:
        return int(self.meta["in_channels"])

    @property
    def network(self) -> str:
        return str(self.meta.get("network", "online"))


def encoder_sha256(encoder: nn.Module) -> str:
    """SHA-256 of the encoder's weights as ``encoder.safetensors`` stores them: equal to the
    hash of that file when it holds these weights."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    return hashlib.sha256(safetensors_bytes(tensors)).hexdigest()


def load_encoder(
    run_dir: str | Path, device: str | torch.device = "cpu", allow_checkpoint: bool = True
) -> RunEncoder:
    """A run's encoder: ``encoder.safetensors`` when the run finished (no pickle); while it
    trains or after it was interrupted, the encoder of ``checkpoints/last.pt`` (the network
    the method evaluates, e.g. DINO's teacher; ``weights_only`` load), said on stderr.
    ``allow_checkpoint=False`` insists on the finished run's file."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    status = run_status(run_dir)
    weights = run_dir / ENCODER_WEIGHTS
    if status.finished or (weights.is_file() and not status.has_checkpoint) or not allow_checkpoint:
        state, meta = load_encoder_state(run_dir)
        encoder = build.make_backbone(cfg, int(meta["in_channels"]))
        encoder.load_state_dict(state)
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        return RunEncoder(encoder.to(device).eval(), cfg, meta, digest, status.last_step)
    if not status.has_checkpoint:
        raise CheckpointError(
            f"{run_dir} has no encoder yet: the run has written no checkpoint. Wait for the "
            "first one (end of epoch 1, or every train.checkpoint_every_steps steps)"
        )
    path = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    in_channels = _in_channels(cfg, run_dir, state)
    method = method_from_checkpoint(cfg, state, in_channels, path)
    network = method.resolve_network(cfg.eval.network)
    encoder = method.encoder_for(network)
    meta = build.encoder_meta(cfg, in_channels, encoder, network)
    step = int(state["step"])
    say(
        f"{run_dir} is not finished ({status.describe()}): using the {network} encoder of "
        f"checkpoints/last.pt, step {step}",
    )
    encoder = encoder.to(device).eval()
    return RunEncoder(encoder, cfg, meta, encoder_sha256(encoder), step, "checkpoints/last.pt")


def _in_channels(cfg: Config, run_dir: Path, state: dict[str, Any]) -> int:
    """The image channels the run trained on: the checkpoint's record, else metrics.jsonl's
    setup line, else the config or the dataset's own channels."""
    recorded = state.get("trainer", {}).get("in_channels")
    if recorded is not None:
        return int(recorded)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines()[:1]:
            setup = json.loads(line)
            if "in_channels" in setup:
                return int(setup["in_channels"])
    if cfg.data.channels is not None:
        return int(cfg.data.channels)
    return 1 if cfg.data.dataset in ("fashion_mnist", "mnist", "digits") else 3
