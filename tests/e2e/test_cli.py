"""The `selfsup` command end to end on tiny data (digits), in-process for speed."""

import hashlib
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfsup.cli import demo_config, main
from selfsup.train import schedule_fit
from tests.conftest import METHOD_OVERRIDES, grey_png_folder

TINY = [
    "data.dataset=digits",
    "backbone.width=0.125",
    "views.size=8",
    "simclr.proj_hidden_dim=32",
    "simclr.proj_out_dim=16",
    "optim.name=sgd",
    "optim.base_lr=0.1",
    "optim.warmup_epochs=0",
    "train.batch_size=128",
    "train.epochs=1",
    "train.precision=fp32",
    "train.progress=false",
    "train.tensorboard=false",
    "train.knn_every=1",
    "eval.linear_epochs=3",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["pretrain", *TINY, "--run-dir", str(out)]) == 0
    return out


def test_pretrain_writes_a_complete_run_directory(run_dir, capsys):
    assert (run_dir / "encoder.safetensors").is_file()
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(m["kind"] == "epoch" and 0 < m["knn_top1"] <= 1 for m in metrics)


def test_eval_knn_and_linear_print_a_table_with_baselines(run_dir, capsys):
    assert main(["eval", "all", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    for name in ("selfsup simclr", "random encoder", "raw pixels"):
        assert name in out
        # every phase on stderr: what it does, then its result and time
        assert f"{name}: knn (100% labels): 1437 bank / 360 queries ..." in err
        assert (
            f"{name}: linear (100% labels) lrs 0.01, 0.1, 1: 3 epochs on 1292 features, 3 lrs "
            "side by side ..." in err
        )
        assert re.search(rf"{name}: linear \(100% labels\) final fit at lr \S+: test top-1", err)
    assert "selfsup simclr: train features: extracting 1437 images ..." in err
    assert "selfsup simclr: test features: 360 x 64 in" in err
    assert "final fit" not in out  # results on stdout, progress on stderr
    data = json.loads((run_dir / "eval.json").read_text())
    results = data["results"]
    assert len(results) == 6  # 3 candidates x (k-NN, linear)
    assert all(0 < r["top1"] <= 1 and r["dataset"] == "digits" for r in results)
    digest = hashlib.sha256((run_dir / "encoder.safetensors").read_bytes()).hexdigest()
    assert data["encoder_sha256"] == digest and all(r["encoder_sha256"] == digest for r in results)
    linear = {r["candidate"]: r for r in results if r["protocol"] == "linear"}
    for candidate in ("selfsup simclr", "random encoder"):  # collapse metrics of each encoder
        rep = linear[candidate]["representation"]
        assert rep["embedding_std"] > 0 and 1 <= rep["rankme"] <= 64
        assert rep["uniformity"] <= 0 and 0 <= rep["alignment"] <= 4
    assert linear["raw pixels"]["representation"] is None
    assert "RankMe" in out

    # k-NN alone afterwards replaces the k-NN entries and keeps the linear ones
    assert main(["eval", "knn", str(run_dir), "eval.knn_k=5"]) == 0
    after = json.loads((run_dir / "eval.json").read_text())["results"]
    assert len(after) == 6
    assert {r["candidate"]: r for r in after if r["protocol"] == "linear"} == linear
    assert all(r["settings"]["k"] == 5 for r in after if r["protocol"] == "knn")


def test_embed_writes_features_of_a_folder(run_dir, tmp_path, capsys):
    folder = grey_png_folder(tmp_path / "imgs", 5, 12)
    out = tmp_path / "feats.npy"
    assert main(["embed", str(run_dir), str(folder), "--out", str(out)]) == 0
    feats = np.load(out)
    assert feats.shape == (5, 64) and np.isfinite(feats).all()
    assert len(out.with_suffix(".txt").read_text().splitlines()) == 5
    full = feats
    # a truncated file is skipped and named; rows still match the listed files
    data = (folder / "2.png").read_bytes()
    (folder / "2.png").write_bytes(data[: len(data) // 2])
    out.unlink()
    capsys.readouterr()
    assert main(["embed", str(run_dir), str(folder), "--out", str(out)]) == 0
    assert re.search(r"warning: skipped 1 unreadable.*2\.png", capsys.readouterr().err)
    feats = np.load(out)
    listed = out.with_suffix(".txt").read_text().splitlines()
    assert [Path(p).name for p in listed] == ["0.png", "1.png", "3.png", "4.png"]
    np.testing.assert_allclose(feats, full[[0, 1, 3, 4]], rtol=1e-5, atol=1e-6)
    assert "2.png" in out.with_suffix(".skipped.txt").read_text()
    # --strict stops on it instead, naming the file, and writes nothing
    out.unlink()
    assert main(["embed", str(run_dir), str(folder), "--out", str(out), "--strict"]) == 2
    assert not out.exists()
    assert "2.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.batch_size=1"], "SimCLR needs at least 2 images"),
        (["simclr.temperature=0"], "temperature must be > 0"),
        (["data.dataset=nope"], "is unknown"),
        (["train.batch_sise=4"], "did you mean train.batch_size"),
    ],
)
def test_impossible_settings_fail_before_training_with_one_line(args, message, capsys, tmp_path):
    assert main(["pretrain", *TINY, *args, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_empty_folder_is_refused_with_the_fix(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [*TINY, "data.dataset=folder", f"data.data_dir={empty}"]
    assert main(["pretrain", *args, "--run-dir", str(tmp_path / "r")]) == 2
    assert str(empty) in capsys.readouterr().err


def test_warnings_are_one_clean_line_each(tmp_path, capsys, monkeypatch):
    old = tmp_path / "old.yaml"  # a renamed key: the config loader warns
    old.write_text("dino:\n  teacher_temperature_warmup: 0.3\ntrain:\n  epochs: 50\n")
    assert main(["pretrain", "--config", str(old), "--print-config"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: dino.teacher_temperature_warmup=0.3 ")
    assert "root.py" not in err[0] and "UserWarning" not in err[0]

    def warns(args):
        warnings.warn("disk almost full", UserWarning, stacklevel=1)
        warnings.warn("disk almost full", UserWarning, stacklevel=1)  # repeated: shown once
        return 0

    monkeypatch.setattr("selfsup.cli.parser.cmd_demo", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # Python alone would print the repeat
        assert main(["demo"]) == 0
    assert capsys.readouterr().err == "warning: disk almost full\n"


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["pretrain", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a selfsup run directory" in capsys.readouterr().err


def test_help_teaches_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "simclr.temperature" in out and "0.1 (ImageNet) / 0.5" in out


def test_bench_reports_the_three_throughputs(tmp_path, capsys):
    out = tmp_path / "RESULTS.md"
    args = ["bench", *TINY, "--steps", "1", "--warmup", "0", "--write", str(out)]
    assert main(args) == 0
    text = out.read_text()
    for row in ("view pipeline alone", "model step alone", "end-to-end"):
        assert row in text
    assert "selfsup bench" in text


def test_shipped_configs_are_valid():
    from selfsup.config import Config

    demo_config().validate()
    for path in sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml")):
        Config.from_yaml(path).validate()


def test_mae_pretrain_and_reconstruction_picture(tmp_path, capsys):
    run = tmp_path / "mae"
    args = [*TINY, *METHOD_OVERRIDES["mae"], "train.max_steps=3"]
    assert main(["pretrain", *args, "--run-dir", str(run)]) == 0
    assert main(["viz", "mae", str(run), "--num-images", "3"]) == 0
    png = run / "report" / "mae_reconstructions.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["viz", "mae", str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize("method", ["moco", "mocov3", "byol"])
def test_momentum_methods_run_from_the_cli(method, tmp_path):
    args = [*TINY, "train.max_steps=2", "moco.queue_size=256", "moco.split_bn=2"]
    assert main(["pretrain", "--method", method, *args, "--run-dir", str(tmp_path / method)]) == 0
    assert (tmp_path / method / "encoder.safetensors").is_file()


def test_pretrain_on_an_unlabelled_image_folder(tmp_path):
    """Files decoded by the loader, no labels anywhere: training runs, online k-NN is skipped."""
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")
    run = tmp_path / "run"
    args = [*TINY, "data.dataset=folder", f"data.data_dir={folder}", "data.image_size=12"]
    args += ["train.batch_size=16", "train.epochs=2", "train.log_every=1"]
    assert main(["pretrain", *args, "--run-dir", str(run)]) == 0
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(m["kind"] == "train" for m in metrics) == 2 * (40 // 16)
    assert not any("knn_top1" in m for m in metrics)
    assert (run / "encoder.safetensors").is_file()


def test_dino_vit_runs_from_the_cli_and_draws_attention(run_dir, tmp_path, capsys):
    """DINO on a ViT: the student takes the 8 px local crops (2x2 patches) through position
    embeddings interpolated from the 16 px grid. DINO on a ResNet trains in
    tests/methods/test_dino.py."""
    run = tmp_path / "vit"
    args = [*TINY, *METHOD_OVERRIDES["dino"], "backbone.name=vit_micro", "backbone.patch_size=4"]
    args += ["train.max_steps=2", "train.log_every=1"]
    assert main(["pretrain", *args, "--run-dir", str(run)]) == 0
    assert (run / "encoder.safetensors").is_file()
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m["kind"] == "train"]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert main(["viz", "attention", str(run), "--num-images", "2"]) == 0
    assert main(["viz", "attention", str(run), "--num-images", "2", "--teacher"]) == 0
    for name in ("attention.png", "attention_teacher.png"):
        assert (run / "report" / name).read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(["viz", "attention", str(run_dir)]) == 2  # the SimCLR ResNet has no attention
    assert "needs a ViT run" in capsys.readouterr().err


def test_demo_shortens_its_schedule_to_fit_the_budget_on_a_slow_machine(
    tmp_path, capsys, monkeypatch
):
    # digits: 1437 training images, 11 steps of 128 an epoch, 22 for the 2 epochs asked
    calls = []

    def slow(cfg, dataset):  # a machine that trains 100 img/s
        calls.append(cfg.train.batch_size)
        return 100.0, 0.5

    monkeypatch.setattr("selfsup.bench.time_to_accuracy.calibrate", slow)
    fits = []
    real_fit = schedule_fit.BudgetFit

    def budget_fit(budget_s, **options):  # the run re-plans itself within the same budget
        fits.append((budget_s, options))
        return real_fit(budget_s, **options)

    monkeypatch.setattr(schedule_fit, "BudgetFit", budget_fit)
    run = tmp_path / "demo"
    # 0.1 minutes at 100 img/s: 0.85 x 6 s x 100 / 128 -> 3 steps instead of 22
    args = ["demo", *TINY, "train.epochs=2", "train.knn_every=0", "--minutes", "0.1"]
    assert main([*args, "--run-dir", str(run)]) == 0
    out, err = capsys.readouterr()
    assert calls == [128]
    # never beyond the 2 epochs asked (22 steps), ending at 93% of the 6 s
    assert fits == [(pytest.approx(6.0), {"margin": 0.93, "most": 22})]
    assert "this machine trains the demo at 100 img/s: 2 epochs would take 0.5 minutes" in err
    assert "trains 0.27 epochs (3 steps, the schedule sized to them)" in err
    assert "selfsup demo: SimCLR on digits, 0.273 epoch(s)" in out
    assert "pre-training: 3 steps" in out and "raw pixels" in out
    assert "total_steps: 3" in (run / "config.yaml").read_text()

    # a machine so slow that its evaluation eats the 10 minutes: 5 img/s estimate 60 s + 2 x
    # 1437 x 7/6 / 15 s = 284 s of evaluation, so the default 7 minutes become 570 - 284 = 286 s
    # of pre-training: 0.85 x 286 x 5 / 128 -> 9 steps
    monkeypatch.setattr("selfsup.bench.time_to_accuracy.calibrate", lambda c, d: (5.0, 0.5))
    assert main([*args[:-2], "--run-dir", str(tmp_path / "slower")]) == 0
    err = capsys.readouterr().err
    assert "(9 steps, the schedule sized to them) to stay within 4.8 minutes of pre-training" in err

    # a fast machine, or --minutes 0, keeps every epoch and does not calibrate
    monkeypatch.setattr("selfsup.bench.time_to_accuracy.calibrate", lambda c, d: (1e6, 0.1))
    assert main([*args, "--run-dir", str(tmp_path / "fast")]) == 0
    assert "selfsup demo: SimCLR on digits, 2 epoch(s)" in capsys.readouterr().out
    calls.clear()
    monkeypatch.setattr("selfsup.bench.time_to_accuracy.calibrate", slow)
    args[-1] = "0"
    assert main([*args, "train.max_steps=1", "--run-dir", str(tmp_path / "all")]) == 0
    assert calls == [] and "2 epoch(s)" in capsys.readouterr().out
