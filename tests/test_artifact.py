"""The encoder artefact's file format: a run directory written in the stated layout loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from selfsup import build
from selfsup.artifact import (
    ENCODER_FORMAT,
    EXPORT_FORMAT,
    encoder_meta,
    export_metadata,
    load_encoder_state,
    save_encoder,
)
from selfsup.eval.run import load_encoder
from selfsup.train.checkpoint import CheckpointError
from tests.conftest import tiny_config

# encoder.json of a selfsup-encoder/1 run directory, written out by hand (not by the code).
RUN_META = {
    "format": "selfsup-encoder/1",
    "method": "simclr",
    "backbone": {
        "name": "resnet18",
        "width": 0.125,
        "cifar_stem": True,
        "zero_init_residual": False,
        "patch_size": 16,
        "pool": "cls",
    },
    "in_channels": 1,
    "feature_dim": 64,
    "image_size": 8,
    "mean": [0.3054],
    "std": [0.376],
}
# What this version writes: the same, plus which network the weights are and the two ViT
# options added to the backbone section (files without them, like RUN_META, still load).
CURRENT_META = {
    **RUN_META,
    "network": "online",
    "backbone": {**RUN_META["backbone"], "drop_path_rate": 0.0, "freeze_patch_embed": False},
}


def test_encoder_meta_is_the_stated_layout() -> None:
    cfg = tiny_config("views.mean=[0.3054]", "views.std=[0.376]")
    encoder = build.make_backbone(cfg, 1)
    assert ENCODER_FORMAT == "selfsup-encoder/1" and EXPORT_FORMAT == "selfsup-export/1"
    assert encoder_meta(cfg, 1, encoder) == CURRENT_META
    assert encoder_meta(cfg, 1, encoder, "target")["network"] == "target"
    assert build.encoder_meta is encoder_meta  # callers still reach it through build


def test_a_hand_written_run_directory_loads(tmp_path: Path) -> None:
    cfg = tiny_config("views.mean=[0.3054]", "views.std=[0.376]")
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in build.make_backbone(cfg, 1).state_dict().items()}
    save_file(state, str(tmp_path / "encoder.safetensors"))
    (tmp_path / "encoder.json").write_text(json.dumps(RUN_META))

    run = load_encoder(tmp_path)
    assert run.meta == RUN_META and run.in_channels == 1 and not run.encoder.training
    for key, value in run.encoder.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_save_and_load_round_trip_and_the_missing_files_error(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    weights = save_encoder(tmp_path, net, RUN_META)
    assert weights == tmp_path / "encoder.safetensors"
    assert json.loads((tmp_path / "encoder.json").read_text()) == RUN_META
    state, meta = load_encoder_state(tmp_path)
    assert meta == RUN_META and state.keys() == net.state_dict().keys()
    with pytest.raises(CheckpointError, match="no exported encoder"):
        load_encoder_state(tmp_path / "nothing")


def test_export_metadata_adds_the_contract_and_keeps_the_run_keys() -> None:
    meta = export_metadata(RUN_META, "onnx")
    assert meta["format"] == "selfsup-export/1" and meta["artefact"] == "onnx"
    assert {k: meta[k] for k in RUN_META if k != "format"} == {
        k: v for k, v in RUN_META.items() if k != "format"
    }
    assert meta["input"]["shape"] == ["batch", 1, 8, 8] and meta["input"]["range"] == [0.0, 1.0]
    assert meta["output"] == {"name": "features", "shape": ["batch", 64]}
    assert meta["onnx_opset"] == 18 and "onnx_opset" not in export_metadata(RUN_META, "torchscript")
