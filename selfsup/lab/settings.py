"""How a lab run is sized: where it writes, on which data, how long, with which seeds; the
``--tiny`` size the tests use; and the time estimates ``selfsup lab --list`` prints.

Every arm trains one preset of ``configs/`` (the ones a user would start from) with the claim's
changes, for a budget in epochs of the training data (``--scale`` multiplies it), and the lab's
own fixed settings (:data:`LAB_TRAIN`): no online k-NN or probe (their cost is not the method's),
no compilation (``auto`` could switch mid-run and a run must be the same on every rerun), a
checkpoint every tenth of the run (an interrupted arm loses at most that), and a linear
warm-up of :data:`WARMUP_SHARE` of the run instead of the preset's (the presets' warm-ups are
sized for runs of 3-20 epochs; a lab arm is often one).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_LAB_DIR",
    "EVAL_SECONDS",
    "LAB_TRAIN",
    "THROUGHPUT",
    "TINY_LAB_DIR",
    "TRAIN_IMAGES",
    "WARMUP_SHARE",
    "LabSettings",
    "eval_overrides",
    "presets_dir",
    "tiny_overrides",
]

DEFAULT_LAB_DIR = "runs/lab"
TINY_LAB_DIR = "runs/lab-tiny"  # --tiny results never mix with the real ones
WARMUP_SHARE = 0.1  # linear warm-up: this share of each arm's run
TINY_STEPS = 4  # training steps of a --tiny arm (times --scale)
FINETUNE_LABELS = "10%"  # the labelled share fine-tuning trains on

# Fixed for every arm: what a lab arm measures is the method's training, repeatably.
LAB_TRAIN = (
    "train.compile=false",
    "train.knn_every=0",
    "train.online_linear=false",
    "train.keep_best=0",
    "train.tensorboard=false",
    "train.progress=false",
)

# Evaluation settings of every measure (the result cache is keyed by them): a 30-epoch linear
# probe (the demo's) and a 3-epoch fine-tuning with a 0.3-epoch warm-up.
EVAL = ("eval.linear_epochs=30", "eval.finetune_epochs=3", "eval.finetune_warmup_epochs=0.3")
TINY_EVAL = (
    "eval.linear_epochs=3",
    "eval.finetune_epochs=1",
    "eval.finetune_warmup_epochs=0",
    "eval.finetune_batch_size=64",
)

# The tests' sizes (tests/conftest.py): 8 px digits, a ResNet-18 x0.125, heads of 16-32 units.
TINY_COMMON = (
    "data.dataset=digits",
    "backbone.width=0.125",
    "views.size=8",
    "train.batch_size=64",
    "train.precision=fp32",
)
TINY_METHOD: dict[str, tuple[str, ...]] = {
    "simclr": ("simclr.proj_hidden_dim=32", "simclr.proj_out_dim=16"),
    "moco": ("moco.queue_size=128", "moco.proj_hidden_dim=32", "moco.proj_out_dim=16"),
    "byol": ("byol.proj_hidden_dim=32", "byol.pred_hidden_dim=32", "byol.proj_out_dim=16"),
    "vicreg": ("vicreg.proj_hidden_dim=32", "vicreg.proj_out_dim=32"),
    "rotation": ("rotation.hidden_dim=32",),
    "mae": (
        "backbone.patch_size=2",
        "mae.decoder_dim=32",
        "mae.decoder_depth=1",
        "mae.decoder_heads=4",
    ),
    "dino": (
        "views.size=16",
        "views.local_size=8",
        "views.local_crops=2",
        "dino.out_dim=64",
        "dino.hidden_dim=32",
        "dino.bottleneck_dim=16",
    ),
}

# Training images per epoch, for budgets and estimates without loading the data.
TRAIN_IMAGES = {"fashion_mnist": 60000, "mnist": 60000, "cifar10": 50000, "digits": 1437}

# Training-step images/s of each preset on the 2-core CPU of bench/RESULTS.md ("Throughput per
# method": simclr 784, moco 814, byol 609, mae 421 end-to-end; DINO ~300 with its local crops,
# rotation ~1.6x a SimCLR step per image, VICReg 554 in its time-to-accuracy run), rounded down
# to the slower sessions. At the presets' batch of 256: smaller batches run slower per image.
THROUGHPUT = {
    "simclr": 700.0,
    "moco": 750.0,
    "byol": 600.0,
    "mae": 400.0,
    "dino": 300.0,
    "vicreg": 550.0,
    "rotation": 450.0,
}
# Seconds of each measure per arm on Fashion-MNIST (rough: features of 70000 images take ~15 s
# on that CPU; a 30-epoch linear probe on 128-d features ~10 s; fine-tuning a vit_micro for 3
# epochs on 6000 images with its validation ~120 s: the lab's first full run measured ~140 s of
# measuring per MAE arm, bench/RESULTS.md "Issue #17").
EVAL_SECONDS = {
    "knn": 15.0,
    "linear": 10.0,
    "linear_z": 25.0,
    "feature_std": 0.0,
    "finetune": 120.0,
}


def presets_dir() -> Path:
    """``configs/`` of the selfsup checkout (the presets the claims start from)."""
    return Path(__file__).resolve().parents[2] / "configs"


def tiny_overrides(method: str) -> tuple[str, ...]:
    """The ``--tiny`` size of ``method``'s preset: digits, a tiny network, small heads."""
    return TINY_COMMON + TINY_METHOD.get(method, ())


def eval_overrides(tiny: bool) -> tuple[str, ...]:
    return TINY_EVAL if tiny else EVAL


@dataclass(frozen=True)
class LabSettings:
    """One ``selfsup lab`` invocation: where, on what, how long, which seeds."""

    lab_dir: Path = Path(DEFAULT_LAB_DIR)
    data: str = "fashion_mnist"
    scale: float = 1.0
    seeds: tuple[int, ...] | None = None  # None: each claim's own seeds
    tiny: bool = False
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"--scale must be > 0 (1 = the claims' budgets), got {self.scale}")
        if self.seeds is not None and not self.seeds:
            raise ValueError("--seeds needs at least one seed, e.g. --seeds 0,1")

    @property
    def dataset(self) -> str:
        return "digits" if self.tiny else self.data

    def seeds_for(self, default: Sequence[int]) -> tuple[int, ...]:
        return tuple(self.seeds) if self.seeds is not None else tuple(default)

    def command(self, claim: str, seeds: Sequence[int]) -> str:
        """The command line that reproduces a claim's rows with these settings."""
        parts = ["selfsup", "lab", claim]
        if self.tiny:
            parts.append("--tiny")
        elif self.data != "fashion_mnist":
            parts += ["--data", self.data]
        if self.scale != 1:
            parts += ["--scale", f"{self.scale:g}"]
        parts += ["--seeds", ",".join(str(s) for s in seeds)]
        if self.lab_dir != Path(TINY_LAB_DIR if self.tiny else DEFAULT_LAB_DIR):
            parts += ["--lab-dir", str(self.lab_dir)]
        return shlex.join(parts)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lab_dir"] = str(self.lab_dir)
        out["seeds"] = list(self.seeds) if self.seeds is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabSettings:
        seeds = data.get("seeds")
        return cls(
            lab_dir=Path(data.get("lab_dir", DEFAULT_LAB_DIR)),
            data=str(data.get("data", "fashion_mnist")),
            scale=float(data.get("scale", 1.0)),
            seeds=tuple(int(s) for s in seeds) if seeds is not None else None,
            tiny=bool(data.get("tiny", False)),
            device=str(data.get("device", "auto")),
        )
