"""Ctrl-C during training: finish the step in flight and checkpoint, instead of losing it."""

from __future__ import annotations

import signal
import threading
from typing import Any

from tqdm import tqdm

__all__ = ["GracefulInterrupt"]


class GracefulInterrupt:
    """While active, the first Ctrl-C (SIGINT) only sets ``requested``: the trainer finishes the
    step in flight, writes a checkpoint and raises ``KeyboardInterrupt``. A second Ctrl-C raises
    at once. Installed only in the main thread and only over a Python-level handler (an ignored
    SIGINT, e.g. under ``nohup``, stays ignored)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        del signum, frame
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write(
            "interrupt: finishing the current step, then writing a checkpoint "
            "(Ctrl-C again stops at once, keeping the previous checkpoint)"
        )

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
