"""A run's encoder artefact: what its file says, how it is written, read back and rebuilt.

Two forms of one format, neither with a pickle or code in it:

* **Run directory** (written at the end of ``selfsup pretrain`` by :func:`save_encoder`, read
  by :func:`load_encoder_state`): ``encoder.safetensors`` holds the encoder's ``state_dict``
  under its own keys, and ``encoder.json`` the metadata of :func:`encoder_meta`::

      {"format": "selfsup-encoder/1", "method": "simclr", "network": "online",
       "backbone": {"name", "width", "cifar_stem", "zero_init_residual", "patch_size", "pool",
                    "drop_path_rate", "freeze_patch_embed"},
       "in_channels": 1, "feature_dim": 512, "image_size": 32,
       "mean": [0.28], "std": [0.35]}

  (``backbone`` is the run's ``BackboneConfig`` with ``cifar_stem`` resolved; ``network`` says
  which of the method's networks the weights are, ``"online"`` or ``"target"`` (the EMA copy:
  DINO's teacher); files written before it existed are online encoders. An encoder that converts
  its RGB input to CIE L inside (Colorization: :class:`~selfsup.backbones.LightnessEncoder`,
  weights under ``trunk.``) adds ``"encoder_input": "lightness"``; without the key the
  encoder takes the images as they are.)
* **Export** (``selfsup export``): the same metadata with ``"format": "selfsup-export/1"``
  (:func:`export_metadata`) plus ``artefact`` (the file format), the ``input`` / ``output``
  contract, ``torch_version``, ``onnx_opset`` (ONNX only) and ``source_encoder_sha256``.
  It is stored as JSON under the key ``"selfsup"``: in the safetensors header (whose tensors
  are the encoder's weights, same keys as the run's file), in the TorchScript archive's extra
  file ``selfsup.json``, or in the ONNX model's ``metadata_props``. Every form holds
  :class:`NormalizedEncoder`: float images in ``[0, 1]``, normalised inside.
  :func:`read_export_metadata` reads any form back; :func:`load_exported` rebuilds a
  safetensors export from that one file.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = [
    "ENCODER_FORMAT",
    "EXPORT_FORMAT",
    "FORMATS",
    "ONNX_OPSET",
    "ExportError",
    "NormalizedEncoder",
    "encoder_meta",
    "export_metadata",
    "load_encoder_state",
    "load_exported",
    "read_export_metadata",
    "save_encoder",
]

ENCODER_FORMAT = "selfsup-encoder/1"  # encoder.json of a run directory
EXPORT_FORMAT = "selfsup-export/1"  # metadata inside an exported file
ENCODER_WEIGHTS, ENCODER_META = "encoder.safetensors", "encoder.json"
FORMATS = ("safetensors", "torchscript", "onnx")
SUFFIXES = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
# Opset 18 is the one torch's exporter translates to natively (no version conversion pass) and
# runs on ONNX Runtime >= 1.14.
ONNX_OPSET = 18
METADATA_KEY = "selfsup"  # safetensors header key and ONNX metadata_props key
TORCHSCRIPT_EXTRA = "selfsup.json"  # extra file inside the TorchScript archive


class ExportError(ValueError):
    """An export that cannot be made or an artefact that cannot be read; the message says why."""


# -- run directory: encoder.safetensors + encoder.json ---------------------------------------------
def encoder_meta(
    cfg: Config, in_channels: int, encoder: nn.Module, network: str = "online"
) -> dict[str, Any]:
    """What a reader needs to rebuild and feed the exported encoder, and which of the method's
    networks it is (``"online"``, or ``"target"``: the EMA copy, e.g. DINO's teacher)."""
    from selfsup.backbones import LightnessEncoder, feature_dim
    from selfsup.build import cifar_stem

    meta: dict[str, Any] = {
        "format": ENCODER_FORMAT,
        "method": cfg.method,
        "network": network,
        "backbone": {**cfg.backbone.model_dump(), "cifar_stem": cifar_stem(cfg)},
        "in_channels": in_channels,
        "feature_dim": feature_dim(encoder),
        "image_size": cfg.views.size,
        "mean": cfg.views.mean,
        "std": cfg.views.std,
    }
    if isinstance(encoder, LightnessEncoder):
        meta["encoder_input"] = "lightness"
    return meta


def save_encoder(run_dir: Path, encoder: nn.Module, meta: dict[str, Any]) -> Path:
    """Export the encoder as ``encoder.safetensors`` with its rebuild recipe in ``encoder.json``."""
    from selfsup.train.checkpoint import atomic_write  # checkpoint re-exports this module

    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    weights = run_dir / ENCODER_WEIGHTS
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(meta, indent=2)

    def write_meta(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(run_dir / ENCODER_META, write_meta)
    return weights


def load_encoder_state(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read an exported encoder's weights and metadata (no pickle involved)."""
    from selfsup.train.checkpoint import CheckpointError

    run_dir = Path(run_dir)
    weights, meta = run_dir / ENCODER_WEIGHTS, run_dir / ENCODER_META
    if not weights.is_file() or not meta.is_file():
        raise CheckpointError(
            f"{run_dir} has no exported encoder (encoder.safetensors + encoder.json); finish or "
            "resume the pre-training run first"
        )
    return load_file(str(weights)), json.loads(meta.read_text())


# -- the exported model ----------------------------------------------------------------------------
class NormalizedEncoder(nn.Module):
    """Float images in ``[0, 1]`` -> features: per-channel ``(x - mean) / std``, then ``encoder``.

    ``mean`` and ``std`` hold one value per channel, or one for all channels. The module has
    the backbone contract (``feature_dim``), so it is a drop-in encoder for raw ``[0, 1]`` images.

    Example:
        >>> from selfsup.backbones import FeatureBackbone
        >>> flat = FeatureBackbone(nn.Flatten(), feature_dim=2)
        >>> model = NormalizedEncoder(flat, mean=[0.5, 0.0], std=[0.25, 2.0])
        >>> model(torch.tensor([[[[0.75]], [[1.0]]]]))  # (0.75 - 0.5) / 0.25, (1 - 0) / 2
        tensor([[1.0000, 0.5000]])
    """

    def __init__(self, encoder: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) == 0 or len(mean) != len(std):
            raise ValueError(
                f"mean and std need the same number (>= 1) of entries, got {len(mean)} and "
                f"{len(std)}; give one value per channel, or one for all"
            )
        if not all(math.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"std entries must be finite and > 0, got {list(std)}")
        from selfsup.backbones import feature_dim

        self.encoder = encoder
        self.feature_dim = feature_dim(encoder)
        self.meta: dict[str, Any] = {}  # the export metadata, when loaded from a file
        # Not in the state dict: the statistics travel in the metadata, and the weights keep the
        # encoder's own keys.
        stats = {"mean": mean, "std": std}
        for name, values in stats.items():
            t = torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)  # [1, C or 1, 1, 1]
            self.register_buffer(name, t, persistent=False)
        self.mean: Tensor
        self.std: Tensor

    def forward(self, images: Tensor) -> Tensor:
        """``[B, C, H, W]`` float in ``[0, 1]`` -> ``[B, feature_dim]``."""
        if not images.is_floating_point():
            raise ValueError(
                f"expected float images in [0, 1], got {images.dtype}; convert uint8 pixels "
                "with images.float() / 255 (the model normalises by itself)"
            )
        return self.encoder((images - self.mean) / self.std)


# -- export metadata -------------------------------------------------------------------------------
def export_metadata(run_meta: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The artefact's self-description: the run's ``encoder.json`` plus the input/output contract."""
    missing = [
        k
        for k in ("backbone", "in_channels", "feature_dim", "image_size", "mean", "std")
        if run_meta.get(k) is None
    ]
    if missing:
        raise ExportError(
            f"encoder.json lacks {', '.join(missing)}; it was written by an older selfsup or "
            "edited by hand: resume the run (selfsup pretrain --resume RUN) to rewrite it"
        )
    channels, size = int(run_meta["in_channels"]), int(run_meta["image_size"])
    meta = {
        **{k: v for k, v in run_meta.items() if k != "format"},
        "network": run_meta.get("network", "online"),  # files before it existed: online
        "format": EXPORT_FORMAT,
        "artefact": fmt,
        "input": {
            "name": "images",
            "shape": ["batch", channels, size, size],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": "NCHW",
            "normalization": "inside: features = encoder((images - mean) / std); pass pixels / 255",
        },
        "output": {"name": "features", "shape": ["batch", int(run_meta["feature_dim"])]},
        "torch_version": torch.__version__,
    }
    if fmt == "onnx":
        meta["onnx_opset"] = ONNX_OPSET
    return meta


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    for name, suffix in SUFFIXES.items():
        if path.suffix == suffix:
            return name
    raise ExportError(
        f"cannot tell the format of {path} from its suffix; expected one of "
        f"{', '.join(SUFFIXES.values())}, or pass format= ({', '.join(FORMATS)})"
    )


def _import_onnx(purpose: str) -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ExportError(
            f"{purpose} needs the onnx package: pip install 'selfsup[export]'"
        ) from err
    return onnx


def read_export_metadata(path: str | Path, format: str | None = None) -> dict[str, Any]:
    """The metadata stored inside an exported artefact (format from the suffix unless given)."""
    path = Path(path)
    fmt = _format_of(path, format)
    if not path.is_file():
        raise FileNotFoundError(f"no exported encoder at {path}; run `selfsup export RUN` first")
    if fmt == "safetensors":
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(METADATA_KEY)
    elif fmt == "torchscript":
        extra = {TORCHSCRIPT_EXTRA: ""}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        raw = extra[TORCHSCRIPT_EXTRA]
        text = (raw.decode() if isinstance(raw, bytes) else raw) or None
    else:
        onnx = _import_onnx("reading ONNX metadata")
        model = onnx.load(str(path), load_external_data=False)
        text = {p.key: p.value for p in model.metadata_props}.get(METADATA_KEY)
    if text is None:
        raise ExportError(
            f"{path} carries no selfsup export metadata; for a run directory's own "
            "encoder.safetensors use selfsup.load_encoder(RUN), or export it with "
            "`selfsup export RUN`"
        )
    meta: dict[str, Any] = json.loads(text)
    if meta.get("format") != EXPORT_FORMAT:
        raise ExportError(
            f"{path} has export format {meta.get('format')!r}, this selfsup reads "
            f"{EXPORT_FORMAT!r}; re-export it with this version"
        )
    return meta


# -- the safetensors export: written and rebuilt from the one file ---------------------------------
def write_safetensors_export(model: NormalizedEncoder, path: Path, meta: dict[str, Any]) -> None:
    """The encoder's weights (its own keys) with ``meta`` as JSON in the safetensors header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})


def _encoder_from_meta(meta: dict[str, Any]) -> nn.Module:
    from selfsup.backbones import LightnessEncoder, build_backbone

    b = meta["backbone"]
    lightness = meta.get("encoder_input", "image") == "lightness"
    try:
        encoder = build_backbone(
            b["name"],
            1 if lightness else int(meta["in_channels"]),
            float(b["width"]),
            bool(b["cifar_stem"]),
            bool(b["zero_init_residual"]),
            image_size=int(meta["image_size"]),
            patch_size=int(b["patch_size"]),
            pool=str(b["pool"]),
        )
    except KeyError as err:
        raise ExportError(
            f"export metadata lacks backbone key {err}; re-export the run with this version"
        ) from None
    return LightnessEncoder(encoder, meta["mean"], meta["std"]) if lightness else encoder


def load_exported(path: str | Path) -> NormalizedEncoder:
    """Rebuild a ``--format safetensors`` export as a :class:`NormalizedEncoder` in eval mode.

    Only the file is read (no run directory, no pickle). The model takes float images in
    ``[0, 1]`` of ``meta["image_size"]`` pixels; its metadata is in ``model.meta``. Its
    parameters do not require gradients, so features come back as plain tensors; call
    ``model.requires_grad_(True)`` to fine-tune it.
    """
    path = Path(path)
    meta = read_export_metadata(path, "safetensors")
    encoder = _encoder_from_meta(meta)
    try:
        encoder.load_state_dict(load_file(str(path)))
    except RuntimeError as err:
        raise ExportError(
            f"the weights in {path} do not fit the {meta['backbone']['name']} its metadata "
            f"describes ({err}); the file was altered: export the run again"
        ) from None
    model = NormalizedEncoder(encoder, meta["mean"], meta["std"]).eval()
    model.requires_grad_(False)  # inference: features are plain tensors (re-enable to fine-tune)
    model.meta = meta
    return model
