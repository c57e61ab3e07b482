"""Feature extraction with a frozen encoder, for k-NN and linear-probe evaluation."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

__all__ = ["extract_features"]

# Features are kept on the device and copied to the host in blocks of about this size, so the
# loop does not wait on a device->host copy after every batch, yet device memory stays bounded.
_HOST_FLUSH_BYTES = 256 * 2**20


@torch.inference_mode()
def extract_features(
    encoder: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    transform: Callable[[Tensor], Tensor],
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``encoder`` over ``batches`` and collect its features and the labels.

    Each batch is ``(images, labels)``: uint8 images ``[B, C, H, W]`` and int64 labels ``[B]``.
    Images are moved to ``device`` first and then passed through ``transform`` (uint8 ->
    normalised float), so the normalisation runs on the accelerator. Encoder outputs of any
    shape ``[B, ...]`` are flattened to ``[B, D]`` (e.g. ``[B, C, 1, 1]`` pooled maps).

    The encoder runs in ``eval()`` mode, so BatchNorm uses its running statistics and
    dropout is off: the features of an image do not depend on the rest of its batch. Every
    submodule's training flag is restored afterwards, also when an error is raised.

    Returns:
        features: float32 ``[N, D]`` on the CPU.
        labels: int64 ``[N]`` on the CPU.

    The returned tensors are ordinary (not inference-mode) tensors, so they can be fed to a
    trainable linear probe directly.

    ``progress``, when given, is called with the number of images of each batch once it is
    encoded (e.g. :meth:`selfsup.progress.Phase.update`); nothing is printed otherwise.
    """
    device = torch.device(device)
    # Restore each module's own flag: a model may keep some parts (e.g. frozen BN) in eval
    # while the rest trains, and ``encoder.train(True)`` would undo that.
    modes = [(module, module.training) for module in encoder.modules()]
    encoder.eval()
    try:
        host_features: list[Tensor] = []
        host_labels: list[Tensor] = []
        pending: list[Tensor] = []
        pending_bytes = 0
        width: int | None = None
        for index, (images, labels) in enumerate(batches):
            _check_batch(index, images, labels)
            x = transform(images.to(device, non_blocking=True))  # [B, C, H, W] float
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out = encoder(x)
            if not isinstance(out, Tensor) or out.ndim < 2 or out.shape[0] != images.shape[0]:
                got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                raise ValueError(
                    f"encoder output for batch {index} is {got}, expected a tensor [B, ...] with "
                    f"B={images.shape[0]}; pass the backbone that returns features (without the "
                    "projection head), or wrap it so it returns one tensor per image"
                )
            feats = out.flatten(1).float()  # [B, D]
            if width is None:
                width = feats.shape[1]
            elif feats.shape[1] != width:
                raise ValueError(
                    f"encoder returned {feats.shape[1]} features for batch {index} but {width} "
                    "before; use an encoder with a fixed output size (e.g. with global pooling)"
                )
            pending.append(feats)
            pending_bytes += feats.numel() * feats.element_size()
            host_labels.append(labels.to("cpu", torch.int64))
            if progress is not None:
                progress(images.shape[0])
            if pending_bytes >= _HOST_FLUSH_BYTES:
                host_features.append(_to_host(pending))
                pending, pending_bytes = [], 0
        if pending:
            host_features.append(_to_host(pending))
        if not host_features:
            raise ValueError(
                "batches yielded no samples; pass a non-empty loader (check the dataset split "
                "and that the iterable was not already exhausted)"
            )
        # Concatenate outside inference mode so callers get ordinary tensors that autograd
        # accepts (inference tensors cannot be saved for backward).
        with torch.inference_mode(False):
            features = torch.cat(host_features)  # [N, D]
            all_labels = torch.cat(host_labels)  # [N]
        return features, all_labels
    finally:
        for module, mode in modes:
            module.training = mode


def _check_batch(index: int, images: Tensor, labels: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is ``[B, C, H, W]`` and ``labels`` is ``[B]``."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"batch {index}: images must be a tensor [B, C, H, W], got {got}; "
            "yield (images, labels) pairs with images batched along dim 0"
        )
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"batch {index}: labels must be a tensor [B] with B={images.shape[0]}, got {got}; "
            "yield one integer label per image (use zeros for unlabelled data)"
        )


def _to_host(chunks: list[Tensor]) -> Tensor:
    """Concatenate device tensors ``[b_i, D]`` and copy them to the CPU as one ``[sum b_i, D]``."""
    return torch.cat(chunks).cpu()
