"""Whether a run compiles its training step (``train.compile``), decided in one place.

* ``true`` compiles from the first step; ``false`` never does.
* ``auto`` (default) compiles when it pays back within the run. It times the first steps
  uncompiled (:data:`TIMED_STEPS` of them after the first, which warms up, leaving out a step
  that follows an epoch's end), then compiles iff the time the remaining steps would save,
  ``remaining_steps * step_s * (1 - 1/speedup)``, exceeds :data:`PAYBACK_MARGIN` times the
  compile time. Speed-up and compile time come from :data:`MEASURED`, per method, backbone
  family (:func:`compile_key`: ``dino`` is DINO with a ResNet, ``dino+vit`` with a ViT) and
  kind of device (:func:`selfsup.train.device.device_kind`: ``cpu+amx``, ``cpu``, ``cuda``; the
  same step gains from compiling on an AMX CPU and loses on another); a method or device not
  measured there, a backend other than inductor, or a run too
  short to time stays uncompiled. Tiny runs (the tests') never compile: their few steps cannot
  save the compile time the table charges.

The decision and its reason are printed once (on the plan line, or when auto has timed its
steps) and recorded in ``metrics.jsonl`` as a ``compile`` record; a compiled run keeps its
compile cache in ``RUN/compile_cache.bin`` (:mod:`selfsup.train.compile_cache`), loaded when
the run resumes, and auto then counts the warm-cache compile time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from selfsup import progress
from selfsup.progress import format_duration, say
from selfsup.train.compile_cache import CompileCache
from selfsup.train.device import device_kind
from selfsup.train.distributed import broadcast_object

if TYPE_CHECKING:
    from torch import Tensor

    from selfsup.config import Config
    from selfsup.train.step import TrainStep

__all__ = [
    "MEASURED",
    "PAYBACK_MARGIN",
    "TIMED_STEPS",
    "CompileControl",
    "CompileDecision",
    "CompileGain",
    "compile_key",
    "compile_unavailable",
    "decide_compile",
    "unmeasured_reason",
]


@dataclass(frozen=True)
class CompileGain:
    """What ``torch.compile`` (inductor) did for one method on one kind of machine.

    Attributes:
        speedup: the full step's images/s of ``selfsup bench --compile`` over those of
            ``selfsup bench`` (same config, same machine); 1.24 = +24%.
        compile_s: seconds of the first compiled call that ``selfsup bench --compile`` reports,
            with inductor's caches empty (it also compiles the encoder alone, so it errs high).
        machine: where it was measured (CPU model and cores or GPU, precision).
        warm_compile_s: the first step of a compiled run resumed with inductor's caches empty
            (``TORCHINDUCTOR_CACHE_DIR`` an empty folder) and the run's ``compile_cache.bin``
            loaded, as on a new machine; None = not measured, and a warm run is charged
            ``compile_s``.
    """

    speedup: float
    compile_s: float
    machine: str
    warm_compile_s: float | None = None


# (compile_key, device_kind) -> measured gain, or None: not measured yet, so auto does not compile.
# Every entry must come from `selfsup bench --compile` (and `selfsup bench` for the eager img/s)
# on the machine it names, with the method's preset config (its JSON line's "device_kind" is the
# key's second half); a key that is missing counts as None. Nothing here is estimated.
_EPYC = "2-core AMD EPYC (AVX512-BF16, no AMX), bf16"
_XEON_AMX = "2-core Intel Xeon (AMX, AVX512-BF16), bf16"
MEASURED: dict[tuple[str, str], CompileGain | None] = {
    # `bash bench/compile_gains.sh simclr mocov3 byol` (2026-12-01, quiet): model step alone,
    # 10 steps, compiled / eager img/s; compile_s = the compiled bench's first call. An earlier
    # SimCLR figure of +24% (issue #6) did not repeat: compiling does not pay on this CPU yet.
    ("simclr", "cpu"): CompileGain(speedup=561 / 645, compile_s=81.0, machine=_EPYC),
    ("moco", "cpu"): None,
    ("mocov3", "cpu"): CompileGain(speedup=514 / 551, compile_s=121.0, machine=_EPYC),
    ("byol", "cpu"): CompileGain(speedup=558 / 501, compile_s=113.0, machine=_EPYC),
    # `selfsup bench` eager and --compile as above (2026-12-03, quiet, a host measuring a bf16
    # matmul peak of 796 GFLOP/s; bench/RESULTS.md "Compile gains, SimSiam, SwAV, jigsaw").
    ("simsiam", "cpu"): CompileGain(speedup=1073 / 1023, compile_s=103.0, machine=_EPYC),
    # `selfsup bench` eager and --compile, 10 steps after 3, empty inductor cache (2026-12-02,
    # quiet; bench/RESULTS.md "Compile gains, MAE and VICReg"). MoCo v2's compiled bench had not
    # finished its first call after 12 minutes and was stopped: it stays unmeasured (eager).
    ("vicreg", "cpu"): CompileGain(speedup=621 / 468, compile_s=140.0, machine=_EPYC),
    # 2026-12-03, with SimSiam's above: compiled SwAV runs slower (0.76x), so auto never compiles it
    ("swav", "cpu"): CompileGain(speedup=869 / 1144, compile_s=47.0, machine=_EPYC),
    # `bash bench/compile_gains.sh barlow rotation dino dino_vit mae` (2026-12-03, quiet, after
    # the ViT's bf16 attention path; bench/RESULTS.md "Compile gains, Barlow Twins, rotation,
    # DINO"). The ViT rows replace those measured with the fused attention kernel (1.00x both).
    ("barlow", "cpu"): CompileGain(speedup=939 / 776, compile_s=86.0, machine=_EPYC),
    ("rotation", "cpu"): CompileGain(speedup=465 / 593, compile_s=68.0, machine=_EPYC),
    ("dino", "cpu"): CompileGain(speedup=503 / 391, compile_s=133.0, machine=_EPYC),
    ("dino+vit", "cpu"): CompileGain(speedup=260 / 232, compile_s=139.0, machine=_EPYC),
    ("mae+vit", "cpu"): CompileGain(speedup=1836 / 1556, compile_s=53.0, machine=_EPYC),
    # 2026-12-03, with SimSiam's above
    ("jigsaw", "cpu"): CompileGain(speedup=2084 / 1906, compile_s=57.0, machine=_EPYC),
    ("colorization", "cpu"): None,
    # CPUs with AMX tile units (device_kind "cpu+amx"), a 2-core Xeon: `JSON=... bash
    # bench/compile_gains.sh simclr dino_vit mocov3 rotation` (2026-12-03, quiet, a host measuring
    # a bf16 matmul peak of 1910-2251 GFLOP/s; bench/RESULTS.md "Compile on an AMX CPU"). Eager
    # img/s = the median of the session's eager timings of the preset (3-5 each, 10 steps after 3):
    # the matrix units leave the memory-bound rest of the step to dominate, which inductor fuses.
    ("simclr", "cpu+amx"): CompileGain(speedup=971 / 750, compile_s=77.0, machine=_XEON_AMX),
    ("mocov3", "cpu+amx"): CompileGain(speedup=597 / 585, compile_s=123.0, machine=_XEON_AMX),
    ("rotation", "cpu+amx"): CompileGain(speedup=457 / 391, compile_s=75.0, machine=_XEON_AMX),
    ("dino+vit", "cpu+amx"): CompileGain(speedup=173 / 180, compile_s=178.0, machine=_XEON_AMX),
}

# auto compiles when the remaining steps save this many times the compile time: the gain is a
# measurement on one machine and one config, so a run that only just pays back stays eager.
# (train.compile's help states this margin.)
PAYBACK_MARGIN = 1.5

# auto times this many uncompiled steps, after the first, before it decides. A count, not a
# clock, so that every process of a distributed run decides at the same step.
TIMED_STEPS = 10


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str  # e.g. "train.compile=true", "auto: saves ~2m10s of 9m00s, compiles in ~1m00s"

    def line(self) -> str:
        return f"compile: {'on' if self.compile else 'off'} ({self.reason})"


def compile_key(method: str, backbone: str) -> str:
    """The name :data:`MEASURED` gives ``method`` trained with ``backbone``: the method alone
    for a ResNet, ``method+vit`` for a ViT, ``method+timm`` for a timm model. A gain measured
    on one family says nothing of another (MoCo v3's ResNet figure is no guide to its ViT)."""
    if backbone.startswith("vit"):
        return f"{method}+vit"
    if backbone.startswith("timm:"):
        return f"{method}+timm"
    return method


def unmeasured_reason(
    method: str,
    kind: str,
    backend: str = "inductor",
    table: dict[tuple[str, str], CompileGain | None] = MEASURED,
) -> str | None:
    """Why auto cannot compile ``method`` on ``kind`` whatever the run's length, or None
    when the table has its gain."""
    if backend != "inductor":
        return f"auto: the gains are measured with inductor, not train.compile_backend={backend}"
    if table.get((method, kind)) is None:
        return f"auto: {method} on {kind} is not measured yet (selfsup bench --compile)"
    return None


def decide_compile(
    method: str,
    kind: str,
    remaining_steps: int,
    step_s: float,
    *,
    cache_warm: bool = False,
    backend: str = "inductor",
    table: dict[tuple[str, str], CompileGain | None] = MEASURED,
) -> CompileDecision:
    """auto's rule: compile iff ``remaining_steps`` steps of ``step_s`` seconds (uncompiled)
    would save more than :data:`PAYBACK_MARGIN` x the compile time (the warm-cache time when
    ``cache_warm`` and it is measured)."""
    unmeasured = unmeasured_reason(method, kind, backend, table)
    gain = table.get((method, kind))
    if unmeasured is not None or gain is None:
        return CompileDecision(False, unmeasured or "")
    if remaining_steps <= 0:
        return CompileDecision(False, "auto: no steps left to train")
    if gain.speedup <= 1:
        return CompileDecision(
            False, f"auto: {method} ran {gain.speedup:.2f}x as fast compiled when measured here"
        )
    cost = gain.compile_s
    if cache_warm and gain.warm_compile_s is not None:
        cost = gain.warm_compile_s
    eager_s = remaining_steps * step_s
    saved = eager_s * (1 - 1 / gain.speedup)
    if saved > PAYBACK_MARGIN * cost:
        return CompileDecision(
            True,
            f"auto: saves ~{format_duration(saved)} of {format_duration(eager_s)}, compiles in "
            f"~{format_duration(cost)}",
        )
    return CompileDecision(
        False,
        f"auto: {remaining_steps} step{'s' if remaining_steps != 1 else ''} would save "
        f"~{format_duration(saved)}, too little to pay back ~{format_duration(cost)} of compiling",
    )


def compile_unavailable(backend: str, device: torch.device) -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot run here, or None: this Python is one
    torch.compile does not support, or inductor has no C++ compiler for CPU kernels (it would
    fail at the first step, after tracing)."""
    try:
        torch._dynamo.eval_frame.check_if_dynamo_supported()
    except RuntimeError as err:
        return str(err)
    if backend == "inductor" and device.type == "cpu":
        from torch._inductor import cpp_builder, exc

        try:
            cpp_builder.get_cpp_compiler()
        except exc.InvalidCxxCompiler:
            return (
                "inductor builds CPU kernels with a C++ compiler and found none (install g++, "
                "or name one in $CXX)"
            )
    return None


class CompileControl:
    """``train.compile`` as the trainer applies it: the decision, when the step is compiled, and
    the run's compile cache (found on resume, loaded before compiling, saved once the first
    compiled step returned and at checkpoints).

    Called by the trainer at :meth:`start` (after the setup record), :meth:`after_step` after
    every step and :meth:`on_checkpoint` at every checkpoint; ``log`` appends a metrics record.
    """

    def __init__(
        self,
        cfg: Config,
        train_step: TrainStep,
        run_dir: Path,
        log: Callable[[dict[str, Any]], None],
        writer: bool = True,
    ) -> None:
        self.mode = cfg.train.compile
        self.backend = cfg.train.compile_backend
        self.method = compile_key(cfg.method, cfg.backbone.name)
        self.device_kind = device_kind(train_step.device)
        self.train_step = train_step
        self.cache = CompileCache(run_dir, writer)
        self._log = log
        self.decision: CompileDecision | None = None  # None: auto, still timing
        self.steps_per_epoch = train_step.steps_per_epoch
        self._last_end: float | None = None  # auto's clock at the end of the latest step
        self._timed_s, self._timed_steps = 0.0, 0
        self._save_due = False

    def start(self, step: int, last_step: int, resume: bool) -> None:
        """A run (fresh or resumed) starts at ``step``: find the run's compile cache when
        resuming, and decide now unless auto must time steps first."""
        self._last_end, self._timed_s, self._timed_steps = None, 0.0, 0
        decision: CompileDecision | None = None  # auto: after its timed steps
        left = last_step - step
        if self.mode != "auto":
            reason = f"train.compile={'true' if self.mode else 'false'}"
            decision = CompileDecision(bool(self.mode), reason)
        elif why := unmeasured_reason(self.method, self.device_kind, self.backend):
            decision = CompileDecision(False, why)
        elif left <= 1 + TIMED_STEPS:
            why = (
                f"auto: {left} step{'s' if left != 1 else ''} to train, too few to time and compile"
            )
            decision = CompileDecision(False, why)
        if resume and (decision is None or decision.compile):
            self.cache.find()
        if decision is not None:
            self._decided(decision, step)

    def plan_text(self) -> str:
        """The plan line's part: the decision, or when auto will take it."""
        if self.decision is not None:
            return self.decision.line()
        return f"compile: auto, decided after {TIMED_STEPS} timed steps"

    def after_step(self, step: int, last_step: int, loss: Tensor) -> bool:
        """``step`` steps are done: save the cache after the first compiled step; auto times its
        steps and decides (every process takes rank 0's decision). True when auto has just
        compiled the step (the next one compiles)."""
        if self._save_due:  # the first compiled step returned: its graphs are in torch's caches
            self._save_due = False
            self.cache.save()
        if self.decision is not None:
            return False
        float(loss)  # a host sync while timing, so that the clock sees the step finished
        now = progress.now()
        # The step that opens an epoch also carries the previous epoch's end (k-NN, checkpoint):
        # not timed. Neither is the run's first step, which warms up.
        if self._last_end is not None and (step - 1) % self.steps_per_epoch != 0:
            self._timed_s += now - self._last_end
            self._timed_steps += 1
        self._last_end = now
        if self._timed_steps < TIMED_STEPS:
            return False
        step_s = self._timed_s / self._timed_steps
        device = self.train_step.device
        decision = decide_compile(
            self.method,
            self.device_kind,
            last_step - step,
            step_s,
            cache_warm=self.cache.warm,
            backend=self.backend,
        )
        if decision.compile and (unavailable := compile_unavailable(self.backend, device)):
            decision = CompileDecision(False, f"auto: {unavailable}")
        decision = broadcast_object(decision)
        say(decision.line())
        self._decided(decision, step, step_s)
        return decision.compile

    def on_checkpoint(self) -> None:
        """Keep what later compiles added (a recompile) in the run's cache."""
        if self.decision is not None and self.decision.compile:
            self.cache.save()

    def _decided(self, decision: CompileDecision, step: int, step_s: float | None = None) -> None:
        self.decision = decision
        if decision.compile:
            self.cache.load()  # before the first compiled call, which compiles
            if self.train_step.compiled_step is None:
                self.train_step.compile(self.backend)
            self._save_due = True
        record: dict[str, Any] = {
            "kind": "compile",
            "step": step,
            "compile": decision.compile,
            "reason": decision.reason,
            "cache": self.cache.status,
        }
        if step_s is not None:
            record["timed_step_s"] = step_s
        self._log(record)
