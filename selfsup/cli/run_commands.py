"""The commands on a run: pretrain, eval, embed, export and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from selfsup import build
from selfsup.config import Config, ConfigError, apply_method_defaults, apply_overrides
from selfsup.data import ImageDataset
from selfsup.progress import ProgressStyle, say


def build_config(
    config_path: str | None, overrides: Sequence[str], base: Config | None = None
) -> Config:
    """The YAML file (or ``base``) with the ``key=value`` overrides applied, validated.

    Without a file or base, ``method=<name>`` also sets what that method's paper needs beyond
    the built-in (SimCLR) defaults, e.g. MAE's ViT and AdamW (see ``Section.standalone``), and
    a config that still does not validate points to the presets in configs/.
    """
    if base is not None or config_path:
        cfg = base if base is not None else Config.from_yaml(config_path)  # type: ignore[arg-type]
        return apply_overrides(cfg, overrides).validate()
    cfg = apply_overrides(Config(), overrides)
    given = [item.split("=", 1)[0].strip() for item in overrides]
    applied = apply_method_defaults(cfg, given)
    try:
        cfg.validate()
    except ConfigError as err:
        raise ConfigError(
            f"{err} (working presets for {cfg.method}: {_presets(cfg.method)})"
        ) from None
    if applied:
        say(
            f"method={cfg.method} without a config file: the paper's settings {', '.join(applied)}"
            f" (tuned presets: {_presets(cfg.method)})"
        )
    return cfg


def _presets(method: str) -> str:
    """The preset files of ``method`` in configs/ of a checkout, or the folder to look in."""
    folder = Path(__file__).resolve().parents[2] / "configs"
    found = sorted(folder.glob(f"{method}_*.yaml")) if folder.is_dir() else []
    if not found:
        return f"configs/{method}_*.yaml in the selfsup repository"
    return ", ".join(f"configs/{p.name}" for p in found)


def demo_config() -> Config:
    """The embedded default: a short SimCLR run on Fashion-MNIST sized for 2 CPU cores."""
    text = resources.files("selfsup").joinpath("configs/demo.yaml").read_text()
    import yaml

    return Config.from_dict(yaml.safe_load(text))


EXIT_USAGE = 2  # bad input: one line naming the problem and the fix


# -- commands ---------------------------------------------------------------------------------------
def cmd_pretrain(args: argparse.Namespace) -> int:
    from selfsup.train.distributed import init_distributed, launched_by_torchrun

    cfg, run_dir = _pretrain_config(args)
    if args.print_config:
        print(cfg.to_yaml())
        return 0
    if not launched_by_torchrun():
        return _pretrain(args, cfg, run_dir)
    import torch.distributed as dist

    init_distributed(cfg.train.device, cfg.train.dist_backend)
    try:
        return _pretrain(args, cfg, run_dir)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _pretrain_config(args: argparse.Namespace) -> tuple[Config, str | None]:
    """The configuration and run directory the command line asks for."""
    if args.resume:
        cfg = _resume_config(args)
        run_dir: str | None = args.resume
    else:
        base = demo_config() if args.demo else None
        overrides = [*([f"method={args.method}"] if args.method else []), *args.overrides]
        cfg = build_config(args.config, overrides, base=base)
        run_dir = args.run_dir
    if args.strict:
        cfg.data.strict = True
    return cfg, run_dir


def _pretrain(args: argparse.Namespace, cfg: Config, run_dir: str | None) -> int:
    """Train (one process, or this rank of a torchrun launch); rank 0 reports and evaluates."""
    from selfsup.progress import set_quiet
    from selfsup.train.distributed import current_context
    from selfsup.train.elastic import elastic_start
    from selfsup.train.trainer import Trainer

    ctx = current_context()
    set_quiet(not ctx.is_main)
    start = elastic_start(cfg, run_dir or cfg.run_dir, args.overwrite)
    if start.attempt > 0:
        what = "resuming its last checkpoint" if start.resume else "starting it again"
        say(f"torchrun restart {start.attempt}: {what}")
    trainer = Trainer(cfg, run_dir, overwrite=start.overwrite)
    if ctx.active:
        say(
            f"distributed: {ctx.world_size} processes ({ctx.backend}), global batch "
            f"{cfg.train.batch_size} = {ctx.world_size} x {cfg.train.batch_size // ctx.world_size}"
        )
    say(f"run directory: {trainer.run_dir}")
    result = trainer.fit(resume=bool(args.resume) or start.resume)
    if ctx.active:  # leave together: a process group torn down under a peer aborts it
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if result.already_finished or not ctx.is_main:
        return 0
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


def _resume_config(args: argparse.Namespace) -> Config:
    """The run's own config.yaml with the command line's overrides; the options that would
    start another run instead (-c, --method, --demo, --run-dir, --overwrite) are refused."""
    from selfsup.config import config_changes
    from selfsup.eval.run import load_run_config

    conflicting = [
        flag
        for flag, given in (
            (f"-c {args.config}", args.config),
            (f"--method {args.method}", args.method),
            ("--demo", args.demo),
            (f"--run-dir {args.run_dir}", args.run_dir),
            ("--overwrite", args.overwrite),
        )
        if given
    ]
    if conflicting:
        raise ValueError(
            f"--resume continues {args.resume} with its own config.yaml, so "
            f"{', '.join(conflicting)} would be ignored; drop {'it' if len(conflicting) == 1 else 'them'}"
            " and give changes as key=value overrides (e.g. train.epochs=200), or start a new run "
            "without --resume"
        )
    saved = load_run_config(args.resume)
    before = saved.to_dict()
    cfg = build_config(None, args.overrides, base=saved)
    for key, old, new in config_changes(before, cfg.to_dict()):
        say(f"resume: {key} changed from {old!r} to {new!r}")
    return cfg


def _evaluate(
    run_dir: str,
    protocols: tuple[str, ...],
    baselines: bool,
    overrides: Sequence[str],
    device: str = "cpu",
    labels: Sequence[str] = ("100%",),
    data: str | None = None,
    data_dir: str | None = None,
    cache: bool = True,
) -> int:
    from selfsup.eval import run as eval_run

    rows = eval_run.evaluate_run(
        run_dir,
        protocols,
        baselines=baselines,
        device=device,
        overrides=overrides,
        progress=True,
        labels=labels,
        data=data,
        data_dir=data_dir,
        cache=cache,
    )
    print(eval_run.format_table(rows))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    protocols = ("knn", "linear") if args.protocol == "all" else (args.protocol,)
    labels = [item.strip() for item in args.labels.split(",") if item.strip()]
    return _evaluate(
        args.run_dir,
        protocols,
        not args.no_baselines,
        args.overrides,
        args.device,
        labels,
        args.data,
        args.data_dir,
        not args.no_cache,
    )


def cmd_embed(args: argparse.Namespace) -> int:
    """Features of an image folder or list: FEATURES.npy, and FEATURES.txt naming row i's file.
    Unreadable files are skipped and named (listed in FEATURES.skipped.txt); --strict stops."""
    from selfsup.eval.embed import embed_files
    from selfsup.eval.run import load_encoder

    run = load_encoder(args.run_dir, args.device)
    result = embed_files(
        run,
        args.images,
        args.batch_size,
        args.image_size,
        args.device,
        strict=args.strict,
        progress=ProgressStyle.of(run.cfg.train),
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.features.numpy())
    out.with_suffix(".txt").write_text("".join(f"{p}\n" for p in result.paths))
    skipped = out.with_suffix(".skipped.txt")
    if result.skipped:
        skipped.write_text("".join(f"{p}\t{why}\n" for p, why in result.skipped.items()))
    else:
        skipped.unlink(missing_ok=True)
    note = (
        f"; skipped {len(result.skipped)} unreadable file(s), listed in {skipped}"
        if result.skipped
        else ""
    )
    print(
        f"wrote {tuple(result.features.shape)} features to {out}, row i = line i of "
        f"{out.with_suffix('.txt')}{note}"
    )
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
    from selfsup.train.schedule_fit import BudgetFit
    from selfsup.train.trainer import Trainer

    cfg = build_config(None, args.overrides, base=demo_config())
    train_set = build.train_dataset(cfg)
    full_steps = cfg.train.planned_steps(len(train_set) // cfg.train.batch_size)
    budget_s = fit_demo_to_budget(cfg, train_set, args.minutes) if args.minutes else None
    trainer = Trainer(cfg, args.run_dir, train_set, overwrite=args.overwrite)
    if budget_s is not None:  # the run's own speed re-plans it within the budget and the epochs
        trainer.step_hooks.append(BudgetFit(budget_s, margin=DEMO_FIT_MARGIN, most=full_steps))
    epochs = trainer.total_steps / trainer.steps_per_epoch
    print(
        f"selfsup demo: SimCLR on {cfg.data.dataset}, {epochs:.3g} epoch(s), "
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


DEMO_TOTAL_S = 9.5 * 60  # the whole demo, evaluation included, stays under 10 minutes
# The demo's re-planned schedule ends at this share of its pre-training budget: below the
# benchmark's 0.97, since the evaluation's estimate (part of the budget) errs too.
DEMO_FIT_MARGIN = 0.93
# The evaluation after pre-training, from the throughput the calibration measured: feature passes
# over the bank and the queries (the train and test splits, about 7/6 of the training images)
# for the trained and the random encoder, a forward costing about a third of a training image
# (two views, forward and backward); plus about a minute for the raw-pixel baseline, the probes
# and the diagnostics. On the 2-core AVX2 EPYC (fp32, 191 img/s) this estimates 304 s where the
# evaluation, calibration included, took 262 s; with bf16 (about 700 img/s) 127 s.
EVAL_FIXED_S = 60.0


def demo_eval_seconds(train_images: int, img_per_s: float) -> float:
    """Estimated seconds of the demo's evaluation at the calibrated training throughput."""
    return EVAL_FIXED_S + 2 * train_images * 7 / 6 / (3 * img_per_s)


def fit_demo_to_budget(cfg: Config, train_set: ImageDataset, minutes: float) -> float:
    """Shorten the demo's schedule (``train.total_steps``) when its epochs would not fit in
    ``minutes`` of pre-training on this machine, timed by a short calibration run, or would
    take the whole demo past ``DEMO_TOTAL_S`` with the evaluation estimated at the same speed;
    returns that pre-training budget in seconds (the run re-plans itself within it from the
    speed it sustains: the calibration errs by 5-20%). A machine with fast bf16 trains the 4
    epochs in about 5.5 minutes; a 2-core CPU without it (fp32, a third of the speed, and an
    evaluation as slow) trains what fits."""
    from selfsup.bench.time_to_accuracy import calibrate, planned_steps_for

    steps_per_epoch = len(train_set) // cfg.train.batch_size  # the loader drops the last batch
    full = cfg.train.planned_steps(steps_per_epoch)
    img_per_s, _ = calibrate(cfg, train_set)
    # the whole-demo cap leaves at least a minute of training, however slow the machine
    whole_demo_s = max(60.0, DEMO_TOTAL_S - demo_eval_seconds(len(train_set), img_per_s))
    budget_s = min(60 * minutes, whole_demo_s)
    fits = planned_steps_for(budget_s, img_per_s, cfg.train.batch_size)
    if fits >= full:
        return budget_s
    full_s = full * cfg.train.batch_size / img_per_s
    say(
        f"this machine trains the demo at {img_per_s:.0f} img/s: {full / steps_per_epoch:.3g} "
        f"epochs would take {full_s / 60:.1f} minutes, so the demo trains "
        f"{fits / steps_per_epoch:.2f} epochs ({fits} steps, the schedule sized to them) to stay "
        f"within {budget_s / 60:.2g} minutes of pre-training and 10 in all; "
        "`selfsup demo --minutes 0` trains them all"
    )
    cfg.train.total_steps = fits
    return budget_s


# -- parser -----------------------------------------------------------------------------------------
