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

The file formats and their metadata are :mod:`selfsup.artifact`; here, ``formats`` writes and
runs each of them, ``check`` compares an artefact with the library, and ``run`` exports a run
directory (:func:`export_encoder`) and describes the result (:func:`describe_export`).
"""

from selfsup.artifact import (
    EXPORT_FORMAT,
    FORMATS,
    ONNX_OPSET,
    ExportError,
    NormalizedEncoder,
    export_metadata,
    load_exported,
    read_export_metadata,
)
from selfsup.export.check import DEFAULT_TOLERANCE, ExportCheck, ExportCheckError, check_export
from selfsup.export.run import ExportResult, describe_export, export_encoder

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
