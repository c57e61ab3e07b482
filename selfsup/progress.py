"""Progress reports: a tqdm bar on a terminal, plain lines at a steady cadence elsewhere.

Every progress message of selfsup goes through :func:`say`, to **stderr**, with ``tqdm.write``
so that a bar in flight is redrawn below the message instead of being broken. Results (tables,
``done:`` lines) are printed by the CLI on stdout, so ``selfsup eval RUN > table.txt`` keeps
only the results and a log of stderr keeps the progress.

- :class:`ProgressStyle`: whether to draw a bar (``None``: when stderr is a terminal) and the
  cadence of plain lines when there is no bar (``every_s``; 0 = none).
- :class:`Reporter`: countable work (steps, images, epochs) as a bar, or as a line
  ``<desc>: 1200/5000 images, elapsed 12s, ETA 38s`` every ``every_s`` seconds.
- :func:`phase`: one step of a longer job: ``<what> ...`` when it starts, ``<what>: <result> in
  12.3 s`` when it ends, and a :class:`Reporter` in between when the work is countable.
- :func:`one_line_warnings`: Python warnings as one ``warning: <message>`` line each, each
  distinct message once (the CLI wraps every command in it).

Library functions that are building blocks (feature extraction, the linear probe) take a
``progress: ProgressStyle | None`` argument and stay quiet with the default ``None``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from selfsup.config.sections import TrainConfig

__all__ = [
    "Phase",
    "ProgressStyle",
    "Reporter",
    "format_duration",
    "format_seconds",
    "one_line_warnings",
    "phase",
    "progress_bar",
    "say",
    "set_quiet",
]

# The clock of every report; tests replace it with a fake one.
now: Callable[[], float] = time.perf_counter


# False in the processes of a distributed run other than rank 0 (set_quiet): one voice speaks.
_speaking = True


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress line and bar of this process."""
    global _speaking
    _speaking = not quiet


def say(message: str) -> None:
    """Print one progress/status line on stderr without breaking a tqdm bar."""
    if _speaking:
        tqdm.write(message, file=sys.stderr)


def stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty is not None and isatty())


@dataclass(frozen=True)
class ProgressStyle:
    """How progress is shown: ``bar`` True/False forces the bar on/off (None: a bar when stderr
    is a terminal); without a bar, a plain line every ``every_s`` seconds (0: none)."""

    bar: bool | None = None
    every_s: float = 30.0

    @classmethod
    def of(cls, train: TrainConfig) -> ProgressStyle:
        """The style ``train.progress`` and ``train.progress_every_s`` ask for."""
        return cls(train.progress, train.progress_every_s)

    def shows_bar(self) -> bool:
        return stderr_is_terminal() if self.bar is None else self.bar


def format_duration(seconds: float) -> str:
    """``42s``, ``1m05s``, ``2h03m``, ``3d04h`` (``?`` when unknown)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_seconds(seconds: float) -> str:
    """``12.3 s`` below a minute, else :func:`format_duration`."""
    return f"{seconds:.1f} s" if seconds < 60 else format_duration(seconds)


def progress_bar(desc: str, total: int, initial: int = 0, unit: str = "it") -> tqdm[Any]:
    """A tqdm bar on stderr that is drawn whether or not stderr is a terminal and disappears
    when closed (callers decide whether to show one: :meth:`ProgressStyle.shows_bar`)."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
        disable=not _speaking,
    )


class Reporter:
    """Progress of ``total`` units of work: a tqdm bar when the style shows one, else a plain
    line ``<desc>: <done>/<total> <unit>, elapsed ..., ETA ...`` every ``every_s`` seconds and,
    when one was printed, a last one at :meth:`close`."""

    def __init__(
        self,
        desc: str,
        total: int,
        unit: str = "",
        style: ProgressStyle | None = None,
        initial: int = 0,
    ) -> None:
        style = style or ProgressStyle()
        self.desc, self.total, self.unit = desc, total, unit
        self.done = self._initial = initial
        self.start = self._last_line = now()
        self.lines = 0  # plain lines printed
        self._printed = -1  # the count the last plain line showed
        self.bar = progress_bar(desc, total, initial, unit or "it") if style.shows_bar() else None
        self.every_s = 0.0 if self.bar is not None else style.every_s

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.every_s > 0:
            t = now()
            if t - self._last_line >= self.every_s:
                self.line(t=t)

    def eta(self, t: float) -> float:
        """Seconds left at the rate measured since the start."""
        work = self.done - self._initial
        return (self.total - self.done) * (t - self.start) / work if work > 0 else float("nan")

    def line(self, detail: str = "", t: float | None = None) -> None:
        """Print the plain line (at time ``t``, default now); ``detail`` follows the count."""
        t = now() if t is None else t
        unit = f" {self.unit}" if self.unit else ""
        say(
            f"{self.desc}: {self.done}/{self.total}{unit}{detail}, elapsed "
            f"{format_duration(t - self.start)}, ETA {format_duration(self.eta(t))}"
        )
        self._last_line, self._printed = t, self.done
        self.lines += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.lines and self.done != self._printed:
            self.line()


class Phase:
    """What :func:`phase` yields: ``update(n)`` counts work done, ``result`` is printed at the
    end (``done`` when not set). A quiet phase (``style=None``) prints nothing."""

    def __init__(
        self, what: str, total: int | None, unit: str, style: ProgressStyle | None
    ) -> None:
        self.what = what
        self.quiet = style is None
        self.result = ""
        self.start = now()
        self.reporter = (
            Reporter(what, total, unit, style) if style is not None and total is not None else None
        )

    def update(self, n: int = 1) -> None:
        if self.reporter is not None:
            self.reporter.update(n)

    def elapsed(self) -> float:
        return now() - self.start


@contextmanager
def phase(
    what: str,
    doing: str = "",
    total: int | None = None,
    unit: str = "images",
    style: ProgressStyle | None = None,
) -> Iterator[Phase]:
    """Announce ``what`` (``<what>: <doing> ...``), report ``total`` units of work as they are
    counted with ``Phase.update``, and end with ``<what>: <result> in 12.3 s`` (``done`` when no
    result is set; nothing when the block raises). ``style=None`` is quiet.
    """
    step = Phase(what, total, unit, style)
    if step.quiet:
        yield step
        return
    say(f"{what}: {doing} ..." if doing else f"{what} ...")
    try:
        yield step
    finally:
        if step.reporter is not None:
            step.reporter.close()
    say(f"{what}: {step.result or 'done'} in {format_seconds(step.elapsed())}")


class _WarningPrinter:
    """``warnings.showwarning`` that prints ``warning: <message>`` once per distinct message."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())  # one line, whatever the message holds
        if text not in self.seen:
            self.seen.add(text)
            say(f"warning: {text}")


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show Python warnings as ``warning: <message>`` on stderr (no source line, file or line
    number), each distinct message once; the filters (what is shown at all) are unchanged."""
    with warnings.catch_warnings():
        warnings.showwarning = _WarningPrinter()
        yield
