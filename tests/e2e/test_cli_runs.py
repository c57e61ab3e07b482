"""The first-hour mistakes on the command line: reusing a run directory, resuming with the
wrong options, a data path that does not exist, a method without a config file, inspecting a
run that has not finished. Each ends with one line naming the problem and the fix (exit 2) and
loses nothing; tiny runs on digits, in-process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from selfsup.cli import main
from selfsup.cli.run_commands import build_config
from selfsup.config import METHODS, local_crop_size
from selfsup.methods import Progress
from selfsup.train.trainer import Trainer
from tests.e2e.test_cli import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["pretrain", *TINY, "train.knn_every=0", "--run-dir", str(out)]) == 0
    return out


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def test_pretrain_into_a_run_directory_is_refused_then_overwritten_on_request(
    run_dir, tmp_path, capsys
):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in _snapshot(run_dir).items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    (copy / "eval.json").write_text("[]")
    before = _snapshot(copy)
    capsys.readouterr()
    assert main(["pretrain", *TINY, "train.knn_every=0", "--run-dir", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run (finished at step" in err
    assert f"--resume {copy}" in err and "--overwrite" in err and "Traceback" not in err
    assert _snapshot(copy) == before
    args = ["pretrain", *TINY, "train.knn_every=0", "train.seed=3", "--run-dir", str(copy)]
    assert main([*args, "--overwrite"]) == 0
    assert not (copy / "eval.json").exists()  # described the replaced encoder
    assert _snapshot(copy)["encoder.safetensors"] != before["encoder.safetensors"]


def test_resume_of_a_finished_run_says_so_and_changes_nothing(run_dir, capsys):
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert "is finished" in err and "nothing changed" in err and "done:" not in out
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["-c", "configs/simclr_fashion_mnist.yaml"], "-c configs/simclr_fashion_mnist.yaml"),
        (["--method", "byol"], "--method byol"),
        (["--overwrite"], "--overwrite"),
    ],
)
def test_resume_refuses_options_it_would_ignore(run_dir, capsys, extra, named):
    before = _snapshot(run_dir)
    assert main(["pretrain", "--resume", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert f"{named} would be ignored" in err and "key=value overrides" in err
    assert _snapshot(run_dir) == before


def test_resume_names_the_override_that_changed_the_architecture(run_dir, capsys):
    before = _snapshot(run_dir)
    assert (
        main(["pretrain", "--resume", str(run_dir), "train.epochs=2", "backbone.width=0.25"]) == 2
    )
    captured = capsys.readouterr()
    assert "resume: backbone.width changed from 0.125 to 0.25" in captured.err
    assert "backbone.width=0.25 (was 0.125)" in captured.err
    assert "resume without this override" in captured.err
    assert "Traceback" not in captured.err and "size mismatch" not in captured.err
    assert _snapshot(run_dir) == before


def test_a_data_dir_that_does_not_exist_is_an_error(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    args = ["pretrain", *TINY, "data.dataset=fashion_mnist", f"data.data_dir={missing}"]
    assert main([*args, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"data directory {missing} does not exist" in err and "fix the path" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("method", ["mae", "dino"])
def test_a_method_alone_takes_its_papers_working_settings(method, capsys):
    cfg = build_config(None, [f"method={method}"])  # validates: raised before this fix
    err = capsys.readouterr().err
    assert f"configs/{method}_fashion_mnist.yaml" in err
    assert cfg.optim.name == "adamw"
    if method == "mae":
        assert cfg.backbone.name.startswith("vit") and cfg.views.size % cfg.backbone.patch_size == 0
        assert cfg.optim.betas == [0.9, 0.95] and cfg.optim.base_lr == 1.5e-4
    else:
        assert local_crop_size(cfg) == 14 and cfg.optim.clip_grad_mode == "per_tensor"
    # what the user sets wins over the method's settings
    cfg = build_config(None, [f"method={method}", "optim.name=sgd", "views.size=64"])
    assert cfg.optim.name == "sgd"
    if method == "dino":
        assert local_crop_size(cfg) == 27  # follows views.size: 96/224 of it


def test_a_method_alone_that_still_fails_points_to_the_presets(capsys):
    assert main(["pretrain", "method=mae", "views.size=30", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "multiple of backbone.patch_size" in err and "configs/mae_fashion_mnist.yaml" in err


def test_help_lists_every_method(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in METHODS)
    assert " | ".join(METHODS) in out


@pytest.fixture
def interrupted_run(tmp_path) -> Path:
    from selfsup.cli.run_commands import build_config

    run_dir = tmp_path / "interrupted"
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trainer = Trainer(build_config(None, [*TINY, "train.epochs=2"]), run_dir)
        after_step = trainer.method.after_step

        def interrupting(progress: Progress) -> None:
            if progress.step + 1 == 13:
                signal.raise_signal(signal.SIGINT)
            after_step(progress)

        trainer.method.after_step = interrupting  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous)
    return run_dir


def test_eval_and_embed_work_on_an_interrupted_run(interrupted_run, tmp_path, capsys):
    assert not (interrupted_run / "encoder.safetensors").exists()
    capsys.readouterr()
    assert main(["eval", "knn", str(interrupted_run), "--no-baselines"]) == 0
    captured = capsys.readouterr()
    assert "not finished" in captured.err and "checkpoints/last.pt, step 13" in captured.err
    assert "selfsup simclr" in captured.out
    (entry,) = json.loads((interrupted_run / "eval.json").read_text())["results"]
    assert entry["step"] == 13
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.new("L", (10, 10), 128).save(folder / "a.png")
    out = tmp_path / "f.npy"
    assert main(["embed", str(interrupted_run), str(folder), "--out", str(out)]) == 0
    assert "not finished" in capsys.readouterr().err
