"""The commands on a run: pretrain, eval, embed, export and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from selfsup.config import Config, apply_overrides


def build_config(
    config_path: str | None, overrides: Sequence[str], base: Config | None = None
) -> Config:
    """The YAML file (or ``base``) with the ``key=value`` overrides applied, validated."""
    cfg = base if base is not None else (Config.from_yaml(config_path) if config_path else Config())
    return apply_overrides(cfg, overrides).validate()


def demo_config() -> Config:
    """The embedded default: a short SimCLR run on Fashion-MNIST sized for 2 CPU cores."""
    text = resources.files("selfsup").joinpath("configs/demo.yaml").read_text()
    import yaml

    return Config.from_dict(yaml.safe_load(text))


EXIT_USAGE = 2  # bad input: one line naming the problem and the fix


# -- commands ---------------------------------------------------------------------------------------
def cmd_pretrain(args: argparse.Namespace) -> int:
    from selfsup.train.trainer import Trainer

    if args.resume:
        from selfsup.eval.run import load_run_config

        cfg = build_config(None, args.overrides, base=load_run_config(args.resume))
        run_dir: str | None = args.resume
    else:
        base = demo_config() if args.demo else None
        overrides = [*([f"method={args.method}"] if args.method else []), *args.overrides]
        cfg = build_config(args.config, overrides, base=base)
        run_dir = args.run_dir
    if args.strict:
        cfg.data.strict = True
    if args.print_config:
        print(cfg.to_yaml())
        return 0
    trainer = Trainer(cfg, run_dir)
    print(f"run directory: {trainer.run_dir}")
    result = trainer.fit(resume=bool(args.resume))
    knn = (
        f", online k-NN {100 * result.knn_accuracy:.2f}%" if result.knn_accuracy is not None else ""
    )
    print(
        f"done: {result.steps} steps in {result.wall_time_s:.0f} s, final loss "
        f"{result.final_loss:.4f}{knn}; encoder at {result.run_dir / 'encoder.safetensors'}"
    )
    if args.eval:
        return _evaluate(str(result.run_dir), ("knn", "linear"), baselines=True, overrides=[])
    return 0


def _evaluate(
    run_dir: str,
    protocols: tuple[str, ...],
    baselines: bool,
    overrides: Sequence[str],
    device: str = "cpu",
) -> int:
    from selfsup.eval import run as eval_run

    rows = eval_run.evaluate_run(
        run_dir, protocols, baselines=baselines, device=device, overrides=overrides, progress=True
    )
    print(eval_run.format_table(rows))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    protocols = ("knn", "linear") if args.protocol == "all" else (args.protocol,)
    return _evaluate(args.run_dir, protocols, not args.no_baselines, args.overrides, args.device)


def cmd_embed(args: argparse.Namespace) -> int:
    from selfsup import build
    from selfsup.data import iterate_batches, load_dataset
    from selfsup.eval.features import extract_features
    from selfsup.eval.run import load_encoder

    run = load_encoder(args.run_dir, args.device)
    kind = "filelist" if Path(args.images).is_file() else "folder"
    dataset = load_dataset(
        kind,
        "train",
        root=args.images,
        image_size=args.image_size or run.cfg.views.size,
        channels=run.in_channels,
        # Row i of the .npy must be the features of line i of the .txt: an unreadable file is
        # an error naming it, never silently replaced by its neighbour.
        strict=True,
    )
    feats, _ = extract_features(
        run.encoder,
        iterate_batches(dataset, args.batch_size, args.device),
        build.eval_transform(run.cfg),
        args.device,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feats.numpy())
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        out.with_suffix(".txt").write_text("".join(f"{p}\n" for p in paths))
    print(f"wrote {tuple(feats.shape)} features to {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's encoder (safetensors, TorchScript or ONNX) and check its features."""
    from selfsup.export import ExportCheckError, describe_export, export_encoder

    try:
        result = export_encoder(
            args.run_dir, args.format, args.output, check=args.check, tolerance=args.tolerance
        )
    except ExportCheckError as err:
        print(f"selfsup export: check failed: {err}", file=sys.stderr)
        return 1
    print(describe_export(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Pre-train on the embedded default, then evaluate against the two baselines."""
    from selfsup.eval import run as eval_run
    from selfsup.train.trainer import Trainer

    cfg = build_config(None, args.overrides, base=demo_config())
    trainer = Trainer(cfg, args.run_dir)
    print(
        f"selfsup demo: SimCLR on {cfg.data.dataset}, {cfg.train.epochs} epoch(s), "
        f"{cfg.backbone.name} x{cfg.backbone.width}, batch {cfg.train.batch_size}, "
        f"device {trainer.device}, run directory {trainer.run_dir}"
    )
    result = trainer.fit()
    print(f"pre-training: {result.steps} steps in {result.wall_time_s:.0f} s")
    rows = eval_run.evaluate_run(
        trainer.run_dir,
        ("knn", "linear"),
        baselines=True,
        device=trainer.device,
        eval_sets=trainer.eval_sets,
        progress=True,
    )
    print()
    print(eval_run.format_table(rows))
    return 0


# -- parser -----------------------------------------------------------------------------------------
