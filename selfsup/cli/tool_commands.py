"""The commands that measure and draw: bench, viz and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from selfsup.cli.run_commands import build_config, demo_config
from selfsup.config import Config


def _int_list(text: str) -> list[int]:
    """``"64,128,256"`` -> ``[64, 128, 256]`` (argparse type; a bad value is a usage error)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 64,128,256, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 64,128, got {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from selfsup import bench

    command = "selfsup bench " + " ".join(sys.argv[2:])
    if args.knn:
        bench.run_knn_bench(
            args.bank,
            queries=args.queries,
            dim=args.dim,
            chunk_size=args.knn_chunk,
            bank_chunk_size=args.bank_chunk,
            device=args.knn_device,
            write=args.write,
            command=command,
            json_path=args.json,
        )
        return 0
    base = demo_config() if args.config is None else Config.from_yaml(args.config)
    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"method={args.method}")
    if args.backbone:
        overrides.append(f"backbone.name={args.backbone}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    cfg = build_config(None, overrides, base=base)
    synthetic = bench.parse_shape(args.synthetic) if args.synthetic else None
    if args.scaling:
        bench.run_scaling(
            cfg,
            args.scaling,
            steps=args.steps,
            warmup=args.warmup,
            write=args.write,
            command=command,
            synthetic=synthetic,
            json_path=args.json,
        )
        return 0
    bench.run_bench(
        cfg,
        steps=args.steps,
        warmup=args.warmup,
        write=args.write,
        command=command,
        synthetic=synthetic,
        as_files=args.as_files,
        compare_torchvision=args.compare_torchvision,
        compile_step=args.compile,
        json_path=args.json,
    )
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    """Pictures of what a run learned (MAE reconstructions, colorizations, ViT attention)."""
    from selfsup import build
    from selfsup.eval.run import load_run_config

    cfg = load_run_config(args.run_dir)
    if args.kind == "mae":
        from selfsup.eval.from_checkpoint import load_method
        from selfsup.methods.mae import MAE
        from selfsup.viz.mae import save_reconstruction_grid

        sets = build.eval_datasets(cfg)
        dataset = sets[1] if sets is not None else build.train_dataset(cfg)
        images, _ = dataset.get_batch(torch.arange(min(args.num_images, len(dataset))))
        method = load_method(cfg, args.run_dir, images.shape[1])
        if not isinstance(method, MAE):
            raise ValueError(
                f"{args.run_dir} trained {type(method).__name__}; `viz mae` draws the "
                "reconstructions of a masked-autoencoder run (method=mae)"
            )
        out = Path(args.out or Path(args.run_dir) / "report" / "mae_reconstructions.png")
        assert cfg.views.mean is not None and cfg.views.std is not None
        torch.manual_seed(args.seed)
        save_reconstruction_grid(method, images, out, cfg.views.mean, cfg.views.std)
        print(f"wrote {out}")
    elif args.kind == "colorization":
        from selfsup.eval.from_checkpoint import load_method
        from selfsup.methods.colorization import Colorization
        from selfsup.viz.colorization import save_colorization_grid

        sets = build.eval_datasets(cfg)
        dataset = sets[1] if sets is not None else build.train_dataset(cfg)
        count = min(args.num_images, len(dataset))
        # evenly spread over the split (photo_patches is ordered by photograph)
        images, _ = dataset.get_batch(torch.linspace(0, len(dataset) - 1, count).long())
        method = load_method(cfg, args.run_dir, 3)
        if not isinstance(method, Colorization):
            raise ValueError(
                f"{args.run_dir} trained {type(method).__name__}; `viz colorization` draws the "
                "predicted colours of a colorization run (method=colorization)"
            )
        out = Path(args.out or Path(args.run_dir) / "report" / "colorization.png")
        if images.shape[1] != 3:
            from selfsup.data import convert_channels

            images = convert_channels(images, 3)
        save_colorization_grid(method, images, out, args.num_images)
        print(f"wrote {out}")
    elif args.kind == "attention":
        from selfsup.backbones.vit import VisionTransformer
        from selfsup.eval.run import load_encoder
        from selfsup.viz.attention import save_attention_maps

        run = load_encoder(args.run_dir)
        vit = run.encoder
        if not isinstance(vit, VisionTransformer):
            raise ValueError(
                f"{args.run_dir} trained a {cfg.backbone.name} backbone; `viz attention` needs a "
                "ViT run (backbone.name=vit_micro|vit_tiny|vit_small|vit_base)"
            )
        if args.teacher:  # the method's EMA target (DINO's teacher), from the checkpoint
            from selfsup.eval.from_checkpoint import checkpoint_encoder

            target = checkpoint_encoder(cfg, args.run_dir, run.in_channels, "target")
            assert isinstance(target, VisionTransformer)  # the EMA copy of the ViT above
            vit = target
        sets = build.eval_datasets(cfg)
        dataset = sets[1] if sets is not None else build.train_dataset(cfg)
        images, _ = dataset.get_batch(torch.arange(min(args.num_images, len(dataset))))
        if images.shape[1] != run.in_channels:
            from selfsup.data import convert_channels

            images = convert_channels(images, run.in_channels)
        name = "attention_teacher.png" if args.teacher else "attention.png"
        out = Path(args.out or Path(args.run_dir) / "report" / name)
        assert cfg.views.mean is not None and cfg.views.std is not None
        save_attention_maps(vit, images, out, cfg.views.mean, cfg.views.std, args.num_images)
        print(f"wrote {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """report.html of one run, or of several side by side; prints the page's path."""
    from selfsup.report import build_report

    page = build_report(
        args.run_dirs,
        args.out,
        embedding_points=args.embedding_points,
        device=args.device,
        tensorboard=args.tensorboard,
    )
    print(f"wrote {page}")
    return 0
