"""Keep freed CPU memory in the process, so that a training step does not page-fault its buffers
in again at every step.

glibc's ``malloc`` serves large blocks (its threshold adapts up to 32 MiB) with fresh ``mmap``
pages and returns them to the kernel on ``free``; the heap top is trimmed the same way. A CPU
training step allocates and frees the same activation buffers at every step (a ViT block's MLP
activations of a 256-image batch are 26 MB each), so every step pays a page fault, and a zeroed
page, for every 4 KiB it writes: on a 2-core machine this was a third of DINO-ViT's step
(bench/RESULTS.md, "the ViT step"). Turning off ``mmap`` for allocations and heap trimming keeps
the pages mapped after the first step, as the jemalloc/tcmalloc preloads of the CPU tuning
guides do, with nothing to install. The price: the process keeps its peak memory until it
exits, which a training process does anyway.

Process-wide, so the command line applies it (every ``selfsup`` command) and a library user
opts in by calling :func:`keep_freed_memory`; ``SELFSUP_MALLOC=system`` keeps glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["MALLOC_ENV", "keep_freed_memory"]

MALLOC_ENV = "SELFSUP_MALLOC"

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # free heap top (bytes) kept before trimming: the largest int


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory mapped in this process (no ``mmap`` blocks, no trimming).

    Returns True when applied; False where the C library is not glibc (macOS, musl, Windows),
    where ``mallopt`` refuses, or where the environment sets ``SELFSUP_MALLOC=system``.
    Calling it again is harmless.
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    trimmed = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    no_mmap = mallopt(_M_MMAP_MAX, 0)
    return bool(trimmed and no_mmap)
