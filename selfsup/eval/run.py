"""Evaluate a run directory: rebuild its encoder, cache features, k-NN and linear probe, baselines.

Baselines put a number in context: the *same* encoder randomly initialised (what pre-training
added) and raw pixels (what any encoder must beat to be worth having).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfsup import build
from selfsup.config import Config, apply_overrides
from selfsup.data import ImageDataset, iterate_batches
from selfsup.eval.features import extract_features
from selfsup.eval.from_checkpoint import checkpoint_encoder
from selfsup.eval.knn import knn_accuracy
from selfsup.eval.linear import linear_probe
from selfsup.eval.results import record_results
from selfsup.eval.run_encoder import RunEncoder, encoder_sha256, load_encoder, load_run_config
from selfsup.methods.registry import get_method
from selfsup.progress import ProgressStyle, phase

__all__ = [  # load_encoder & co. live in run_encoder; imported from here by earlier code
    "EvalRow",
    "RunEncoder",
    "evaluate_run",
    "format_table",
    "load_encoder",
    "load_run_config",
    "random_encoder",
]


def random_encoder(cfg: Config, in_channels: int, device: str | torch.device = "cpu") -> nn.Module:
    """The same architecture, randomly initialised with the run's seed (the 'before' picture)."""
    torch.manual_seed(cfg.train.seed)
    return build.make_backbone(cfg, in_channels).to(device).eval()


def features_of(
    encoder: nn.Module,
    dataset: ImageDataset,
    cfg: Config,
    device: torch.device | str,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Features of every image of ``dataset``; ``progress(n)`` after each batch of n images."""
    return extract_features(
        encoder,
        iterate_batches(dataset, cfg.eval.batch_size, device),
        build.eval_transform(cfg),
        device,
        channels_last=cfg.train.channels_last,
        progress=progress,
    )


def split_features(
    name: str,
    split: str,
    encoder: nn.Module,
    dataset: ImageDataset,
    cfg: Config,
    device: torch.device | str,
    progress: ProgressStyle | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`features_of` as a phase named after the candidate and split (quiet when None)."""
    what = f"{name}: {split} features"
    with phase(what, f"extracting {len(dataset)} images", len(dataset), "images", progress) as p:
        feats = features_of(encoder, dataset, cfg, device, p.update)
        p.result = f"{feats[0].shape[0]} x {feats[0].shape[1]}"
    return feats


def pixel_features(dataset: ImageDataset, cfg: Config) -> tuple[Tensor, Tensor]:
    """Raw-pixel baseline: the normalised image itself, flattened."""
    transform = build.eval_transform(cfg)
    feats, labels = [], []
    for images, y in iterate_batches(dataset, 4096, "cpu"):
        feats.append(transform(images).flatten(1))
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


@dataclass
class EvalRow:
    name: str
    knn: float | None = None
    linear: float | None = None
    linear_lr: float | None = None
    network: str | None = None  # the run's row: "online" or "target" (the EMA copy)
    settings: dict[str, dict[str, Any]] | None = None  # per protocol: k, T / lr, epochs, ...


def linear_batch_norm(cfg: Config) -> bool:
    """BatchNorm without affine before the linear layer where the method's protocol has it
    (MAE, REFERENCE.md), unless ``eval.linear_batch_norm`` says otherwise."""
    flag = cfg.eval.linear_batch_norm
    return get_method(cfg.method).cls.linear_probe_batch_norm if flag is None else flag


def run_network_encoder(
    run: RunEncoder, cfg: Config, run_dir: str | Path, device: torch.device | str
) -> tuple[nn.Module, str]:
    """The encoder ``eval.network`` asks for and its name: the run's encoder when it is that
    network (``auto`` = the one the method's protocol evaluates), else the other network
    rebuilt from the last checkpoint."""
    exported = run.network
    network = exported if cfg.eval.network == "auto" else cfg.eval.network
    if network == exported:
        return run.encoder, network
    encoder = checkpoint_encoder(cfg, run_dir, run.in_channels, network)
    return encoder.to(device), network


def evaluate_features(
    name: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    cfg: Config,
    protocols: tuple[str, ...],
    num_classes: int,
    device: torch.device | str = "cpu",
    progress: ProgressStyle | None = None,
) -> EvalRow:
    """k-NN and/or linear probe of one candidate's features; ``progress`` reports each phase."""
    row = EvalRow(name, settings={})
    e = cfg.eval
    assert row.settings is not None
    if "knn" in protocols:
        row.settings["knn"] = {"k": e.knn_k, "temperature": e.knn_temperature}
        doing = f"{len(train[0])} bank / {len(test[0])} queries"
        with phase(f"{name}: {e.knn_k}-NN", doing, style=progress) as step:
            row.knn = knn_accuracy(
                train[0],
                train[1],
                test[0],
                test[1],
                num_classes,
                k=e.knn_k,
                temperature=e.knn_temperature,
            )
            step.result = f"top-1 {100 * row.knn:.2f}%"
    if "linear" in protocols:
        result = linear_probe(
            train[0],
            train[1],
            test[0],
            test[1],
            num_classes,
            epochs=e.linear_epochs,
            lrs=tuple(e.linear_lrs),
            val_fraction=e.val_fraction,
            batch_norm=linear_batch_norm(cfg),
            seed=cfg.train.seed,
            device=device,
            progress=progress,
            desc=f"{name}: linear probe",
        )
        row.linear, row.linear_lr = result.test_accuracy, result.lr
        row.settings["linear"] = {
            "lr": result.lr,
            "lrs": list(e.linear_lrs),
            "epochs": e.linear_epochs,
            "batch_norm": linear_batch_norm(cfg),
            "val_fraction": e.val_fraction,
        }
    return row


def evaluate_run(
    run_dir: str | Path,
    protocols: tuple[str, ...] = ("knn", "linear"),
    baselines: bool = True,
    device: str | torch.device = "cpu",
    eval_sets: tuple[ImageDataset, ImageDataset] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> list[EvalRow]:
    """Evaluate a run's encoder (and baselines) on its labelled eval splits; the results join
    the run's eval.json (:mod:`selfsup.eval.results`) under the encoder's hash.

    ``overrides`` (``eval.*``/``data.*`` keys) change the protocol, not the encoder. A run that
    is still training or was interrupted is evaluated with its last checkpoint's encoder.
    ``progress`` prints each phase (features, k-NN, linear probe) on stderr as the run's
    ``train.progress*`` settings ask (the CLI sets it); quiet by default.
    """
    run = load_encoder(run_dir, device)
    cfg = apply_overrides(run.cfg, overrides).validate()
    sets = eval_sets or build.eval_datasets(cfg)
    if sets is None:
        raise ValueError(
            f"no labelled evaluation data for {cfg.data.dataset!r}; set data.eval_dataset "
            "(e.g. fashion_mnist) or an image folder with class sub-folders"
        )
    train_set, test_set = sets
    num_classes = int(train_set.num_classes or 0)
    if num_classes < 2:
        raise ValueError("evaluation needs at least 2 classes in the labelled data")
    rows = []
    encoder, network = run_network_encoder(run, cfg, run_dir, device)
    candidates: list[tuple[str, nn.Module | None]] = [(f"selfsup {cfg.method}", encoder)]
    if baselines:
        candidates.append(("random encoder", random_encoder(cfg, run.in_channels, device)))
        candidates.append(("raw pixels", None))
    style = ProgressStyle.of(cfg.train) if progress else None
    for name, model in candidates:
        if model is None:
            train, test = pixel_features(train_set, cfg), pixel_features(test_set, cfg)
        else:
            train = split_features(name, "train", model, train_set, cfg, device, style)
            test = split_features(name, "test", model, test_set, cfg, device, style)
        row = evaluate_features(name, train, test, cfg, protocols, num_classes, device, style)
        rows.append(row)
    rows[0].network = network
    sha = run.sha256 if encoder is run.encoder else encoder_sha256(encoder)
    record_results(run_dir, result_entries(rows, protocols, cfg, run), sha)
    return rows


def eval_dataset_name(cfg: Config) -> str:
    """The labelled data a result was measured on, as eval.json names it."""
    d = cfg.data
    name = d.eval_dataset or d.dataset
    if name in ("folder", "filelist"):
        return f"{name}:{d.eval_data_dir or d.data_dir}"
    return name


def result_entries(
    rows: list[EvalRow], protocols: tuple[str, ...], cfg: Config, run: RunEncoder
) -> list[dict[str, Any]]:
    """The eval.json entries of ``rows``: one per candidate and protocol."""
    entries = []
    for row in rows:
        for protocol in protocols:
            top1 = row.knn if protocol == "knn" else row.linear
            entries.append(
                {
                    "candidate": row.name,
                    "protocol": protocol,
                    "dataset": eval_dataset_name(cfg),
                    "network": row.network,
                    "top1": top1,
                    "settings": (row.settings or {}).get(protocol, {}),
                    "step": run.step,
                    "source": run.source,
                }
            )
    return entries


def format_table(rows: list[EvalRow]) -> str:
    head = f"{'':24s} {'k-NN top-1':>12s} {'linear top-1':>13s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        knn = f"{100 * r.knn:11.2f}%" if r.knn is not None else f"{'-':>12s}"
        lin = f"{100 * r.linear:12.2f}%" if r.linear is not None else f"{'-':>13s}"
        lines.append(f"{r.name:24s} {knn} {lin}")
    return "\n".join(lines)
