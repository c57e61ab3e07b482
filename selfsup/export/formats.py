"""Write a :class:`NormalizedEncoder` in each export format, and load a written file to run it.

The three writers take the same model and metadata (see :mod:`selfsup.artifact` for where each
format keeps it); a runner loads a written file the way a consumer would and maps float images
``[B, C, H, W]`` to features ``[B, D]`` on the CPU.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfsup.artifact import (
    METADATA_KEY,
    ONNX_OPSET,
    TORCHSCRIPT_EXTRA,
    ExportError,
    NormalizedEncoder,
    _import_onnx,
    load_exported,
    write_safetensors_export,
)

__all__ = ["runner", "write_artefact"]


def write_artefact(
    fmt: str, model: NormalizedEncoder, example: Tensor, path: Path, meta: dict[str, Any]
) -> None:
    """Write ``model`` with ``meta`` to ``path`` as ``fmt``; ``example`` is the traced input."""
    if fmt == "safetensors":
        write_safetensors_export(model, path, meta)
    elif fmt == "torchscript":
        _write_torchscript(model, example, path, meta)
    else:
        _write_onnx(model, example, path, meta)


def _write_torchscript(
    model: NormalizedEncoder, example: Tensor, path: Path, meta: dict[str, Any]
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # The image size is fixed by design (shape checks become constants), and the check
        # runs the saved file on other batch sizes; TorchScript's deprecation is known and
        # documented in selfsup.export.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*is deprecated", category=FutureWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(meta)})


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
    program.model.metadata_props[METADATA_KEY] = json.dumps(meta)
    program.save(str(path), external_data=False)


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


def runner(path: Path, fmt: str) -> Callable[[Tensor], Tensor]:
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
