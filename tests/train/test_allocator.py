import os
import platform
import subprocess
import sys

import pytest

from selfsup.train.allocator import MALLOC_ENV, keep_freed_memory

# In a child process (the setting is process-wide): how many more blocks glibc serves by mmap
# once a 64 MiB buffer is allocated, read from mallinfo2 (glibc >= 2.33).
_CHILD = """
import ctypes, sys
from selfsup.train.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
mmapped = libc.mallinfo2().hblks - before
libc.free(block)
print(applied, mmapped)
"""


def _child(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return out[0], int(out[1])


def _glibc_with_mallinfo2() -> bool:
    name, version = platform.libc_ver()
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    return platform.system() == "Linux" and name == "glibc" and parts >= (2, 33)


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_keep_freed_memory_serves_large_blocks_from_the_heap_instead_of_fresh_mmap_pages():
    assert _child("default") == ("False", 1)  # glibc's default: a 64 MiB block is an mmap
    assert _child("keep") == ("True", 0)  # kept: from the heap, whose pages stay mapped
    # The opt-out keeps glibc's defaults.
    assert _child("keep", {MALLOC_ENV: "system"}) == ("False", 1)


def test_the_opt_out_is_honoured_in_this_process(monkeypatch):
    monkeypatch.setenv(MALLOC_ENV, "System")
    assert keep_freed_memory() is False
