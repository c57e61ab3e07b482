"""Checkpoints written by earlier versions of selfsup, brought to the current layout.

A method's ``state_dict`` keys are part of the checkpoint format. When a release renames them,
:func:`upgrade_method_state` maps an old checkpoint's keys to the new names so that old run
directories still resume; where no mapping can exist (a layer that is gone), loading fails with
a message that names the version and the fix.

Formats:
    * ``selfsup-checkpoint/1`` (selfsup 0.1): the momentum networks were plain copies
      (``target.*`` for BYOL and MoCo v2/v3, ``teacher.*`` for DINO) with the latest momentum
      in ``target_momentum`` / ``teacher_momentum``; DINO's center lived in ``loss_fn``.
    * ``selfsup-checkpoint/2``: every momentum network is an
      :class:`~selfsup.nn.ema.EMATarget` (``target.module.*``, ``target.momentum``); DINO's
      loss is ``criterion``. BYOL's projector and predictor end in a Linear without bias.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "upgrade_method_state"]

CHECKPOINT_FORMAT = "selfsup-checkpoint/2"
_FORMATS = ("selfsup-checkpoint/1", CHECKPOINT_FORMAT)

# Format 1 -> 2: (old prefix, new prefix), first match wins. Buffers renamed whole.
_RENAMES_V1 = {
    "byol": [("target.", "target.module."), ("target_momentum", "target.momentum")],
    "moco": [("target.", "target.module.")],
    "mocov3": [("target.", "target.module."), ("target_momentum", "target.momentum")],
    "dino": [
        ("teacher.", "target.module."),
        ("teacher_momentum", "target.momentum"),
        ("loss_fn.", "criterion."),
    ],
}


def _rename(key: str, renames: list[tuple[str, str]]) -> str:
    for old, new in renames:
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key[len(old) :]
    return key


def upgrade_method_state(
    method: str, state: dict[str, Any], checkpoint_format: str
) -> dict[str, Any]:
    """The method ``state_dict`` of a checkpoint in ``checkpoint_format``, in today's layout.

    Raises:
        ValueError: the format is unknown (a newer selfsup wrote it), or the old layout cannot
            be mapped (BYOL heads of format 1 had a bias that no longer exists).

    Example:
        >>> old = {"teacher.0.weight": 1, "teacher_momentum": 2, "loss_fn.center": 3}
        >>> sorted(upgrade_method_state("dino", old, "selfsup-checkpoint/1"))
        ['criterion.center', 'target.module.0.weight', 'target.momentum']
    """
    if checkpoint_format not in _FORMATS:
        raise ValueError(
            f"checkpoint format {checkpoint_format!r} is not one this selfsup reads "
            f"({', '.join(_FORMATS)}); it was written by another version of selfsup: resume "
            "it with that version, or upgrade selfsup"
        )
    if checkpoint_format == CHECKPOINT_FORMAT:
        return state
    if method == "byol" and any(
        k.endswith("3.bias") for k in state if "projector" in k or "predictor" in k
    ):
        raise ValueError(
            "this BYOL checkpoint was written by selfsup 0.1 (selfsup-checkpoint/1), whose "
            "projector and predictor end in a Linear with a bias; selfsup now follows the "
            "official heads (no bias there), so the run cannot resume exactly. Its encoder "
            "(encoder.safetensors) still evaluates and exports; start a new run to train further, "
            "or resume with selfsup 0.1"
        )
    renames = _RENAMES_V1.get(method, [])
    upgraded = {_rename(key, renames): value for key, value in state.items()}
    if method == "moco" and "target.momentum" not in upgraded:
        # Format 1 kept no momentum buffer for MoCo v2. The buffer only records the latest
        # update for logging (MoCo v2 logs none) and the next update overwrites it.
        upgraded["target.momentum"] = torch.tensor(0.999)
    return upgraded
