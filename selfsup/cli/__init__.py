"""The ``selfsup`` command: pretrain, eval, embed, export, viz, report, bench, lab, demo.

Every command reads a YAML config plus ``key=value`` overrides; ``selfsup pretrain --help`` lists
every option with its meaning and safe range. Bad input ends with one line that names the problem
and the fix (exit code 2), never a traceback. Progress and warnings go to stderr (one
``warning: <message>`` line per distinct warning), results to stdout. The process keeps freed
memory mapped (:mod:`selfsup.train.allocator`) so that CPU steps do not page-fault.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import torch

from selfsup.cli.parser import build_parser
from selfsup.cli.run_commands import EXIT_USAGE, demo_config
from selfsup.config import ConfigError
from selfsup.progress import one_line_warnings
from selfsup.train.allocator import keep_freed_memory

__all__ = ["EXIT_USAGE", "build_parser", "demo_config", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    from selfsup.data import DatasetNotFoundError
    from selfsup.train.checkpoint import CheckpointError
    from selfsup.train.trainer import NonFiniteLossError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow the flags too (`eval finetune RUN --labels 1% k=v`):
    # argparse stops filling the positional list at the first flag.
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    torch.set_float32_matmul_precision("high")
    keep_freed_memory()  # no page faults on every step's buffers (SELFSUP_MALLOC=system: off)
    try:
        with one_line_warnings():
            return int(args.func(args))
    except (
        ConfigError,
        DatasetNotFoundError,
        CheckpointError,
        NonFiniteLossError,
        FileNotFoundError,
        ValueError,
    ) as err:
        rank = os.environ.get("RANK", "0")  # under torchrun: which worker says it
        where = "" if rank == "0" else f" (rank {rank})"
        print(f"selfsup {args.command}{where}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
