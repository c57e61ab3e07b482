"""``selfsup bench`` on tiny data: every reported field exists and is consistent; FLOP counting
against hand-computed counts; the image-folder, torchvision, scaling and k-NN modes."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from selfsup import bench
from selfsup.cli import main
from selfsup.data import TensorImageDataset
from selfsup.train.device import device_kind
from selfsup.views import ViewSpec
from tests.conftest import METHOD_OVERRIDES, TINY_CLI_OVERRIDES, tiny_config

PEAK = (128,)  # a small matmul keeps the peak measurement quick in tests


def test_count_flops_matches_hand_count_for_a_linear_layer() -> None:
    layer = nn.Linear(8, 4)
    x = torch.randn(16, 8)
    # Forward: 2 * 16 * 8 * 4 = 1024 (the bias add is not a matmul and is not counted).
    assert bench.count_flops(lambda: layer(x)) == 1024
    # Backward adds the weight gradient (1024); the input needs no gradient.
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 2048
    # ... and the input gradient (1024) when it does.
    x.requires_grad_()
    assert bench.count_flops(lambda: layer(x).sum().backward()) == 3072


def test_matmul_peak_is_positive_and_finite() -> None:
    peak = bench.matmul_peak_gflops(torch.device("cpu"), torch.float32, (64, 128), 0.01)
    assert 0 < peak < 1e6


def test_bench_reports_every_field_consistently(tmp_path, capsys) -> None:
    cfg = tiny_config()
    md, js = tmp_path / "RESULTS.md", tmp_path / "bench.jsonl"
    r = bench.run_bench(
        cfg,
        steps=2,
        warmup=1,
        write=str(md),
        json_path=str(js),
        command="selfsup bench tiny",
        peak_sizes=PEAK,
    )
    rates = ("views_img_s", "loader_img_s", "step_img_s", "backbone_img_s", "end_to_end_img_s")
    for key in rates:
        assert math.isfinite(r[key]) and r[key] > 0, key
    # The ratios are the ratios of the reported rates.
    assert r["views_over_step"] == pytest.approx(r["views_img_s"] / r["step_img_s"])
    assert r["end_to_end_over_step"] == pytest.approx(r["end_to_end_img_s"] / r["step_img_s"])
    assert r["method_overhead"] == pytest.approx(r["backbone_img_s"] / r["step_img_s"] - 1)
    assert 0 <= r["data_wait"] < 1
    # The step runs the backbone on the same views plus the projector and NT-Xent.
    assert r["step_gflop"] > r["backbone_gflop"] > 0
    assert r["step_gflops"] == pytest.approx(r["step_gflop"] * r["step_img_s"] / r["batch_size"])
    # The fraction of the peak is a ratio of two timings: on a busy machine it can pass 1.
    assert r["peak_fraction"] == pytest.approx(r["step_gflops"] / r["matmul_peak_gflops"])
    assert r["peak_fraction"] > 0
    assert r["peak_dtype"] == "float32"  # tiny_config runs in fp32
    assert r["peak_memory_mib"] >= r["memory_at_start_mib"] > 0
    assert "ru_maxrss" in r["memory_kind"]
    assert (r["batch_size"], r["num_views"], r["view_size"]) == (64, 2, 8)
    # The kind under compile_policy.MEASURED's key: this CPU's, AMX or not.
    assert r["device_kind"] == device_kind(torch.device("cpu")) in ("cpu", "cpu+amx")

    printed = capsys.readouterr().out
    text = md.read_text()
    assert "### " in text and "`selfsup bench tiny`" in text
    for row in ("view pipeline alone", "model step alone", "end-to-end", "backbone fwd+bwd"):
        assert row in text and row in printed
    assert "matmul peak" in text and ">= 5x" in text
    record = json.loads(js.read_text().splitlines()[-1])
    assert record["command"] == "selfsup bench tiny"
    assert record["result"]["step_gflop"] == pytest.approx(r["step_gflop"])


def test_image_folder_round_trip_is_pixel_exact(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    for channels in (1, 3):
        images = torch.randint(0, 256, (5, channels, 9, 9), generator=gen).to(torch.uint8)
        source = TensorImageDataset(images, None, "noise", None)
        root = tmp_path / str(channels)
        root.mkdir()
        folder = bench.write_image_folder(source, root, count=5)
        assert len(folder) == 5
        decoded, _ = folder.get_batch(torch.arange(5))
        assert torch.equal(decoded, images)


def test_bench_decodes_files_in_workers_and_compares_torchvision() -> None:
    cfg = tiny_config("data.num_workers=1")
    r = bench.run_bench(
        cfg, steps=2, warmup=1, as_files=True, compare_torchvision=True, peak_sizes=PEAK
    )
    assert r["workers"] == 1 and "PNG files" in r["data"]
    assert r["end_to_end_img_s"] > 0 and 0 <= r["data_wait"] < 1
    assert r["torchvision_views_img_s"] > 0 and r["ours_views_img_s"] > 0
    assert r["views_over_torchvision"] == pytest.approx(
        r["ours_views_img_s"] / r["torchvision_views_img_s"]
    )


def test_torchvision_view_with_every_op_off_is_the_normalised_image() -> None:
    spec = ViewSpec(
        size=6,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        gray_p=0.0,
        blur_p=0.0,
    )
    image = torch.randint(0, 256, (3, 6, 6), generator=torch.Generator().manual_seed(1))
    image = image.to(torch.uint8)
    out = bench.torchvision_view(spec, 3, [0.5, 0.4, 0.3], [0.2, 0.25, 0.5])(image)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.5]).view(3, 1, 1)
    torch.testing.assert_close(out, (image.float() / 255 - mean) / std)


def test_scaling_shows_the_quadratic_nt_xent_term() -> None:
    rows = bench.run_scaling(tiny_config(), [16, 32, 64], steps=1, warmup=0)
    assert [r["batch_size"] for r in rows] == [16, 32, 64]
    for small, large in itertools.pairwise(rows):
        # Convolutions are linear in the batch; NT-Xent's [2B, 2B] logits make the FLOPs beyond
        # the backbone grow faster than linearly.
        assert large["beyond_backbone_gflop"] > 2 * small["beyond_backbone_gflop"] > 0
        assert large["step_gflop"] > 2 * small["step_gflop"]
    # The forward probe asks the method for its step: the same column for every method.
    assert all(r["forward_ms"] > 0 for r in rows)
    assert "training_step forward ms" in bench.format_scaling(rows)


def test_scaling_probes_any_method_without_naming_it() -> None:
    rows = bench.run_scaling(tiny_config(*METHOD_OVERRIDES["mae"]), [16], steps=1, warmup=0)
    assert rows[0]["forward_ms"] > 0 and rows[0]["step_ms"] > 0


def test_knn_bench_rows_and_memory_bound() -> None:
    rows = bench.run_knn_bench([300, 1000], queries=50, dim=8, chunk_size=20, bank_chunk_size=256)
    assert [r["bank"] for r in rows] == [300, 1000]
    for r in rows:
        assert r["seconds"] > 0 and r["queries_per_s"] > 0
        assert r["full_matrix_mib"] == pytest.approx(r["bank"] * 50 * 4 / 2**20)
    # The block bound is chunk x min(bank chunk, bank) float32 values.
    assert rows[0]["block_bound_mib"] == pytest.approx(20 * 256 * 4 / 2**20)


def test_parse_shape() -> None:
    assert bench.parse_shape("3x32x32") == (3, 32, 32)
    for bad in ("32x32", "2x8x8", "3x0x8", "axbxc"):
        with pytest.raises(ValueError, match=r"CxHxW|channels"):
            bench.parse_shape(bad)


def test_cli_modes(capsys) -> None:
    tiny = TINY_CLI_OVERRIDES
    assert main(["bench", "--knn", "--bank", "200,400", "--queries", "30", "--dim", "4"]) == 0
    assert "| 400 |" in capsys.readouterr().out
    assert main(["bench", *tiny, "--scaling", "8,16", "--steps", "1", "--warmup", "0"]) == 0
    assert "| 16 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--scaling", "8,x"])
    assert exc.value.code == 2
    assert main(["bench", *tiny, "--synthetic", "4x8x8"]) == 2
    assert "1 or 3 channels" in capsys.readouterr().err
