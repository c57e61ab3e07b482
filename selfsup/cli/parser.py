"""The ``selfsup`` argument parser: one sub-command per job, each with help that teaches."""

from __future__ import annotations

import argparse

from selfsup.cli.lab_command import add_lab_parser
from selfsup.cli.run_commands import (
    cmd_demo,
    cmd_embed,
    cmd_eval,
    cmd_export,
    cmd_pretrain,
)
from selfsup.cli.tool_commands import (
    _int_list,
    _minutes_list,
    _name_list,
    _seed_list,
    cmd_bench,
    cmd_report,
    cmd_viz,
)
from selfsup.config import METHODS, option_help
from selfsup.eval.protocols import PROTOCOL_HELP

# `selfsup demo`'s pre-training budget in minutes: the 4 epochs take about 5.5 with bf16 on a
# 2-core CPU; the evaluation adds about 1.5 (the whole demo stays under 10 minutes).
DEMO_MINUTES = 7.0


def _protocol_help(name: str, text: str, width: int = 88) -> str:
    """``  name: text`` wrapped to ``width`` columns, continuation lines indented."""
    import textwrap

    return textwrap.fill(f"{name}: {text}", width, initial_indent="  ", subsequent_indent="    ")


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
        help=f"shortcut for method=...: {' | '.join(METHODS)}; alone (no -c) it also sets what "
        "the method's paper needs, e.g. MAE's ViT (tuned presets in configs/)",
    )
    p.add_argument("--run-dir", help="output directory (default runs/<method>-<data>-<time>)")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR exactly (its own config.yaml; key=value overrides "
        "such as train.epochs=200 extend it); a finished run is left unchanged",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in a --run-dir that holds a run: removes its checkpoints, encoder, "
        "metrics, eval.json, exports and reports first (default: refuse)",
    )
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
        help="evaluate a run's encoder (k-NN, linear probes, fine-tuning, transfer)",
        formatter_class=fmt,
        description="Measure a run's encoder beside baselines with the same architecture, "
        "protocol and labels\n(random encoder, raw pixels, and for finetune the same network "
        "trained from scratch).\nEvery hyper-parameter is chosen on a validation part of the "
        "labelled training data;\nthe test split is scored once. Results join RUN/eval.json. "
        "Protocols:\n\n"
        + "\n".join(_protocol_help(name, text) + "\n" for name, text in PROTOCOL_HELP.items())
        + "  all: knn + linear.\n\nExamples:\n"
        "  selfsup eval all runs/fm\n"
        "  selfsup eval finetune runs/fm --labels 1%,10%      # semi-supervised, vs from scratch\n"
        "  selfsup eval linear runs/fm --data digits          # transfer to another dataset",
    )
    p.add_argument("protocol", choices=[*PROTOCOL_HELP, "all"])
    p.add_argument("run_dir", help="a run directory written by `selfsup pretrain`")
    p.add_argument("overrides", nargs="*", help="eval.* / data.* overrides, e.g. eval.knn_k=10")
    p.add_argument(
        "--labels",
        default="100%",
        help="label fractions of the training split, comma-separated (e.g. 1%%,10%%,100%%): "
        "stratified, seeded by eval.label_seed, saved in RUN/labels/ and the same for every "
        "encoder; or a subset .json file written before (default 100%%)",
    )
    p.add_argument(
        "--data",
        help="transfer: evaluate on this labelled dataset instead (digits, mnist, fashion_mnist, "
        "cifar10, cifar100, folder); channels and size are adapted to the encoder",
    )
    p.add_argument("--data-dir", help="where --data lives (a folder with class sub-folders)")
    p.add_argument("--no-baselines", action="store_true", help="only the run's encoder")
    p.add_argument(
        "--no-cache", action="store_true", help="do not read or write RUN/cache/ feature files"
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "embed",
        help="features of an image folder or list to .npy",
        description="Embed images with a run's encoder (the last checkpoint's while the run "
        "trains or after it was interrupted): OUT.npy holds the features, line i of OUT.txt the "
        "file of row i.",
    )
    p.add_argument("run_dir")
    p.add_argument("images", help="a folder of images, or a text file listing image paths")
    p.add_argument("--out", required=True, help="output .npy (paths go to the same name .txt)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=None, help="decode size (default: view size)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first unreadable image file; default skips it, names it in a warning "
        "and lists it in OUT.skipped.txt",
    )
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
        "  selfsup bench --distributed --methods simclr,moco --procs 1,2  # DDP bytes, speed-up\n"
        "key=value overrides go in one group, all before or all after the flags.",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. views.size=32")
    p.add_argument(
        "-c",
        "--config",
        action="append",
        help="YAML config (default: the demo config); --time-to-accuracy takes several",
    )
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
    p.add_argument(
        "--time-to-accuracy",
        type=float,
        metavar="MINUTES",
        help="instead: pre-train each -c preset for MINUTES of training time (schedule sized to "
        "it) and measure the full k-NN at --marks; table, PNG and JSON lines",
    )
    p.add_argument(
        "--marks",
        type=_minutes_list,
        metavar="M1,M2,...",
        help="minutes at which the k-NN is measured (0 = random init; default 0,1,2,5,10,... "
        "below the budget, and the budget)",
    )
    p.add_argument(
        "--linear",
        action="store_true",
        help="--time-to-accuracy: also the final encoder's linear probe (`selfsup eval linear`), "
        "and raw pixels'",
    )
    p.add_argument("--seeds", type=_seed_list, default=[0], metavar="S1,S2,...", help="train.seed")
    p.add_argument(
        "--replot",
        metavar="JSONL",
        help="instead of training: the table and figure of the runs a --time-to-accuracy "
        "--json file recorded (-c gives the data for the raw-pixel line)",
    )
    p.add_argument("--png", help="figure of k-NN vs minutes (default: beside --write, if given)")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="instead: bytes each collective sends per training step of every --methods method "
        "with 2 processes (gloo), then images/s of the config's `selfsup pretrain` for --steps "
        "steps, plain and under torchrun with each --procs process count",
    )
    p.add_argument(
        "--methods",
        type=_name_list,
        metavar="M1,M2,...",
        help="--distributed: methods whose communication is measured, each with its paper's "
        f"settings (default: all of {','.join(METHODS)})",
    )
    p.add_argument(
        "--procs",
        type=_int_list,
        metavar="N1,N2,...",
        help="--distributed: torchrun process counts to time (default 1,2)",
    )
    p.add_argument(
        "--runs-dir",
        default="runs/time-to-accuracy",
        help="where the runs are written (one directory per preset and seed)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "viz",
        help="pictures of a run: MAE reconstructions, colorizations, ViT cls-token attention",
        description="mae: original | masked | reconstruction per image (MAE runs). colorization: "
        "input lightness | predicted colours (annealed mean) | truth per test image "
        "(colorization runs). attention: the last block's cls-token self-attention per head "
        "over a few test images (any ViT run; DINO's figure).",
    )
    p.add_argument("kind", choices=["mae", "colorization", "attention"])
    p.add_argument("run_dir")
    p.add_argument(
        "--out",
        help="PNG path (default RUN/report/mae_reconstructions.png, colorization.png or "
        "attention.png)",
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
        "report",
        help="one HTML page: summary, curves, eval table, embedding map, pictures",
        formatter_class=fmt,
        description="Write report.html and its PNG figures (no network needed to open it):\n"
        "the run summary, every curve of metrics.jsonl, the eval.json table, a t-SNE (UMAP when\n"
        "installed) map of test embeddings by class, MAE reconstructions and ViT attention.\n"
        "Several runs are compared on one page (curves overlaid, one table). E.g.\n"
        "  selfsup report runs/fm                        # runs/fm/report/report.html\n"
        "  selfsup report runs/simclr runs/byol --out reports/compare",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN", help="run directories")
    p.add_argument(
        "--out",
        help="output folder (default RUN/report/ for one run; required for several runs)",
    )
    p.add_argument(
        "--embedding-points",
        type=int,
        default=2000,
        metavar="N",
        help="test images in the embedding map, a seeded subset (default 2000; 0 = no map)",
    )
    p.add_argument("--device", default="cpu", help="device of the feature extraction")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also convert metrics.jsonl to TensorBoard event files in RUN/tensorboard/ "
        "(needs pip install tensorboard)",
    )
    p.set_defaults(func=cmd_report)

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

    add_lab_parser(sub)

    p = sub.add_parser("demo", help="short SimCLR pre-training + evaluation (embedded default)")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=1")
    p.add_argument("--run-dir", default=None, help="default runs/simclr-<data>-<time>")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --run-dir")
    p.add_argument(
        "--minutes",
        type=float,
        default=DEMO_MINUTES,
        help=f"pre-training budget (default {DEMO_MINUTES:g}): on a machine too slow for the "
        "demo's epochs in that time (a short calibration decides, the run's own speed corrects) "
        "the schedule is shortened to fit; 0 trains every epoch",
    )
    p.set_defaults(func=cmd_demo)
    return parser
