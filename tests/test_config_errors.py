"""Bad configurations end before training with one line naming the key and the fix (exit 2).

Each listed bad input runs through ``selfsup pretrain`` in-process; ``tests/test_config.py``
covers the same messages at the ``Config`` level.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from selfsup.cli import main
from selfsup.config import Config, ConfigError, apply_overrides

TINY = ["data.dataset=digits", "backbone.width=0.125", "views.size=8", "train.progress=false"]


def pretrain_error(args: list[str], run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``selfsup pretrain``; it must exit 2 with one stderr line, no traceback, no run dir."""
    assert main(["pretrain", *args, "--run-dir", str(run)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("selfsup pretrain: error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and captured.out == ""
    assert not run.exists()
    return err


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # unknown method, through both spellings
        (["method=deepcluster"], ["method='deepcluster' is unknown", "simclr"]),
        (["--method", "dino2"], ["method='dino2' is unknown"]),
        # unknown option, with the suggestion
        (["optim.base_lr=0.1", "train.epoch=3"], ["unknown option 'train.epoch'", "train.epochs"]),
        (["simclr.temprature=0.5"], ["did you mean simclr.temperature"]),
        # a section given a value
        (["train=5"], ["train is a section", "train.<option>=value"]),
        # wrong types
        (["train.batch_size=abc"], ["train.batch_size must be an integer, got 'abc'"]),
        (["simclr.temperature=warm"], ["simclr.temperature must be a number"]),
        (["train.progress=maybe"], ["train.progress must be true or false"]),
        (
            ["train.compile=sometimes"],
            ["train.compile must be true, false or auto, got 'sometimes'"],
        ),
        (["views.mean=0.5"], ["views.mean must be a list"]),
        # impossible values
        (["train.batch_size=1"], ["train.batch_size=1", "SimCLR needs at least 2", "raise"]),
        (["simclr.temperature=-0.5"], ["simclr.temperature must be > 0", "-0.5"]),
        (["method=moco", "moco.temperature=-0.2"], ["moco.temperature must be > 0"]),
        (["method=mocov3", "mocov3.temperature=-1"], ["mocov3.temperature must be > 0"]),
        (
            ["method=moco", "train.batch_size=64", "moco.queue_size=32", "moco.split_bn=0"],
            ["moco.queue_size=32 is smaller than train.batch_size=64", "raise moco.queue_size"],
        ),
        (
            [
                "method=mae",
                "backbone.name=vit_micro",
                "backbone.patch_size=4",
                "mae.mask_ratio=1.0",
            ],
            ["mae.mask_ratio=1.0", "[0, 1)", "no input"],
        ),
        (["method=byol", "train.batch_size=1"], ["byol needs at least 2 images"]),
        (["train.epochs=0"], ["train.epochs must be >= 1"]),
    ],
)
def test_bad_options_exit_2_with_one_line(
    overrides: list[str], expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = pretrain_error([*TINY, *overrides], tmp_path / "run", capsys)
    for text in expected:
        assert text in err


def test_invalid_yaml_names_the_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: 3\n batch_size: 8\n")  # batch_size is mis-indented
    err = pretrain_error(["-c", str(config)], tmp_path / "run", capsys)
    assert f"config file {config} is not valid YAML: line 3, column 2" in err
    assert "fix the indentation" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train:\n  batch_sise: 8\n", ["unknown option 'train.batch_sise'", "train.batch_size"]),
        ("method: deepcluster\n", ["method='deepcluster' is unknown"]),
        ("train:\n  batch_size: abc\n", ["train.batch_size must be an integer"]),
        ("mae:\n  mask_ratio: 1.0\nmethod: mae\nbackbone:\n  name: vit_tiny\n", ["mask_ratio"]),
        ("- simclr\n- moco\n", ["must hold a mapping of sections"]),
    ],
)
def test_bad_config_files_exit_2_with_one_line(
    text: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    err = pretrain_error(["-c", str(config)], tmp_path / "run", capsys)
    for part in expected:
        assert part in err


def test_missing_and_binary_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = pretrain_error(["-c", str(tmp_path / "nope.yaml")], tmp_path / "run", capsys)
    assert "does not exist" in err
    binary = tmp_path / "model.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    err = pretrain_error(["-c", str(binary)], tmp_path / "run", capsys)
    assert "not UTF-8 text" in err


def test_config_level_messages_for_the_new_checks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a section, not an option"):
        apply_overrides(Config(), ["optim=sgd"])
    with pytest.raises(ConfigError, match=r"mocov3\.temperature must be > 0"):
        apply_overrides(Config(), ["method=mocov3", "mocov3.temperature=-0.2"]).validate()
    config = tmp_path / "c.yaml"
    config.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(config)
    assert "\n" not in str(info.value) and "line 2, column 1" in str(info.value)
