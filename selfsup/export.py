"""Export a run's encoder as safetensors, TorchScript or ONNX, and prove it computes the same features.

Every format holds the same model, :class:`NormalizedEncoder`: it takes float32 images in
``[0, 1]`` (``[B, C, H, W]``, ``H = W = image_size``) and normalises them *inside*, so a user of the
artefact cannot forget the training statistics or apply them twice::

    features = encoder((images - mean) / std)        # [B, C, H, W] -> [B, feature_dim]

Callers only scale uint8 pixels by 1/255 (and resize to ``image_size``, as evaluation does).

* ``safetensors``: the encoder's weights (same keys as the run's ``encoder.safetensors``) with the
  metadata in the file header; :func:`load_exported` rebuilds the module from that one file,
  without the run directory. No pickle, no code.
* ``torchscript``: ``torch.jit.trace`` of the model in eval mode, metadata in the archive's extra
  file ``selfsup.json``. The batch size is free; the image size is fixed at trace time. PyTorch
  deprecates TorchScript; it stays here for libtorch (C++) users. Loading a TorchScript file
  runs its code: load only files you trust.
* ``onnx``: ``torch.onnx.export`` (the ``torch.export`` based exporter) at opset
  :data:`ONNX_OPSET` with a dynamic batch axis, input ``images`` and output ``features``;
  metadata in the model's ``metadata_props["selfsup"]``.

The metadata (:func:`read_export_metadata`) is the run's ``encoder.json`` (architecture, input
channels, image size, mean/std, feature dim) plus the input/output contract, the format and,
for ONNX, the opset.

After writing, :func:`export_encoder` runs the artefact (reloaded from disk: safetensors through
:func:`load_exported`, ``torch.jit.load``, ONNX Runtime) and the in-library encoder (the
evaluation path: ``EvalTransform`` on uint8 pixels, then the encoder) on the same random
images, at two batch sizes that differ from the one traced. It fails when the largest absolute
difference exceeds ``tolerance`` times the largest absolute feature; a failed export leaves no
file behind (artefacts are written to a temporary file and renamed only when the check passes).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

__all__ = [
    "DEFAULT_TOLERANCE",
    "EXPORT_FORMAT",
    "FORMATS",
    "ONNX_OPSET",
    "ExportCheck",
    "ExportCheckError",
    "ExportError",
    "ExportResult",
    "NormalizedEncoder",
    "check_export",
    "describe_export",
    "export_encoder",
    "export_metadata",
    "load_exported",
    "read_export_metadata",
]

FORMATS = ("safetensors", "torchscript", "onnx")
SUFFIXES = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}
EXPORT_FORMAT = "selfsup-export/1"
# Opset 18 is the one torch's exporter translates to natively (no version conversion pass) and
# runs on ONNX Runtime >= 1.14.
ONNX_OPSET = 18
DEFAULT_TOLERANCE = 1e-4
_METADATA_KEY = "selfsup"  # safetensors header key and ONNX metadata_props key
_TORCHSCRIPT_EXTRA = "selfsup.json"  # extra file inside the TorchScript archive
_TRACE_BATCH = 2  # example batch for tracing; the check uses other batch sizes
_CHECK_SEED = 0


class ExportError(ValueError):
    """An export that cannot be made or an artefact that cannot be read; the message says why."""


class ExportCheckError(RuntimeError):
    """The exported model's features differ from the in-library encoder's beyond the tolerance."""


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


@dataclass(frozen=True)
class ExportCheck:
    """Exported vs in-library features on the same random images."""

    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    feature_scale: float  # max |feature| of the in-library encoder
    tolerance: float  # relative to feature_scale

    @property
    def relative_diff(self) -> float:
        return self.max_abs_diff / max(self.feature_scale, torch.finfo(torch.float32).tiny)

    @property
    def passed(self) -> bool:
        return math.isfinite(self.max_abs_diff) and self.relative_diff <= self.tolerance


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_encoder` wrote (``check`` is None when the check was skipped)."""

    path: Path
    format: str
    size_bytes: int
    meta: dict[str, Any]
    check: ExportCheck | None


# -- metadata ---------------------------------------------------------------------------------------
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


def read_export_metadata(path: str | Path, format: str | None = None) -> dict[str, Any]:
    """The metadata stored inside an exported artefact (format from the suffix unless given)."""
    path = Path(path)
    fmt = _format_of(path, format)
    if not path.is_file():
        raise FileNotFoundError(f"no exported encoder at {path}; run `selfsup export RUN` first")
    if fmt == "safetensors":
        with safe_open(str(path), framework="pt") as handle:
            text = (handle.metadata() or {}).get(_METADATA_KEY)
    elif fmt == "torchscript":
        extra = {_TORCHSCRIPT_EXTRA: ""}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        raw = extra[_TORCHSCRIPT_EXTRA]
        text = (raw.decode() if isinstance(raw, bytes) else raw) or None
    else:
        onnx = _import_onnx("reading ONNX metadata")
        model = onnx.load(str(path), load_external_data=False)
        text = {p.key: p.value for p in model.metadata_props}.get(_METADATA_KEY)
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


# -- loading ----------------------------------------------------------------------------------------
def _encoder_from_meta(meta: dict[str, Any]) -> nn.Module:
    from selfsup.backbones import build_backbone

    b = meta["backbone"]
    try:
        return build_backbone(
            b["name"],
            int(meta["in_channels"]),
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


def load_exported(path: str | Path) -> NormalizedEncoder:
    """Rebuild a ``--format safetensors`` export as a :class:`NormalizedEncoder` in eval mode.

    Only the file is read (no run directory, no pickle). The model takes float images in
    ``[0, 1]`` of ``meta["image_size"]`` pixels; its metadata is in ``model.meta``.
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
    model.meta = meta
    return model


def _import_onnx(purpose: str) -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ExportError(
            f"{purpose} needs the onnx package: pip install 'selfsup[export]'"
        ) from err
    return onnx


def _onnx_runner(path: Path) -> Callable[[Tensor], Tensor]:
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ExportError(
            "checking an ONNX export needs onnxruntime: pip install 'selfsup[export]' "
            "(or skip the check with --no-check)"
        ) from err
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(x: Tensor) -> Tensor:
        (out,) = session.run(["features"], {"images": x.numpy()})
        return torch.from_numpy(out)

    return run


def _runner(path: Path, fmt: str) -> Callable[[Tensor], Tensor]:
    """Load the artefact at ``path`` and return ``[B, C, H, W] float -> [B, D]`` on the CPU."""
    if fmt == "onnx":
        return _onnx_runner(path)
    if fmt == "safetensors":
        module: nn.Module = load_exported(path)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return module(x)

    return run


# -- writing ----------------------------------------------------------------------------------------
def _write_safetensors(model: NormalizedEncoder, path: Path, meta: dict[str, Any]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()}
    save_file(tensors, str(path), metadata={_METADATA_KEY: json.dumps(meta)})


def _write_torchscript(
    model: NormalizedEncoder, example: Tensor, path: Path, meta: dict[str, Any]
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # The image size is fixed by design (shape checks become constants), and the check
        # below runs the saved file on other batch sizes; TorchScript's deprecation is known
        # and documented above.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={_TORCHSCRIPT_EXTRA: json.dumps(meta)})


def _write_onnx(
    model: NormalizedEncoder, example: Tensor, path: Path, meta: dict[str, Any]
) -> None:
    _import_onnx("ONNX export")
    try:
        program = torch.onnx.export(
            model,
            (example,),
            None,
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=["images"],
            output_names=["features"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
        )
    except ImportError as err:
        raise ExportError(
            f"ONNX export needs onnx and onnxscript ({err}): pip install 'selfsup[export]'"
        ) from err
    assert program is not None  # the dynamo exporter always returns the program
    program.model.metadata_props[_METADATA_KEY] = json.dumps(meta)
    program.save(str(path), external_data=False)


# -- check ------------------------------------------------------------------------------------------
def check_export(
    path: Path,
    fmt: str,
    reference: Callable[[Tensor], Tensor],
    meta: dict[str, Any],
    tolerance: float = DEFAULT_TOLERANCE,
    batch_size: int = 8,
) -> ExportCheck:
    """Compare the artefact at ``path`` with ``reference`` (uint8 images -> features).

    Random uint8 images of the exported shape go to ``reference`` as they are and to the
    artefact as ``images / 255``; batches of ``batch_size`` and of 1 are compared.
    Raises :class:`ExportCheckError` above ``tolerance * max |reference features|``.
    """
    stored = read_export_metadata(path, fmt)
    if stored != meta:
        raise ExportCheckError(f"the metadata read back from {path} differs from the one written")
    channels, size = int(meta["in_channels"]), int(meta["image_size"])
    gen = torch.Generator().manual_seed(_CHECK_SEED)
    images = torch.randint(0, 256, (batch_size, channels, size, size), generator=gen)
    images = images.to(torch.uint8)  # [N, C, S, S]
    run = _runner(path, fmt)
    max_diff, scale = 0.0, 0.0
    sizes = (batch_size, 1)
    for n in sizes:
        expected = reference(images[:n]).float()  # [n, D]
        got = run(images[:n].float() / 255).float()  # [n, D]
        if got.shape != expected.shape:
            raise ExportCheckError(
                f"the exported {fmt} model returned {tuple(got.shape)} for a batch of {n}, "
                f"the encoder {tuple(expected.shape)}; nothing was written"
            )
        max_diff = max(max_diff, (got - expected).abs().max().item())
        scale = max(scale, expected.abs().max().item())
    result = ExportCheck(sizes, max_diff, scale, tolerance)
    if not result.passed:
        raise ExportCheckError(
            f"the exported {fmt} model differs from the selfsup encoder by up to "
            f"{result.max_abs_diff:.3g} ({result.relative_diff:.3g} of the feature scale "
            f"{scale:.3g}), above the tolerance {tolerance:g}; nothing was written. Try another "
            "--format, or raise --tolerance if that difference is acceptable"
        )
    return result


# -- export -----------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_encoder(
    run_dir: str | Path,
    format: str = "safetensors",
    output: str | Path | None = None,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Export a run's encoder (normalisation inside) and, with ``check``, prove it matches.

    Args:
        run_dir: a run directory written by ``selfsup pretrain`` (``config.yaml``,
            ``encoder.safetensors``, ``encoder.json``).
        format: ``safetensors``, ``torchscript`` or ``onnx``.
        output: file to write (default ``RUN/export/encoder.{safetensors,pt,onnx}``); an
            existing file is replaced only after a passing check.
        check: run the artefact and the in-library encoder on the same random images.
        tolerance: largest accepted ``max |difference| / max |feature|``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or has no ``config.yaml``.
        CheckpointError: the run has no ``encoder.safetensors`` + ``encoder.json`` yet.
        ExportError: unknown format, missing optional packages, bad tolerance.
        ExportCheckError: the check failed (no file is written).
    """
    from selfsup import build
    from selfsup.eval.features import extract_features
    from selfsup.eval.run import load_encoder
    from selfsup.train.checkpoint import atomic_write

    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ExportError(f"tolerance must be a finite number > 0, got {tolerance}; e.g. 1e-4")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist; pass a directory written by "
            "`selfsup pretrain` (it holds config.yaml and encoder.safetensors)"
        )
    run = load_encoder(run_dir, "cpu")
    meta = export_metadata(run.meta, format)
    meta["source_encoder_sha256"] = _sha256(run_dir / "encoder.safetensors")
    model = NormalizedEncoder(run.encoder, meta["mean"], meta["std"]).eval()
    path = Path(output) if output is not None else run_dir / "export" / f"encoder{SUFFIXES[format]}"
    channels, size = int(meta["in_channels"]), int(meta["image_size"])
    example = torch.rand(
        _TRACE_BATCH, channels, size, size, generator=torch.Generator().manual_seed(_CHECK_SEED)
    )  # [2, C, S, S]
    transform = build.eval_transform(run.cfg)

    def reference(images: Tensor) -> Tensor:
        # The evaluation path (`selfsup eval`, `selfsup embed`): uint8 -> EvalTransform -> encoder.
        labels = torch.zeros(len(images), dtype=torch.int64)
        return extract_features(run.encoder, [(images, labels)], transform)[0]

    outcome: list[ExportCheck] = []

    def write(tmp: Path) -> None:
        if format == "safetensors":
            _write_safetensors(model, tmp, meta)
        elif format == "torchscript":
            _write_torchscript(model, example, tmp, meta)
        else:
            _write_onnx(model, example, tmp, meta)
        if check:
            outcome.append(check_export(tmp, format, reference, meta, tolerance))
        # The temporary file is private (0600); an artefact is meant to be shared.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)

    atomic_write(path, write)
    return ExportResult(path, format, path.stat().st_size, meta, outcome[0] if outcome else None)


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def describe_export(result: ExportResult) -> str:
    """Two lines for the terminal: what was written where, and what the check measured."""
    m = result.meta
    lines = [
        f"exported {m['backbone']['name']} ({m['feature_dim']}-d features, input "
        f"[batch, {m['in_channels']}, {m['image_size']}, {m['image_size']}] float in [0, 1], "
        f"normalised inside) as {result.format}: {result.path} ({_human_size(result.size_bytes)})"
    ]
    c = result.check
    if c is None:
        lines.append("check: skipped (--no-check)")
    else:
        batches = " and ".join(str(n) for n in c.batch_sizes)
        lines.append(
            f"check: max |exported - selfsup| = {c.max_abs_diff:.3g} on random images "
            f"(batches of {batches}), {c.relative_diff:.3g} of the feature scale "
            f"{c.feature_scale:.3g}; tolerance {c.tolerance:g}: ok"
        )
    return "\n".join(lines)
