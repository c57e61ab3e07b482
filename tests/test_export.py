"""`selfsup export`: every format computes the in-library encoder's features on [0, 1] images."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from selfsup import build
from selfsup.backbones import FeatureBackbone
from selfsup.cli import build_parser, main
from selfsup.eval.run import load_encoder
from selfsup.export import (
    DEFAULT_TOLERANCE,
    EXPORT_FORMAT,
    FORMATS,
    ONNX_OPSET,
    ExportCheckError,
    ExportError,
    NormalizedEncoder,
    export_encoder,
    load_exported,
    read_export_metadata,
)
from selfsup.train.checkpoint import CheckpointError
from selfsup.train.trainer import Trainer
from tests.conftest import METHOD_OVERRIDES, tiny_config

RUNS = {
    "resnet": (),  # SimCLR, ResNet-18 x0.125, CIFAR stem, 1 channel, 8 px
    "vit": tuple(METHOD_OVERRIDES["mae"]),  # MAE, vit_micro, patch 2
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs trained for 2 steps (BN running statistics are no longer the init's)."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for name, overrides in RUNS.items():
        cfg = tiny_config(*overrides, "train.max_steps=2")
        out[name] = Trainer(cfg, root / name).fit().run_dir
    return out


def library_features(run_dir: Path, images: Tensor) -> Tensor:
    """The evaluation path: uint8 -> EvalTransform (normalise) -> encoder."""
    run = load_encoder(run_dir)
    with torch.inference_mode():
        return run.encoder(build.eval_transform(run.cfg)(images))


def random_images(meta: dict, n: int, seed: int = 123) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (n, meta["in_channels"], meta["image_size"], meta["image_size"])
    return torch.randint(0, 256, shape, generator=gen).to(torch.uint8)


def run_artefact(path: Path, fmt: str, x: Tensor) -> Tensor:
    """Run an exported file with the consumer's own loader, not selfsup's check code."""
    if fmt == "safetensors":
        with torch.inference_mode():
            return load_exported(path)(x)
    if fmt == "torchscript":
        with torch.inference_mode():
            return torch.jit.load(str(path))(x)
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def test_normalized_encoder_normalises_inside_with_hand_computed_values():
    flat = FeatureBackbone(nn.Flatten(), feature_dim=3)
    model = NormalizedEncoder(flat, mean=[0.5], std=[0.25])  # one statistic for all channels
    x = torch.tensor([0.75, 0.5, 0.0]).view(1, 3, 1, 1)
    assert model(x).tolist() == [[1.0, 0.0, -2.0]]
    assert model.feature_dim == 3
    assert list(model.state_dict()) == []  # the statistics live in the metadata only
    with pytest.raises(ValueError, match=r"images.float\(\) / 255"):
        model(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    with pytest.raises(ValueError, match="std entries must be finite and > 0"):
        NormalizedEncoder(flat, mean=[0.5], std=[0.0])


# torch.jit.load warns that TorchScript is deprecated; consumers see that warning, the test not.
@pytest.mark.filterwarnings("ignore:.*torch.jit.load. is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arch", sorted(RUNS))
def test_export_matches_the_library_encoder(runs, arch, fmt):
    run_dir = runs[arch]
    result = export_encoder(run_dir, fmt)
    suffix = {"safetensors": ".safetensors", "torchscript": ".pt", "onnx": ".onnx"}[fmt]
    assert result.path == run_dir / "export" / f"encoder{suffix}"
    assert result.size_bytes == result.path.stat().st_size > 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o666 & ~umask

    # The built-in check ran on batches of 8 and 1 and passed.
    assert result.check is not None and result.check.batch_sizes == (8, 1)
    assert result.check.max_abs_diff <= DEFAULT_TOLERANCE * result.check.feature_scale

    # Independently: a new batch size, the consumer's loader, pixels / 255 in.
    meta = read_export_metadata(result.path)
    images = random_images(meta, 5)
    expected = library_features(run_dir, images)  # [5, D]
    got = run_artefact(result.path, fmt, images.float() / 255)
    assert got.shape == expected.shape == (5, meta["feature_dim"])
    assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()

    run_meta = json.loads((run_dir / "encoder.json").read_text())
    cfg = load_encoder(run_dir).cfg
    assert meta["format"] == EXPORT_FORMAT and meta["artefact"] == fmt
    assert meta["backbone"] == run_meta["backbone"]
    assert meta["mean"] == cfg.views.mean and meta["std"] == cfg.views.std
    assert meta["input"]["shape"] == ["batch", 1, 8, 8] and meta["input"]["range"] == [0.0, 1.0]
    assert meta["output"]["shape"] == ["batch", run_meta["feature_dim"]]
    if fmt == "onnx":
        assert_onnx_opset_and_dynamic_batch(result.path)


def assert_onnx_opset_and_dynamic_batch(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    assert [o.version for o in model.opset_import if o.domain == ""] == [ONNX_OPSET]
    assert read_export_metadata(path)["onnx_opset"] == ONNX_OPSET
    (graph_input,) = model.graph.input
    batch, *rest = graph_input.type.tensor_type.shape.dim
    assert batch.dim_param and not batch.HasField("dim_value")  # symbolic: any batch size
    assert [d.dim_value for d in rest] == [1, 8, 8]


def test_safetensors_export_is_self_contained(runs, tmp_path):
    run_dir = runs["vit"]
    exported = export_encoder(run_dir, "safetensors", tmp_path / "a" / "vit.safetensors").path
    moved = tmp_path / "elsewhere" / "vit.safetensors"
    moved.parent.mkdir()
    shutil.move(exported, moved)

    model = load_exported(moved)
    assert isinstance(model, NormalizedEncoder) and not model.training
    assert model.meta["backbone"]["name"] == "vit_micro"
    # Same tensors, same keys as the run's own encoder.safetensors.
    ours, theirs = load_file(str(moved)), load_file(str(run_dir / "encoder.safetensors"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    images = random_images(model.meta, 3, seed=7)
    with torch.inference_mode():
        got = model(images.float() / 255)
    torch.testing.assert_close(got, library_features(run_dir, images), rtol=0, atol=0)
    # inference returns plain tensors: no autograd graph without an inference_mode block
    plain = model(images.float() / 255)
    assert not plain.requires_grad and plain.grad_fn is None
    assert not any(p.requires_grad for p in model.parameters())


def test_no_check_skips_the_comparison(runs, tmp_path):
    result = export_encoder(runs["resnet"], "torchscript", tmp_path / "r.pt", check=False)
    assert result.check is None and result.path.is_file()


def copy_run(run_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("config.yaml", "encoder.safetensors", "encoder.json"):
        shutil.copy(run_dir / name, dest / name)
    return dest


def test_a_mismatch_fails_and_keeps_the_previous_file(runs, tmp_path):
    run_dir = copy_run(runs["resnet"], tmp_path / "run")
    out = tmp_path / "enc.safetensors"
    export_encoder(run_dir, "safetensors", out)
    before = out.read_bytes()
    # Metadata that disagrees with the training normalisation (config.yaml) must be caught.
    meta = json.loads((run_dir / "encoder.json").read_text())
    meta["mean"] = [m + 0.5 for m in meta["mean"]]
    (run_dir / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(ExportCheckError, match="nothing was written"):
        export_encoder(run_dir, "safetensors", out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.safetensors", "run"]  # no temp


def test_clear_errors_for_bad_input(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_encoder(tmp_path / "missing")
    with pytest.raises(ExportError, match="safetensors, torchscript, onnx"):
        export_encoder(runs["resnet"], "tflite")
    with pytest.raises(ExportError, match="tolerance must be"):
        export_encoder(runs["resnet"], tolerance=0.0)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(runs["resnet"] / "config.yaml", unfinished / "config.yaml")
    with pytest.raises(CheckpointError, match="no exported encoder"):
        export_encoder(unfinished)
    with pytest.raises(ExportError, match=r"load_encoder\(RUN\)"):
        load_exported(runs["resnet"] / "encoder.safetensors")
    with pytest.raises(ExportError, match="from its suffix"):
        read_export_metadata(tmp_path / "model.bin")


def test_cli_prints_path_size_and_difference(runs, tmp_path, capsys):
    out = tmp_path / "enc.pt"
    assert (
        main(["export", str(runs["resnet"]), "--format", "torchscript", "--output", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert str(out) in text and "KiB" in text
    assert "max |exported - selfsup| = " in text and ": ok" in text

    assert main(["export", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("selfsup export: error: run directory") and "\n" not in err

    broken = copy_run(runs["resnet"], tmp_path / "broken")
    meta = json.loads((broken / "encoder.json").read_text())
    meta["std"] = [2 * s for s in meta["std"]]
    (broken / "encoder.json").write_text(json.dumps(meta))
    assert main(["export", str(broken)]) == 1
    assert "check failed" in capsys.readouterr().err
    assert not (broken / "export" / "encoder.safetensors").exists()

    with pytest.raises(SystemExit) as exc:
        main(["export", str(runs["resnet"]), "--format", "tflite"])
    assert exc.value.code == 2


def test_cli_options_match_the_library():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    export = sub.choices["export"]  # type: ignore[index]
    options = {a.dest: a for a in export._actions}
    assert tuple(options["format"].choices) == FORMATS
    assert options["tolerance"].default == DEFAULT_TOLERANCE
    assert options["check"].default is True
