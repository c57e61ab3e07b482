"""train.compile: auto's rule against hand-made numbers, the decision in a run, and the compile
cache in the run directory (written after the first compiled step, loaded on resume, ignored
from another torch version). No test times anything; the plumbing runs with the eager backend
and one test compiles with inductor."""

import json
import re

import pytest
import torch

from selfsup import progress
from selfsup.train import compile_policy
from selfsup.train import device as device_module
from selfsup.train.compile_cache import CACHE_FILE, CACHE_FORMAT, trusted_digests_file
from selfsup.train.compile_policy import (
    TIMED_STEPS,
    CompileDecision,
    CompileGain,
    compile_key,
    compile_unavailable,
    decide_compile,
)
from selfsup.train.device import device_kind
from selfsup.train.trainer import Trainer
from tests.conftest import tiny_config

CPU_KIND = device_kind(torch.device("cpu"))  # the table's key for this machine's CPU

# +25% img/s, 60 s to compile cold, 20 s with the run's cache loaded
TABLE = {
    ("m", "cpu"): CompileGain(speedup=1.25, compile_s=60.0, machine="test", warm_compile_s=20.0),
    ("cold_only", "cpu"): CompileGain(speedup=1.25, compile_s=60.0, machine="test"),
    ("unmeasured", "cpu"): None,
    ("slower", "cpu"): CompileGain(speedup=0.9, compile_s=60.0, machine="test"),
}


def _decide(method: str, steps: int, step_s: float = 1.0, **kwargs) -> CompileDecision:
    return decide_compile(method, "cpu", steps, step_s, table=TABLE, **kwargs)


def test_auto_compiles_when_the_saving_pays_back_the_compile_time_with_a_margin():
    # 1000 steps of 1 s save 1000 x (1 - 1/1.25) = 200 s > 1.5 x 60 s
    on = _decide("m", 1000)
    assert on == CompileDecision(True, "auto: saves ~3m20s of 16m40s, compiles in ~1m00s")
    assert on.line() == "compile: on (auto: saves ~3m20s of 16m40s, compiles in ~1m00s)"
    # 300 steps save 60 s: not 1.5 x 60 s; exactly 1.5 x (450 steps save 90 s) is not enough
    off = _decide("m", 300)
    assert not off.compile
    assert (
        off.reason
        == "auto: 300 steps would save ~1m00s, too little to pay back ~1m00s of compiling"
    )
    assert not _decide("m", 450).compile and _decide("m", 451).compile
    # slower steps pay back sooner
    assert _decide("m", 300, step_s=2.0).compile


def test_auto_never_compiles_a_method_measured_no_faster_compiled():
    off = _decide("slower", 10**7, step_s=10.0)  # however long the run
    assert off == CompileDecision(
        False, "auto: slower ran 0.90x as fast compiled when measured here"
    )


def test_auto_counts_the_warm_cache_compile_time_where_it_is_measured():
    assert _decide("m", 300, cache_warm=True).compile  # 60 s saved > 1.5 x 20 s
    assert not _decide("cold_only", 300, cache_warm=True).compile  # charged the cold 60 s


def test_auto_never_compiles_an_unmeasured_method_device_or_backend_or_zero_steps():
    for decision in (
        _decide("unmeasured", 10**6),
        _decide("not_in_table", 10**6),
        decide_compile("m", "cuda", 10**6, 1.0, table=TABLE),
        _decide("m", 10**6, backend="eager"),
        _decide("m", 0),
    ):
        assert not decision.compile
    assert _decide("unmeasured", 10**6).reason == (
        "auto: unmeasured on cpu is not measured yet (selfsup bench --compile)"
    )
    assert "not train.compile_backend=eager" in _decide("m", 10**6, backend="eager").reason
    assert _decide("m", 0).reason == "auto: no steps left to train"


def test_a_gain_measured_with_one_backbone_family_is_not_used_for_another(tmp_path, monkeypatch):
    assert compile_key("dino", "resnet18") == "dino"
    assert compile_key("dino", "vit_micro") == "dino+vit"
    assert compile_key("mocov3", "timm:resnet50") == "mocov3+timm"
    # SimCLR with a ViT does not take the ResNet's (here paying) gain: it stays unmeasured
    gain = CompileGain(speedup=4.0, compile_s=1.0, machine="test")
    monkeypatch.setitem(compile_policy.MEASURED, ("simclr", CPU_KIND), gain)
    cfg = tiny_config("backbone.name=vit_micro", "backbone.patch_size=4", "views.size=16")
    Trainer(cfg, tmp_path / "vit").fit()
    [record] = _records(tmp_path / "vit", "compile")
    assert record["compile"] is False
    assert (
        record["reason"]
        == f"auto: simclr+vit on {CPU_KIND} is not measured yet (selfsup bench --compile)"
    )


def test_device_kind_tells_an_amx_cpu_from_another_and_from_gpus(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert device_kind(torch.device("cpu")) == "cpu+amx"
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert device_kind(torch.device("cpu")) == "cpu"
    assert device_kind(torch.device("cuda")) == "cuda"
    assert device_kind(torch.device("mps")) == "mps"


def test_a_gain_measured_on_one_kind_of_cpu_is_not_used_on_the_other(tmp_path, monkeypatch):
    """A gain measured without AMX (where compiling may lose) says nothing of an AMX CPU (where
    it may win), and the other way round: the run on an AMX CPU finds only its own row."""
    monkeypatch.setattr(device_module, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    gain = CompileGain(speedup=1.25, compile_s=60.0, machine="test")
    monkeypatch.setitem(compile_policy.MEASURED, ("simclr", "cpu"), gain)
    monkeypatch.delitem(compile_policy.MEASURED, ("simclr", "cpu+amx"), raising=False)
    Trainer(tiny_config(), tmp_path / "amx").fit()
    [record] = _records(tmp_path / "amx", "compile")
    assert (
        record["reason"] == "auto: simclr on cpu+amx is not measured yet (selfsup bench --compile)"
    )
    monkeypatch.setitem(compile_policy.MEASURED, ("simclr", "cpu+amx"), gain)
    Trainer(tiny_config(), tmp_path / "amx2").fit()
    [record] = _records(tmp_path / "amx2", "compile")
    assert record["reason"].startswith("auto: 11 steps would save ~")


def _records(run_dir, kind: str) -> list[dict]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if x["kind"] == kind]


def test_tiny_runs_never_compile_under_auto(tmp_path, monkeypatch):
    # even where compiling pays (+25%, 60 s), 22 steps of SimCLR on the CPU cannot pay it back
    gain = CompileGain(speedup=1.25, compile_s=60.0, machine="test")
    monkeypatch.setitem(compile_policy.MEASURED, ("simclr", CPU_KIND), gain)
    trainer = Trainer(tiny_config(), tmp_path / "run")
    trainer.fit()
    assert trainer.cfg.train.compile == "auto" and trainer.train_step.compiled_step is None
    assert _records(tmp_path / "run", "setup")[0]["compile"] == "auto"
    [record] = _records(tmp_path / "run", "compile")
    assert record["step"] == 1 + TIMED_STEPS and record["compile"] is False
    assert record["reason"].startswith("auto: 11 steps would save ~") and record["timed_step_s"] > 0
    assert not (tmp_path / "run" / CACHE_FILE).exists()


def test_auto_switches_to_the_compiled_step_when_it_decides_to(tmp_path, monkeypatch, capsys):
    """The decision comes after the timed steps; from then on the compiled step trains (the
    eager backend keeps the arithmetic, so the state is the uncompiled run's)."""
    eager = Trainer(tiny_config("train.epochs=2"), tmp_path / "eager")
    eager.fit()
    monkeypatch.setattr(compile_policy, "unmeasured_reason", lambda *args: None)
    seen: list[tuple[int, float]] = []

    def pays_back(method, device_type, remaining_steps, step_s, **kwargs):
        seen.append((remaining_steps, step_s))
        return CompileDecision(True, "auto: test")

    monkeypatch.setattr(compile_policy, "decide_compile", pays_back)
    cfg = tiny_config("train.epochs=2", "train.compile_backend=eager")
    auto = Trainer(cfg, tmp_path / "auto")
    calls = []
    clock = [0.0]  # one second a reading; the compiling step takes ten thousand more

    def tick() -> float:
        clock[0] += 1.0
        return clock[0]

    def hook(t: Trainer) -> None:
        calls.append(t.train_step.compiled_step is not None)
        if t.step == 2 + TIMED_STEPS:
            clock[0] += 10_000.0

    monkeypatch.setattr(progress, "now", tick)
    auto.step_hooks.append(hook)
    capsys.readouterr()
    auto.fit()
    # the step that completes the timing (the first one is not timed) decides
    assert calls == [False] * TIMED_STEPS + [True] * (44 - TIMED_STEPS)
    assert len(seen) == 1 and seen[0][0] == 44 - 1 - TIMED_STEPS and seen[0][1] > 0
    err = capsys.readouterr().err
    assert err.count("compile: on (auto: test)") == 1
    # the duration is estimated again at the compiled speed, the compiling step left out: a
    # few seconds a step of 64 images, not the compile's ten thousand
    again = re.search(
        r"compile: on \(auto: test\)\n(.*\n)*estimated duration: \S+ for the "
        r"remaining 33 steps at (\d+) img/s",
        err,
    )
    assert again and int(again.group(2)) >= 10, err
    [record] = _records(tmp_path / "auto", "compile")
    assert record["step"] == 1 + TIMED_STEPS and record["compile"] is True
    a, b = eager.method.state_dict(), auto.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _fake_artifacts(monkeypatch, payload: bytes = b"compiled graphs") -> None:
    """The eager backend compiles no kernels, so torch has no artifacts: stand in for them."""
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (payload, None))


def _spy_on_load(monkeypatch) -> list[object]:
    """What ``torch.compiler.load_cache_artifacts`` was given (the bytes are not loaded)."""
    loaded: list[object] = []

    def load(artifacts: bytes) -> object:
        loaded.append(artifacts)
        return object()  # torch's CacheInfo: not None when it loaded

    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", load)
    return loaded


EAGER_COMPILED = ("train.compile=true", "train.compile_backend=eager")


@pytest.fixture(autouse=True)
def _own_user_cache(tmp_path, monkeypatch):
    """The list of caches this account wrote lives under $XDG_CACHE_HOME: one per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def test_the_cache_is_written_after_the_first_compiled_step_and_loaded_on_resume(
    tmp_path, monkeypatch
):
    _fake_artifacts(monkeypatch)
    loaded = _spy_on_load(monkeypatch)
    run = tmp_path / "run"
    Trainer(tiny_config("train.max_steps=2", *EAGER_COMPILED), run).fit()
    header, _, artifacts = (run / CACHE_FILE).read_bytes().partition(b"\n")
    assert json.loads(header) == {"format": CACHE_FORMAT, "torch": torch.__version__}
    assert artifacts == b"compiled graphs" and loaded == []  # a fresh run loads nothing
    assert _records(run, "compile")[0] == {
        "kind": "compile",
        "step": 0,
        "compile": True,
        "reason": "train.compile=true",
        "cache": "none",
    }

    resumed = Trainer(tiny_config("train.max_steps=4", *EAGER_COMPILED), run)
    resumed.step_hooks.append(lambda t: loaded.append(f"step {t.step}"))
    resumed.fit(resume=True)
    assert loaded == [b"compiled graphs", "step 3", "step 4"]  # before the first compiled step
    assert _records(run, "compile")[-1]["cache"] == "loaded"


def test_a_cache_from_another_torch_version_is_ignored_with_a_note(tmp_path, monkeypatch, capsys):
    loaded = _spy_on_load(monkeypatch)
    run = tmp_path / "run"
    Trainer(tiny_config("train.max_steps=2", *EAGER_COMPILED), run).fit()
    header = json.dumps({"format": CACHE_FORMAT, "torch": "2.0.0"}).encode()
    (run / CACHE_FILE).write_bytes(header + b"\n" + b"graphs of torch 2.0.0")
    capsys.readouterr()
    Trainer(tiny_config("train.max_steps=4", *EAGER_COMPILED), run).fit(resume=True)
    assert loaded == []
    notes = [x for x in capsys.readouterr().err.splitlines() if CACHE_FILE in x]
    assert notes == [
        f"note: {run / CACHE_FILE} not loaded (written by torch 2.0.0; this is torch "
        f"{torch.__version__}): compiling without it"
    ]
    assert _records(run, "compile")[-1]["cache"] == "ignored: written by torch 2.0.0"


def test_a_cache_this_account_did_not_write_is_never_loaded(tmp_path, monkeypatch, capsys):
    """Loading a cache runs its pickled code: a run directory from elsewhere (its digest not in
    this account's list) resumes without it."""
    _fake_artifacts(monkeypatch, b"graphs from someone else")
    loaded = _spy_on_load(monkeypatch)
    run = tmp_path / "run"
    Trainer(tiny_config("train.max_steps=2", *EAGER_COMPILED), run).fit()
    trusted_digests_file().unlink()  # as on another account: the same file, never listed
    capsys.readouterr()
    Trainer(tiny_config("train.max_steps=4", *EAGER_COMPILED), run).fit(resume=True)
    assert loaded == []
    assert "not written by this account" in _records(run, "compile")[-1]["cache"]
    assert f"note: {run / CACHE_FILE} not loaded (not written by this account" in (
        capsys.readouterr().err
    )


def test_compile_true_is_refused_where_inductor_has_no_cpp_compiler(tmp_path, monkeypatch):
    from torch._inductor import cpp_builder, exc

    def no_compiler() -> str:
        raise exc.InvalidCxxCompiler

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    cpu = torch.device("cpu")
    assert "C++ compiler" in (compile_unavailable("inductor", cpu) or "")
    assert compile_unavailable("eager", cpu) is None
    with pytest.raises(
        ValueError, match=r"cannot torch\.compile the training step: inductor builds"
    ):
        Trainer(tiny_config("train.compile=true"), tmp_path / "run")


@pytest.mark.slow
def test_an_inductor_compiled_run_keeps_its_cache_and_a_resumed_run_loads_it(tmp_path, monkeypatch):
    """The one test that compiles for real (tens of seconds on 2 CPU cores when inductor's own
    caches are cold): torch's artifacts land in the run directory and come back on resume."""
    run = tmp_path / "run"
    Trainer(tiny_config("train.max_steps=1", "train.compile=true"), run).fit()
    header, _, artifacts = (run / CACHE_FILE).read_bytes().partition(b"\n")
    assert json.loads(header)["torch"] == torch.__version__ and len(artifacts) > 0
    loaded: list[bytes] = []
    load = torch.compiler.load_cache_artifacts

    def spy(data: bytes):
        loaded.append(data)
        return load(data)

    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", spy)
    Trainer(tiny_config("train.max_steps=2", "train.compile=true"), run).fit(resume=True)
    assert loaded == [artifacts]
    assert _records(run, "compile")[-1]["cache"] == "loaded"
