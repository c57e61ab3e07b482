"""Checkpoints written by earlier versions of selfsup, brought to the current layout.

A method's ``state_dict`` keys are part of the checkpoint format. When a release renames them,
:func:`upgrade_method_state` maps an old checkpoint's keys to the new names so that old run
directories still resume; where no mapping can exist (a layer that is gone), loading fails with
a message that names the version and the fix.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHECKPOINT_FORMAT", "upgrade_method_state"]

CHECKPOINT_FORMAT = "selfsup-checkpoint/1"


def upgrade_method_state(
    method: str, state: dict[str, Any], checkpoint_format: str
) -> dict[str, Any]:
    """The method ``state_dict`` of a checkpoint in ``checkpoint_format``, in today's layout."""
    del method, checkpoint_format
    return state
