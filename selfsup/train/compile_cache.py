"""The compile cache that travels with a run directory: ``RUN/compile_cache.bin``.

``torch.compile`` keeps what it compiled in this machine's on-disk caches (inductor's, under
``/tmp/torchinductor_<user>`` unless ``TORCHINDUCTOR_CACHE_DIR`` says otherwise; selfsup leaves
them on), so a run resumed on the same machine finds its graphs there. A run resumed elsewhere
(another machine, a new container, a cleared /tmp) would compile from scratch: for it, the run
keeps ``torch.compiler.save_cache_artifacts()`` next to its checkpoints, and a resumed run hands
that file to ``torch.compiler.load_cache_artifacts()`` before its first compiled step.

What the artifacts are (torch 2.14): the entries this process wrote into inductor's FX-graph
cache and AOTAutograd's cache (generated Python wrapper code, kernel sources, graph metadata),
plus autotuning and profile-guided entries when there are any; never the model's weights.
Loading writes them back into those on-disk caches. On a CPU the compiled C++ kernels
themselves are not among them: g++ rebuilds them on the new machine, so a warm start still
pays that part (docs/reliability.md, "Compile cache").

Loading is running code: the file's container is torch's plain length-prefixed format, but the
cache entries it holds are pickles that torch unpickles, and code it executes, when a later
compile hits them. selfsup therefore loads a cache only from the run directory being resumed,
and only one this user account wrote: every cache selfsup saves has its SHA-256 appended to
``$XDG_CACHE_HOME/selfsup/trusted_compile_caches`` (``~/.cache/selfsup``), and a cache whose
digest is not listed there (a run directory someone else made) is ignored with a note, the
way a checkpoint is never unpickled from an untrusted source.

The format is bound to the torch version (torch keys its entries by its own build, so another
version's entries would never be used anyway): the file starts with one JSON line naming the
format and the torch version that wrote it, and a file from another version is ignored with a
note.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from selfsup.data.named import cache_dir
from selfsup.progress import say
from selfsup.train.checkpoint import CheckpointError, atomic_write

__all__ = ["CACHE_FILE", "CACHE_FORMAT", "CompileCache", "trusted_digests_file"]

CACHE_FILE = "compile_cache.bin"
CACHE_FORMAT = "selfsup-compile-cache/1"


def trusted_digests_file() -> Path:
    """The SHA-256 digests (one per line) of the compile caches this account has written."""
    return cache_dir() / "trusted_compile_caches"


def _digest(artifacts: bytes) -> str:
    return hashlib.sha256(artifacts).hexdigest()


def _is_trusted(artifacts: bytes) -> bool:
    try:
        listed = trusted_digests_file().read_text().split()
    except OSError:
        return False
    return _digest(artifacts) in listed


def _trust(artifacts: bytes) -> None:
    path = trusted_digests_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(_digest(artifacts) + "\n")


class CompileCache:
    """``RUN/compile_cache.bin``: found when a run resumes, loaded before its first compiled
    step, saved (by the writing rank) once the first compiled step has returned and again at
    checkpoints when later compiles added entries."""

    def __init__(self, run_dir: Path, writer: bool = True) -> None:
        self.path = Path(run_dir) / CACHE_FILE
        self.writer = writer  # False on the ranks of a distributed run other than 0
        self.status = "none"  # for the run's compile record: none | found | loaded | ignored: ...
        self._artifacts: bytes | None = None  # torch's bytes, once found and fit to load
        self._saved_size: int | None = None

    @property
    def warm(self) -> bool:
        """A cache from this torch version is there to load (or was loaded)."""
        return self.status in ("found", "loaded")

    def find(self) -> None:
        """Read the run's cache, if any, and keep it when this torch version wrote it; a file
        from another version or that selfsup did not write is ignored with a one-line note."""
        if not self.path.is_file():
            return
        header, _, artifacts = self.path.read_bytes().partition(b"\n")
        try:
            meta = json.loads(header)
            written_by = str(meta["torch"]) if meta.get("format") == CACHE_FORMAT else None
        except (ValueError, TypeError, KeyError, AttributeError):
            written_by = None
        if written_by is None:
            self.status = "ignored: not a selfsup compile cache"
        elif written_by != torch.__version__:
            self.status = f"ignored: written by torch {written_by}"
        elif not _is_trusted(artifacts):  # loading runs code: only this account's caches
            self.status = f"ignored: not written by this account (not in {trusted_digests_file()})"
        else:
            self.status, self._artifacts = "found", artifacts
            return
        say(
            f"note: {self.path} not loaded ({self.status.removeprefix('ignored: ')}; this is "
            f"torch {torch.__version__}): compiling without it"
        )

    def load(self) -> None:
        """Hand the found cache to torch (before the first compiled step). The file comes from
        the run directory being resumed, the user's own; a cache torch cannot read is skipped
        with a note (compiling then starts cold), never an error."""
        if self._artifacts is None:
            return
        artifacts, self._artifacts = self._artifacts, None
        try:
            info = torch.compiler.load_cache_artifacts(artifacts)
        except Exception as err:  # an optimisation only: never stop the run for it
            info, reason = None, f"{type(err).__name__}: {err}"
        else:
            reason = "torch could not read it"
        if info is None:
            self.status = f"ignored: {reason}"
            say(f"note: {self.path} not loaded ({reason}): compiling without it")
        else:
            self.status = "loaded"

    def save(self) -> None:
        """Write what this process has compiled so far, atomically, when it grew since the last
        write (entries are only ever added). A failed write is a warning: the run goes on."""
        if not self.writer:
            return
        saved = torch.compiler.save_cache_artifacts()
        if saved is None or len(saved[0]) == self._saved_size:
            return
        artifacts = saved[0]
        header = json.dumps({"format": CACHE_FORMAT, "torch": torch.__version__}).encode()

        def write(tmp: Path) -> None:
            tmp.write_bytes(header + b"\n" + artifacts)

        try:
            _trust(artifacts)  # first, so that a cache on disk is always one this account made
            atomic_write(self.path, write)
        except (CheckpointError, OSError) as err:
            say(f"warning: compile cache not saved ({err}); a resumed run compiles again")
            return
        self._saved_size = len(artifacts)
