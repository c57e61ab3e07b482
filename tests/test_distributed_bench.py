"""``selfsup bench --distributed``: the bytes counted in 2 real gloo processes against the
model's own size and the loss's own tensors, the throughput arithmetic, and the CLI wiring."""

from __future__ import annotations

import pytest

from selfsup import bench, build
from selfsup.cli import build_parser, main
from selfsup.config import Config
from tests.conftest import METHOD_OVERRIDES, tiny_config


def _trainable(cfg: Config) -> int:
    """The method's trainable parameters, counted here, apart from the workers."""
    data = build.train_dataset(cfg)
    build.resolve_normalization(cfg, data)
    method = build.make_method(cfg, build.input_channels(cfg, data))
    return sum(p.numel() for p in method.parameters() if p.requires_grad)


def _sites(result: dict) -> dict[tuple[str, str], dict]:
    return {(s["kind"], s["site"]): s for s in result["sites"]}


def test_simclr_sends_its_fp32_gradients_once_and_gathers_the_nt_xent_embeddings() -> None:
    cfg = tiny_config(*METHOD_OVERRIDES["simclr"], "train.batch_size=16")
    r = bench.measure_comm(cfg, steps=3)
    params = _trainable(tiny_config(*METHOD_OVERRIDES["simclr"], "train.batch_size=16"))
    assert r["trainable_params"] == params
    assert r["counted_steps"] == 2
    # DDP's buckets hold every trainable parameter's fp32 gradient exactly once per step.
    assert r["grad_bytes"] == 4 * params
    assert r["ddp_python_calls"] == 0  # DDP's reducer bypasses the wrapped functions
    # NT-Xent gathers both views' embeddings: 8 images x 2 views x 16 dims x 4 bytes; its
    # backward all-reduces the gradient of the gathered [2 x 16, 16] tensor.
    sites = _sites(r)
    gather = next(
        s for (kind, site), s in sites.items() if kind == "all_gather" and "nt_xent" in site
    )
    assert (gather["calls"], gather["bytes"]) == (1, 8 * 2 * 16 * 4)
    backward = next(s for (kind, site), s in sites.items() if "_GatherWithGrad.backward" in site)
    assert (backward["kind"], backward["bytes"]) == ("all_reduce", 2 * 8 * 2 * 16 * 4)
    assert r["other_bytes"] == sum(s["bytes"] for s in r["sites"]) > 0


def test_byol_has_no_cross_process_loss_terms() -> None:
    cfg = tiny_config(*METHOD_OVERRIDES["byol"], "train.batch_size=16")
    r = bench.measure_comm(cfg, steps=2)
    assert r["grad_bytes"] == 4 * r["trainable_params"] > 0
    # Only the step's loss/log mean and the online probe's feature and label gathers.
    assert {site.split(" via ")[0] for _, site in _sites(r)} == {
        "train.distributed.mean_over_processes",
        "train.step.TrainStep._probe_step",
    }
    assert 0 < r["other_bytes"] < 0.01 * r["grad_bytes"]


def test_global_images_per_s_skips_the_warm_up_window_and_weights_windows_by_time() -> None:
    records = [
        {"kind": "setup"},
        {"kind": "train", "step": 2, "img_per_s": 1.0},  # warm-up, ignored
        {"kind": "train", "step": 4, "img_per_s": 100.0},  # 2 steps
        {"kind": "train", "step": 5, "img_per_s": 50.0},  # 1 step, at half the rate
    ]
    # 3 global batches in 2/100 + 1/50 batch-seconds: 75 images/s (the trainer logs global).
    rate, windows = bench.global_images_per_s(records)
    assert rate == pytest.approx(75.0) and windows == 2
    with pytest.raises(ValueError, match="need >= 2"):
        bench.global_images_per_s(records[:2])


def test_a_failed_method_is_reported_with_its_traceback() -> None:
    row = {"method": "moco", "error": "ProcessRaisedException:\nTraceback ...\nValueError: boom"}
    text = bench.format_comm([row])
    assert "| moco | failed (below) |" in text and "ValueError: boom" in text


def test_cli_passes_the_distributed_options_through(monkeypatch) -> None:
    seen: dict = {}
    monkeypatch.setattr(bench, "run_distributed_bench", lambda *a, **k: seen.update(a=a, k=k))
    argv = ["bench", "--distributed", "--methods", "simclr,byol", "--procs", "2", "--steps", "2"]
    assert main([*argv, "train.batch_size=16"]) == 0
    base, overrides = seen["a"]
    assert overrides == ["train.batch_size=16"] and base.method == "simclr"
    assert seen["k"]["methods"] == ["simclr", "byol"]
    assert (seen["k"]["procs"], seen["k"]["steps"], seen["k"]["label"]) == ([2], 2, "demo")
    defaults = build_parser().parse_args(["bench", "--distributed"])
    assert defaults.methods is None and defaults.procs is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--distributed", "--scaling", "64"], "does not combine with --scaling"),
        (["--distributed", "--steps", "1"], "--steps >= 2"),
        (["--methods", "simclr"], "go with --distributed"),
    ],
)
def test_cli_refuses_what_makes_no_sense(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["bench", *argv])


def test_an_unknown_method_fails_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="unknown method 'simclrr'"):
        bench.run_distributed_bench(tiny_config(), methods=["simclrr"])
