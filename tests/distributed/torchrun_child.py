"""The worker script of the torchrun tests: ``selfsup pretrain`` with an optional SIGKILL.

``torchrun ... tests/distributed/torchrun_child.py KILL_RANK KILL_STEP -- <pretrain args>``
runs the real command line in every worker. On the first attempt (torchrun's restart count 0)
the worker of rank KILL_RANK kills itself with SIGKILL right after optimiser step KILL_STEP
(-1: never), as a crashed machine would; the library carries no test hook, the kill is a step
hook added here.
"""

from __future__ import annotations

import os
import signal
import sys

from selfsup.cli import main
from selfsup.train import trainer as trainer_module
from selfsup.train.distributed import current_context, restart_count


def _install_kill(kill_rank: int, kill_step: int) -> None:
    original_init = trainer_module.Trainer.__init__

    def init(self: trainer_module.Trainer, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]

        def maybe_die(trainer: trainer_module.Trainer) -> None:
            if trainer.step == kill_step and current_context().rank == kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)

        if restart_count() == 0:
            self.step_hooks.append(maybe_die)

    trainer_module.Trainer.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    kill_rank, kill_step = int(sys.argv[1]), int(sys.argv[2])
    assert sys.argv[3] == "--"
    if kill_step >= 0:
        _install_kill(kill_rank, kill_step)
    sys.exit(main(["pretrain", *sys.argv[4:]]))
