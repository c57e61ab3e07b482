"""The commands that measure and draw: bench, viz and report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from selfsup.cli.run_commands import build_config, demo_config
from selfsup.config import Config


def _number_list(text: str, kind: type, minimum: float, example: str) -> list[Any]:
    """``"64,128"`` -> ``[64, 128]`` of ``kind``, each >= ``minimum`` (argparse type; a bad
    value is a usage error naming an example)."""
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers >= {minimum:g} such as {example}, got {text!r}"
        )
    return values


def _int_list(text: str) -> list[int]:
    """Batch sizes, bank sizes: positive integers, e.g. ``64,128,256``."""
    return _number_list(text, int, 1, "64,128,256")


def _seed_list(text: str) -> list[int]:
    """Seeds: integers >= 0, e.g. ``0,1``."""
    return _number_list(text, int, 0, "0,1")


def _name_list(text: str) -> list[str]:
    """Method names: ``simclr,moco`` -> ``["simclr", "moco"]``."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated names such as simclr,moco, got {text!r}"
        )
    return names


def _minutes_list(text: str) -> list[float]:
    """Marks in minutes: numbers >= 0, e.g. ``0,1,2,5,10``."""
    return _number_list(text, float, 0, "0,1,2,5,10")


def cmd_bench(args: argparse.Namespace) -> int:
    from selfsup import bench

    command = "selfsup bench " + " ".join(sys.argv[2:])
    if args.distributed:
        return _distributed(args, command)
    if args.methods or args.procs:
        raise SystemExit("selfsup bench: --methods and --procs go with --distributed")
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
    configs = args.config or []
    if args.time_to_accuracy is not None or args.replot:
        return _time_to_accuracy(args, configs, command)
    if len(configs) > 1:
        raise SystemExit("selfsup bench: several -c configs only with --time-to-accuracy")
    base, overrides = _bench_base(args, configs)
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


def _distributed(args: argparse.Namespace, command: str) -> int:
    """``selfsup bench --distributed [--methods A,B] [--procs 1,2] [--steps S] [-c FILE]``."""
    other_modes = [
        flag
        for flag, given in (
            ("--knn", args.knn),
            ("--scaling", args.scaling),
            ("--time-to-accuracy", args.time_to_accuracy is not None),
            ("--replot", args.replot),
            ("--synthetic", args.synthetic),
            ("--as-files", args.as_files),
            ("--compare-torchvision", args.compare_torchvision),
            ("--compile", args.compile),
        )
        if given
    ]
    if other_modes:
        raise SystemExit(
            f"selfsup bench: --distributed times the real training command and does not combine "
            f"with {', '.join(other_modes)}; drop {'it' if len(other_modes) == 1 else 'them'}"
        )
    configs = args.config or []
    if len(configs) > 1:
        raise SystemExit("selfsup bench: --distributed takes one -c config")
    if args.steps < 2:
        raise SystemExit(
            "selfsup bench: --distributed needs --steps >= 2 (the first logged window is warm-up)"
        )
    base, overrides = _bench_base(args, configs)
    from selfsup import bench

    bench.run_distributed_bench(
        base,
        overrides,
        methods=args.methods,
        procs=args.procs or [1, 2],
        steps=args.steps,
        label=Path(configs[0]).stem if configs else "demo",
        write=args.write,
        json_path=args.json,
        command=command,
    )
    return 0


def _bench_base(args: argparse.Namespace, configs: list[str]) -> tuple[Config, list[str]]:
    """The config a bench mode starts from (the -c file, else the demo) and the overrides of
    the command line (--method, --backbone and --batch-size as key=value)."""
    base = demo_config() if not configs else Config.from_yaml(configs[0])
    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"method={args.method}")
    if args.backbone:
        overrides.append(f"backbone.name={args.backbone}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    return base, overrides


def _time_to_accuracy(args: argparse.Namespace, configs: list[str], command: str) -> int:
    """``selfsup bench --time-to-accuracy MINUTES -c A.yaml -c B.yaml --seeds 0,1``."""
    import json

    from selfsup.bench.report import report
    from selfsup.bench.time_to_accuracy import (
        TimedRun,
        labelled_splits,
        pixels_knn,
        pixels_linear,
        run_time_to_accuracy,
    )
    from selfsup.bench.time_to_accuracy_report import (
        format_time_to_accuracy,
        plot_time_to_accuracy,
    )

    presets = [(Path(c).stem, Config.from_yaml(c)) for c in configs] or [("demo", demo_config())]
    runs = []
    if args.replot:  # runs recorded earlier with --json: no training
        for line in Path(args.replot).read_text().splitlines():
            record = json.loads(line)
            if isinstance(record, dict) and "run" in record and "marks" in record["run"]:
                runs.append(TimedRun.from_dict(record["run"]))
        if not runs:
            raise SystemExit(f"selfsup bench: {args.replot} holds no time-to-accuracy runs")
    elif args.time_to_accuracy <= 0:
        raise SystemExit("selfsup bench: --time-to-accuracy needs a positive number of minutes")
    for name, base in presets if not args.replot else []:
        for seed in args.seeds:
            cfg = build_config(None, [*args.overrides, f"train.seed={seed}"], base=base)
            run_dir = Path(args.runs_dir) / f"{name}-seed{seed}"
            run = run_time_to_accuracy(
                cfg, name, args.time_to_accuracy, run_dir, args.marks, linear=args.linear
            )
            runs.append(run)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps({"command": command, "run": run.to_dict()}) + "\n")
    first = build_config(None, list(args.overrides), base=presets[0][1])
    splits = labelled_splits(first)
    pixels = pixels_knn(first, splits)
    with_linear = any(r.linear_top1 is not None for r in runs)
    table = format_time_to_accuracy(
        runs, pixels, pixels_linear(first, splits) if with_linear else None
    )
    png = args.png or (
        str(Path(args.write).parent / "time_to_accuracy.png") if args.write else None
    )
    if png:
        plot_time_to_accuracy(runs, png, pixels, f"{first.data.dataset}, {runs[0].machine}")
        table += f"\n\n![k-NN top-1 against minutes of pre-training]({Path(png).name})"
    report(table, None, args.write, None, command)
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
