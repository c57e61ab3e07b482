"""The lab's runner: budgets and keys, the result cache, resume of an interrupted arm, diverged
arms, and the representation after the projection head."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from selfsup import build
from selfsup.lab import runner as runner_module
from selfsup.lab.arms import ArmSpec, arm_config, base_config, config_key
from selfsup.lab.claim import Claim, PlotSpec, Results, run_claim
from selfsup.lab.measures import MeasureContext, projected_encoder
from selfsup.lab.runner import LabRunner
from selfsup.lab.settings import LabSettings
from selfsup.lab.verdict import Verdict, greater
from selfsup.train.trainer import NonFiniteLossError, Trainer
from tests.conftest import tiny_config

SIMCLR = "simclr_fashion_mnist"


def tiny(tmp_path: Path, **kw: object) -> LabSettings:
    return LabSettings(lab_dir=tmp_path / "lab", tiny=True, **kw)  # type: ignore[arg-type]


class TrainerSpy(Trainer):
    """The trainer, recording every construction and ``fit(resume=...)``."""

    made: ClassVar[list[TrainerSpy]] = []
    resumed_from: ClassVar[list[tuple[bool, int]]] = []

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        TrainerSpy.made.append(self)

    def fit(self, resume: bool = False):  # type: ignore[no-untyped-def]
        if resume:
            self.load()
        TrainerSpy.resumed_from.append((resume, self.step))
        return super().fit(resume=resume)


def _claim(name: str, arms: tuple[ArmSpec, ...], measures: tuple[str, ...]) -> Claim:
    """A claim made up for a test: the first arm's first measure beats its last."""

    def judge(r: Results) -> Verdict:
        first = arms[0].name
        return greater(r.get(first, measures[0]), r.get(first, measures[-1]))

    return Claim(0, name, name, "", "", arms, measures, judge, PlotSpec("bars", measures[:1]))


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[TrainerSpy]:
    TrainerSpy.made, TrainerSpy.resumed_from = [], []
    monkeypatch.setattr(runner_module, "Trainer", TrainerSpy)
    return TrainerSpy


def test_an_arm_resolves_to_its_budget_and_the_lab_settings() -> None:
    settings = LabSettings(data="digits", scale=2.0)
    arm = ArmSpec("batch 128", SIMCLR, ("train.batch_size=128",), epochs=1.5)
    data = build.train_dataset(base_config(arm, settings))
    cfg = arm_config(arm, 3, settings, data)
    steps = round(2.0 * 1.5 * len(data) / 128)  # --scale x epochs x images / batch
    assert (cfg.train.total_steps, cfg.train.seed, cfg.data.dataset) == (steps, 3, "digits")
    assert cfg.optim.warmup_epochs == pytest.approx(0.1 * steps * 128 / len(data), rel=1e-5)
    assert cfg.train.compile is False and cfg.train.knn_every == 0
    assert cfg.train.online_linear is False and cfg.train.checkpoint_every_steps == steps // 10
    assert cfg.views.mean is not None  # normalisation resolved before the key is taken
    assert cfg.simclr.temperature == 0.1  # the preset's own settings stay
    key = config_key(cfg)
    assert key == config_key(arm_config(arm, 3, settings, data))
    assert key != config_key(arm_config(arm, 4, settings, data))
    assert key != config_key(arm_config(arm, 3, LabSettings(data="digits"), data))


def test_an_option_added_later_keeps_the_keys_of_cached_runs_while_at_its_default() -> None:
    from selfsup.lab.arms import KEY_NEUTRAL_DEFAULTS, digest

    settings = LabSettings(data="digits")
    arm = ArmSpec("SimCLR", SIMCLR)
    cfg = arm_config(arm, 0, settings, build.train_dataset(base_config(arm, settings)))
    assert (
        cfg.eval.finetune_regularise is None and "eval.finetune_regularise" in KEY_NEUTRAL_DEFAULTS
    )
    before = cfg.to_dict()  # the configuration as a version without the option wrote it
    before["run_dir"] = None
    del before["eval"]["finetune_regularise"]
    assert config_key(cfg) == digest(before)
    cfg.eval.finetune_regularise = False  # set: a different run
    assert config_key(cfg) != digest(before)


def test_a_cached_claim_trains_and_measures_nothing_again(tmp_path, spy, monkeypatch) -> None:
    claim = _claim("test-cache", (ArmSpec("SimCLR", SIMCLR),), ("knn", "linear_z"))
    settings = tiny(tmp_path)
    first = run_claim(claim, settings)
    assert len(spy.made) == 2  # one arm, two seeds
    assert all(r.values["knn"] > 10 and not r.cached for r in first.results.results)

    def no_evaluation(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached arm was measured again")

    monkeypatch.setattr("selfsup.eval.run.evaluate_run", no_evaluation)
    monkeypatch.setattr("selfsup.eval.from_checkpoint.load_method", no_evaluation)  # linear_z
    spy.made.clear()
    again = run_claim(claim, settings)
    assert spy.made == []
    assert all(r.cached for r in again.results.results)
    assert again.results.get("SimCLR", "knn") == first.results.get("SimCLR", "knn")
    assert again.verdict == first.verdict and again.command == first.command
    record = json.loads((settings.lab_dir / "claims" / "test-cache.json").read_text())
    assert record["command"] == "selfsup lab test-cache --tiny --seeds 0,1 --lab-dir " + str(
        settings.lab_dir
    )
    assert [r["seed"] for r in record["results"]] == [0, 1]


def test_the_same_configuration_in_another_claim_reuses_the_result_under_its_name(
    tmp_path, spy
) -> None:
    runner = LabRunner(tiny(tmp_path))
    first = runner.run(ArmSpec("tau 0.1", SIMCLR, ("simclr.temperature=0.1",)), 0, ("knn",))
    # The preset's own temperature is 0.1: the same resolved configuration.
    again = runner.run(ArmSpec("crop + colour", SIMCLR), 0, ("knn",))
    assert len(spy.made) == 1 and again.cached and again.key == first.key
    assert (again.arm, again.values) == ("crop + colour", first.values)


def test_an_interrupted_arm_resumes_and_ends_as_if_never_stopped(tmp_path, spy) -> None:
    arm = ArmSpec("SimCLR", SIMCLR)
    settings = tiny(tmp_path, scale=2.0)  # 8 steps, a checkpoint after each

    def stop_at_step_5(trainer: Trainer) -> None:
        if trainer.step == 5:
            raise KeyboardInterrupt

    original_init = TrainerSpy.__init__

    def interrupted_init(self: TrainerSpy, *args: object, **kwargs: object) -> None:
        original_init(self, *args, **kwargs)
        self.step_hooks.append(stop_at_step_5)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainerSpy, "__init__", interrupted_init)
        with pytest.raises(KeyboardInterrupt):
            LabRunner(settings).run(arm, 0, ("knn",))
    assert list((settings.lab_dir / "results").glob("*.json")) == []  # nothing cached yet
    resumed = LabRunner(settings).run(arm, 0, ("knn",))
    assert spy.resumed_from == [(False, 0), (True, 4)]  # continued from step 4's checkpoint
    assert spy.made[-1].step == 8

    whole_settings = tiny(tmp_path / "whole", scale=2.0)
    whole = LabRunner(whole_settings).run(arm, 0, ("knn",))
    assert resumed.values == whole.values and resumed.key == whole.key
    weights = "encoder.safetensors"
    run = f"runs/{resumed.run_key}/{weights}"
    assert (settings.lab_dir / run).read_bytes() == (whole_settings.lab_dir / run).read_bytes()


def test_a_run_directory_of_another_configuration_starts_again(tmp_path, spy) -> None:
    settings = tiny(tmp_path)
    arm = ArmSpec("SimCLR", SIMCLR)
    first = LabRunner(settings).run(arm, 0, ("knn",))
    run_dir = settings.lab_dir / "runs" / first.run_key
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("temperature: 0.1", "temperature: 0.2"))
    (settings.lab_dir / "results" / f"{first.key}.json").unlink()
    again = LabRunner(settings).run(arm, 0, ("knn",))
    assert spy.resumed_from == [(False, 0), (False, 0)]  # trained from scratch, not resumed
    assert again.values == first.values


def test_a_diverged_arm_is_recorded_as_nan_and_not_trained_again(tmp_path, spy, monkeypatch):
    def diverge(self: Trainer, resume: bool = False) -> None:
        raise NonFiniteLossError("loss is nan at step 3")

    monkeypatch.setattr(TrainerSpy, "fit", diverge)
    settings = tiny(tmp_path)
    arm = ArmSpec("lr 100", SIMCLR, ("optim.base_lr=100",))
    result = LabRunner(settings).run(arm, 0, ("knn", "linear"))
    assert result.diverged and all(math.isnan(v) for v in result.values.values())
    stored = json.loads((settings.lab_dir / "results" / f"{result.key}.json").read_text())
    assert stored["values"] == {"knn": None, "linear": None} and stored["diverged"]
    again = LabRunner(settings).run(arm, 0, ("knn", "linear"))
    assert len(spy.made) == 1 and again.diverged and again.cached
    measured = Results(_claim("x", (arm,), ("knn",)), [again]).get("lr 100", "knn")
    assert measured.diverged == 1 and measured.format() == "diverged"


def test_unknown_measures_are_refused_before_training(tmp_path, spy) -> None:
    with pytest.raises(ValueError, match="unknown measure 'top5'"):
        LabRunner(tiny(tmp_path)).run(ArmSpec("SimCLR", SIMCLR), 0, ("top5",))
    assert spy.made == []


def test_projected_encoder_is_the_projector_on_the_encoder() -> None:
    cfg = tiny_config("views.mean=[0.5]", "views.std=[0.25]")
    method = build.make_method(cfg, 1).eval()
    x = torch.randn(5, 1, 8, 8)
    z = projected_encoder(method)(x)
    torch.testing.assert_close(z, method.projector(method.encoder(x)))
    assert z.shape == (5, 16)
    vit = ("method=mae", "backbone.name=vit_micro", "backbone.patch_size=2")
    mae = build.make_method(tiny_config(*vit, "views.mean=[0.5]", "views.std=[0.25]"), 1)
    with pytest.raises(ValueError, match="MAE has no projection head"):
        projected_encoder(mae)


def test_mae_encoder_flops_shrink_with_the_visible_patches(tmp_path) -> None:
    from selfsup.data import load_dataset
    from selfsup.lab.measures import MEASURES

    digits = load_dataset("digits", "train")
    shares = {}
    for ratio in (0.0, 0.75):
        cfg = tiny_config(
            "method=mae",
            "backbone.name=vit_micro",
            "backbone.patch_size=2",
            "mae.decoder_dim=32",
            "mae.decoder_heads=4",
            f"mae.mask_ratio={ratio}",
        )
        build.resolve_normalization(cfg, digits)
        ctx = MeasureContext(tmp_path, cfg, (digits, digits), "cpu", (), "10%")
        shares[ratio] = MEASURES["encoder_flops"].fn(ctx)
    assert shares[0.0] == pytest.approx(100.0)
    # 1 + 4 of 1 + 16 tokens reach the blocks (29%); the patch embedding runs on all 16.
    assert 25 < shares[0.75] < 35
