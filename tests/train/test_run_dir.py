"""What a run directory guarantees (docs/reliability.md, "Run directories"): a new run never
overwrites one, an explicit overwrite leaves no stale file, a finished run resumes to a no-op,
a resume says where it continues, and an unfinished run can be evaluated from its checkpoint."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from selfsup.eval.run import evaluate_run, load_encoder
from selfsup.eval.run_encoder import encoder_sha256
from selfsup.methods import Progress
from selfsup.train.run_dir import RunDirectoryError, claim_run_dir, default_run_dir, run_status
from selfsup.train.trainer import Trainer
from tests.conftest import tiny_config


def small(*overrides: str) -> Any:
    return tiny_config(
        "data.subset=160", "train.batch_size=16", "train.epochs=1", "train.keep_best=0", *overrides
    )


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under the run directory with its bytes and modification time."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    Trainer(small(), run_dir).fit()
    return run_dir


def test_a_new_run_refuses_a_directory_that_holds_one_and_changes_nothing(finished_run):
    before = _files(finished_run)
    trainer = Trainer(small("train.seed=1"), finished_run)
    with pytest.raises(RunDirectoryError, match=r"already holds a run.*--resume.*--overwrite"):
        trainer.fit()
    assert _files(finished_run) == before
    assert trainer.step == 0  # refused before training


def test_overwrite_removes_every_output_of_the_earlier_run(finished_run):
    stale = {
        "eval.json": finished_run / "eval.json",
        "export": finished_run / "export" / "encoder.onnx",
        "report": finished_run / "report" / "index.html",
    }
    for path in stale.values():
        path.parent.mkdir(exist_ok=True)
        path.write_text("from the earlier encoder")
    keep = finished_run / "notes.txt"  # not a run output: left alone
    keep.write_text("mine")
    old_encoder = (finished_run / "encoder.safetensors").read_bytes()

    Trainer(small("train.seed=1"), finished_run, overwrite=True).fit()
    assert not any(p.exists() for p in stale.values())
    assert not (finished_run / "export").exists() and not (finished_run / "report").exists()
    assert keep.read_text() == "mine"
    assert (finished_run / "encoder.safetensors").read_bytes() != old_encoder
    kinds = [
        json.loads(x)["kind"] for x in (finished_run / "metrics.jsonl").read_text().splitlines()
    ]
    assert kinds.count("setup") == 1 and kinds[-1] == "end"  # one run's records only


def test_a_folder_that_is_not_a_run_directory_is_never_written_into(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"not really")
    for overwrite in (False, True):
        with pytest.raises(RunDirectoryError, match=r"not empty \(cat.jpg\).*not a selfsup run"):
            claim_run_dir(folder, overwrite)
    assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]
    claim_run_dir(tmp_path / "new")  # a new or empty directory is fine
    (tmp_path / "empty").mkdir()
    claim_run_dir(tmp_path / "empty")


def test_default_run_directories_never_collide(tmp_path):
    first = default_run_dir("simclr", "digits", tmp_path)
    first.mkdir(parents=True)
    second = default_run_dir("simclr", "digits", tmp_path)
    assert second != first and second.name.startswith(first.name)


def test_resuming_a_finished_run_changes_nothing(finished_run, capsys):
    end = json.loads((finished_run / "metrics.jsonl").read_text().splitlines()[-1])
    before = _files(finished_run)
    capsys.readouterr()
    result = Trainer(small(), finished_run).fit(resume=True)
    assert _files(finished_run) == before  # not one byte or timestamp
    assert result.already_finished and result.ran_steps == 0
    assert result.wall_time_s == end["wall_time_s"] and result.steps == end["step"] == 10
    out = capsys.readouterr().err
    assert "is finished (step 10 of 10); nothing changed" in out
    assert f"--resume {finished_run} train.epochs=" in out


def test_a_finished_run_extended_by_an_override_trains_on_and_says_so(finished_run, capsys):
    capsys.readouterr()
    result = Trainer(small("train.epochs=2"), finished_run).fit(resume=True)
    assert not result.already_finished and result.ran_steps == 10 and result.steps == 20
    out = capsys.readouterr().err
    assert f"resumed {finished_run} from last.pt at step 10 (epoch 2, step 0 of 10" in out
    assert "training 10 more steps to step 20" in out
    ends = [x for x in _records(finished_run) if x["kind"] == "end"]
    assert [e["step"] for e in ends] == [20] and ends[0]["ran_steps"] == 10


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def sigint_enabled():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _interrupted_run(run_dir: Path, at_step: int) -> Trainer:
    trainer = Trainer(small("train.epochs=2", "train.knn_every=0"), run_dir)
    after_step = trainer.method.after_step

    def interrupting(progress: Progress) -> None:
        if progress.step + 1 == at_step:
            signal.raise_signal(signal.SIGINT)
        after_step(progress)

    trainer.method.after_step = interrupting  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    return trainer


def test_an_interrupted_run_is_evaluated_with_its_last_checkpoint(tmp_path, capsys, sigint_enabled):
    run_dir = tmp_path / "run"
    trainer = _interrupted_run(run_dir, at_step=13)
    status = run_status(run_dir)
    assert not status.finished and status.has_checkpoint
    assert not (run_dir / "encoder.safetensors").exists()

    capsys.readouterr()
    run = load_encoder(run_dir)
    err = capsys.readouterr().err
    assert "is not finished" in err and "checkpoints/last.pt, step 13" in err
    assert run.step == 13 and run.source == "checkpoints/last.pt"
    expected = trainer.method.encoder_for("auto")
    for key, value in expected.state_dict().items():
        assert torch.equal(run.encoder.state_dict()[key], value), key
    assert run.sha256 == encoder_sha256(expected)

    rows = evaluate_run(run_dir, ("knn",), baselines=False)
    assert 0 < rows[0].knn <= 1
    (entry,) = json.loads((run_dir / "eval.json").read_text())["results"]
    assert entry["step"] == 13 and entry["source"] == "checkpoints/last.pt"
    assert entry["encoder_sha256"] == run.sha256


def test_eval_json_moves_results_of_a_replaced_encoder_to_superseded(finished_run):
    evaluate_run(finished_run, ("knn",), baselines=False)
    first = json.loads((finished_run / "eval.json").read_text())
    Trainer(small("train.epochs=2"), finished_run).fit(resume=True)  # a new encoder
    evaluate_run(finished_run, ("knn",), baselines=False)
    data = json.loads((finished_run / "eval.json").read_text())
    assert data["encoder_sha256"] != first["encoder_sha256"]
    assert [r["encoder_sha256"] for r in data["results"]] == [data["encoder_sha256"]]
    assert data["superseded"] == first["results"]


def test_the_encoder_hash_is_the_hash_of_encoder_safetensors(finished_run):
    run = load_encoder(finished_run)
    assert run.source == "encoder.safetensors" and run.step == 10
    assert run.sha256 == encoder_sha256(run.encoder)  # file bytes == serialised state
