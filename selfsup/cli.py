"""The ``selfsup`` command: pretrain, eval, embed, export, viz, bench, demo.

Every command reads a YAML config plus ``key=value`` overrides; ``selfsup pretrain --help`` lists
every option with its meaning and safe range. Bad input ends with one line that names the problem
and the fix (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from selfsup.config import Config, ConfigError, apply_overrides, option_help

EXIT_USAGE = 2


def _config(
    config_path: str | None, overrides: Sequence[str], base: Config | None = None
) -> Config:
    cfg = base if base is not None else (Config.from_yaml(config_path) if config_path else Config())
    return apply_overrides(cfg, overrides).validate()


def demo_config() -> Config:
    """The embedded default: a short SimCLR run on Fashion-MNIST sized for 2 CPU cores."""
    text = resources.files("selfsup").joinpath("configs/demo.yaml").read_text()
    import yaml

    return Config.from_dict(yaml.safe_load(text))


# -- commands ---------------------------------------------------------------------------------------
def cmd_pretrain(args: argparse.Namespace) -> int:
    from selfsup.train.trainer import Trainer

    if args.resume:
        from selfsup.eval.run import load_run_config

        cfg = _config(None, args.overrides, base=load_run_config(args.resume))
        run_dir: str | None = args.resume
    else:
        base = demo_config() if args.demo else None
        overrides = [*([f"method={args.method}"] if args.method else []), *args.overrides]
        cfg = _config(args.config, overrides, base=base)
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
        run_dir, protocols, baselines=baselines, device=device, overrides=overrides
    )
    print(eval_run.format_table(rows))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    protocols = ("knn", "linear") if args.protocol == "all" else (args.protocol,)
    return _evaluate(args.run_dir, protocols, not args.no_baselines, args.overrides, args.device)


def cmd_embed(args: argparse.Namespace) -> int:
    from selfsup import build
    from selfsup.data import load_dataset
    from selfsup.eval.features import extract_features
    from selfsup.eval.run import dataset_batches, load_encoder

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
        dataset_batches(dataset, args.batch_size, args.device),
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
    cfg = _config(None, overrides, base=base)
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
    """Pictures of what a run learned (MAE reconstructions, ViT attention maps)."""
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

    cfg = _config(None, args.overrides, base=demo_config())
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
    )
    print()
    print(eval_run.format_table(rows))
    return 0


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsup",
        description="Self-supervised visual representation learning: pre-train an encoder on "
        "unlabelled images, then measure it (k-NN, linear probe) and export it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "pretrain",
        help="pre-train an encoder",
        formatter_class=fmt,
        description="Pre-train with a YAML config and key=value overrides, e.g.\n"
        "  selfsup pretrain -c configs/simclr_fashion_mnist.yaml train.epochs=3",
        epilog="options (key=value; defaults shown):" + option_help(),
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.batch_size=128")
    p.add_argument("-c", "--config", help="YAML config file (default: built-in defaults)")
    p.add_argument("--demo", action="store_true", help="start from the embedded demo config")
    p.add_argument(
        "--method",
        help="shortcut for method=...: simclr | moco | mocov3 | byol | mae (presets in configs/)",
    )
    p.add_argument("--run-dir", help="output directory (default runs/<method>-<data>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("--eval", action="store_true", help="k-NN + linear probe with baselines after")
    p.add_argument("--print-config", action="store_true", help="print the resolved config, exit")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable image file (data.strict=true); default skips it and "
        "warns with the file names",
    )
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "eval",
        help="evaluate a run's encoder",
        description="k-NN (k=20, T=0.07, cosine) and/or linear probe on frozen, "
        "cached features, next to a random encoder and raw pixels.",
    )
    p.add_argument("protocol", choices=["knn", "linear", "all"])
    p.add_argument("run_dir", help="a run directory written by `selfsup pretrain`")
    p.add_argument("overrides", nargs="*", help="eval.* / data.* overrides, e.g. eval.knn_k=10")
    p.add_argument("--no-baselines", action="store_true", help="skip random-encoder/raw pixels")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("embed", help="features of an image folder or list to .npy")
    p.add_argument("run_dir")
    p.add_argument("images", help="a folder of images, or a text file listing image paths")
    p.add_argument("--out", required=True, help="output .npy (paths go to the same name .txt)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=None, help="decode size (default: view size)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser(
        "bench",
        help="measure views, step and end-to-end throughput, FLOPs, memory, k-NN cost",
        formatter_class=fmt,
        description="Throughput (images/s) of the view pipeline alone, the loader alone, the "
        "model step alone,\nthe backbone's forward+backward alone and the full step (data + "
        "views + step); the step's\nFLOPs (FlopCounterMode) as a fraction of the measured "
        "matmul peak; peak memory. E.g.\n"
        "  selfsup bench -c configs/simclr_fashion_mnist.yaml --batch-size 256 views.size=32\n"
        "  selfsup bench --synthetic 3x32x32 --compare-torchvision    # CIFAR-like RGB\n"
        "  selfsup bench --as-files data.num_workers=2                # decoding image files\n"
        "  selfsup bench --scaling 64,128,256,512                     # cost vs batch size\n"
        "  selfsup bench --knn --bank 60000,1000000 --queries 10000   # k-NN cost vs bank size\n"
        "key=value overrides go in one group, all before or all after the flags.",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. views.size=32")
    p.add_argument("-c", "--config", help="YAML config (default: the demo config)")
    p.add_argument("--method", help="shortcut for method=... (presets in configs/)")
    p.add_argument("--backbone", help="shortcut for backbone.name=...")
    p.add_argument("--batch-size", type=int, help="global batch (train.batch_size)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--write", metavar="MD", help="append the results to this markdown file")
    p.add_argument("--json", metavar="FILE", help="append the results as a JSON line")
    p.add_argument(
        "--synthetic",
        metavar="CxHxW",
        help="uniform-noise uint8 images of this shape instead of the dataset, e.g. 3x32x32",
    )
    p.add_argument(
        "--as-files",
        action="store_true",
        help="write the images as PNG files and read them back through the decoding "
        "DataLoader (data.num_workers workers, e.g. data.num_workers=2)",
    )
    p.add_argument(
        "--compare-torchvision",
        action="store_true",
        help="also time per-sample torchvision.transforms.v2 views in a 2-worker DataLoader "
        "on the same images and report the ratio",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training step and the encoder (first call timed apart)",
    )
    p.add_argument(
        "--scaling",
        type=_int_list,
        metavar="B1,B2,...",
        help="instead: model step, backbone pass and the quadratic loss at each batch size",
    )
    p.add_argument(
        "--knn",
        action="store_true",
        help="instead: k-NN (k=20) on random features, for each --bank size",
    )
    p.add_argument(
        "--bank", type=_int_list, default=[60000], metavar="N1,N2,...", help="k-NN bank rows"
    )
    p.add_argument("--queries", type=int, default=10000, help="k-NN query count")
    p.add_argument("--dim", type=int, default=128, help="k-NN feature dimension")
    p.add_argument("--knn-chunk", type=int, default=1024, help="k-NN queries per chunk")
    p.add_argument(
        "--bank-chunk", type=int, default=16384, help="k-NN bank rows per similarity block"
    )
    p.add_argument("--knn-device", default="cpu", help="device of the k-NN benchmark")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "viz",
        help="pictures of a run: MAE reconstructions, ViT cls-token attention maps",
        description="mae: original | masked | reconstruction per image (MAE runs). attention: "
        "the last block's cls-token self-attention per head over a few test images (any ViT "
        "run; DINO's figure).",
    )
    p.add_argument("kind", choices=["mae", "attention"])
    p.add_argument("run_dir")
    p.add_argument(
        "--out", help="PNG path (default RUN/report/mae_reconstructions.png or attention.png)"
    )
    p.add_argument("--num-images", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the random masks (mae)")
    p.add_argument(
        "--teacher",
        action="store_true",
        help="attention: use DINO's EMA teacher from the last checkpoint (the paper's figures) "
        "instead of the exported student encoder",
    )
    p.set_defaults(func=cmd_viz)

    p = sub.add_parser(
        "export",
        help="export the encoder as safetensors, TorchScript or ONNX",
        description="Write the run's encoder as one self-describing file. Every format takes "
        "float images in [0, 1] (pixels / 255) and normalises them inside with the run's "
        "mean/std. The file is then run next to the in-library encoder on random images and "
        "kept only if the features match.",
    )
    p.add_argument("run_dir", help="a run directory written by `selfsup pretrain`")
    p.add_argument(
        "--format",
        choices=["safetensors", "torchscript", "onnx"],
        default="safetensors",
        help="safetensors: weights + metadata, no code (selfsup.export.load_exported); "
        "torchscript: traced module for libtorch; onnx: opset 18, dynamic batch (default "
        "safetensors)",
    )
    p.add_argument("--output", help="file to write (default RUN/export/encoder.<format suffix>)")
    p.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare exported and in-library features on random images (default on)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest accepted max|difference| / max|feature|; float32 exports reach ~1e-6",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="short SimCLR pre-training + evaluation (embedded default)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=1")
    p.add_argument("--run-dir", default=None)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from selfsup.data import DatasetNotFoundError
    from selfsup.train.checkpoint import CheckpointError
    from selfsup.train.trainer import NonFiniteLossError

    args = build_parser().parse_args(argv)
    torch.set_float32_matmul_precision("high")
    try:
        return int(args.func(args))
    except (
        ConfigError,
        DatasetNotFoundError,
        CheckpointError,
        NonFiniteLossError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"selfsup {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
