"""Evaluate a run directory: its encoder under each protocol (:mod:`selfsup.eval.protocols`) on
the full labelled training split or stratified subsets of it (1%, 10%), beside baselines.

Baselines put every number in context, with the same architecture, protocol and label subset:
the *same* encoder randomly initialised (what pre-training added), raw pixels (k-NN / linear:
what any encoder must beat) and, for fine-tuning, the same network trained from scratch on the
same labels (what the labels alone give). Features of frozen encoders are cached on disk
(:mod:`selfsup.eval.cache`); results join eval.json (:mod:`selfsup.eval.results`). Transfer:
``data`` names another labelled dataset; its images are converted to the encoder's channels and
resized to its input size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from selfsup import build
from selfsup.config import Config, apply_overrides, set_key
from selfsup.data import ImageDataset, iterate_batches
from selfsup.eval.cache import FeatureCache
from selfsup.eval.collapse import diagnose
from selfsup.eval.features import extract_features
from selfsup.eval.from_checkpoint import checkpoint_encoder
from selfsup.eval.labelled import eval_dataset_name, label_subset, labelled_sets
from selfsup.eval.protocols import (
    FEATURE_PROTOCOLS,
    IMAGE_PROTOCOLS,
    PROTOCOLS,
    feature_precision,
    feature_protocol,
    image_protocol,
    linear_batch_norm,
)
from selfsup.eval.results import record_results
from selfsup.eval.run_encoder import RunEncoder, encoder_sha256, load_encoder, load_run_config
from selfsup.eval.subsets import LabelSubset
from selfsup.progress import ProgressStyle, phase, say

__all__ = [  # load_encoder & co. live in run_encoder; imported from here by earlier code
    "EvalRow",
    "RunEncoder",
    "evaluate_run",
    "format_table",
    "linear_batch_norm",
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
    """Features of every image of ``dataset`` at ``eval.precision``; ``progress(n)`` after each
    batch of n images."""
    from selfsup.train.device import autocast, resolve_precision

    device = torch.device(device)
    with autocast(device, resolve_precision(cfg.eval.precision, device)):
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
    cache: FeatureCache | None = None,
    encoder_sha: str | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`features_of` as a phase named after the candidate and split (quiet when None),
    read from ``cache`` when it holds this encoder's features of this split."""
    what = f"{name}: {split} features"
    if cache is not None and cache.directory is not None:
        transform = {
            "size": cfg.views.size,
            "mean": cfg.views.mean,
            "std": cfg.views.std,
            "precision": feature_precision(cfg, device),
        }
        key = FeatureCache.key(encoder_sha or encoder_sha256(encoder), dataset, split, transform)
        hits = cache.hits

        def compute() -> tuple[Tensor, Tensor]:
            return split_features(name, split, encoder, dataset, cfg, device, progress)

        feats = cache.get(key, compute)
        if cache.hits > hits and progress is not None:
            say(f"{what}: {feats[0].shape[0]} x {feats[0].shape[1]} from the feature cache")
        return feats
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
    """One candidate's results: ``results[(protocol, labels)]`` = top-1 (labels "100%", "1%"),
    with what eval.json records of each in ``details``."""

    name: str
    network: str | None = None  # the run's row: "online" or "target" (the EMA copy)
    results: dict[tuple[str, str], float] = field(default_factory=dict)
    details: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # collapse metrics of its test features (selfsup.eval.collapse), for encoders
    representation: dict[str, float] | None = None

    @property
    def knn(self) -> float | None:
        return self.results.get(("knn", "100%"))

    @property
    def linear(self) -> float | None:
        return self.results.get(("linear", "100%"))

    @property
    def linear_lr(self) -> float | None:
        detail = self.details.get(("linear", "100%"))
        return None if detail is None else detail["settings"]["lr"]


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


def evaluate_run(
    run_dir: str | Path,
    protocols: Sequence[str] = ("knn", "linear"),
    baselines: bool = True,
    device: str | torch.device = "cpu",
    eval_sets: tuple[ImageDataset, ImageDataset] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = False,
    labels: Sequence[str] = ("100%",),
    data: str | None = None,
    data_dir: str | None = None,
    cache: bool = True,
) -> list[EvalRow]:
    """Evaluate a run's encoder (and baselines) under ``protocols`` with each label fraction of
    ``labels`` (or a subset file written before); the results join the run's eval.json under
    the encoder's hash.

    ``overrides`` (``eval.*``/``data.*`` keys) change the protocol, not the encoder; ``data`` /
    ``data_dir`` evaluate on another labelled dataset (transfer). A run that is still training
    or was interrupted is evaluated with its last checkpoint's encoder. ``progress`` prints each
    phase on stderr (the CLI sets it); quiet by default. ``cache`` keeps frozen features in
    RUN/cache/ so that a second evaluation is instant.
    """
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol {unknown[0]!r}; choose from {', '.join(PROTOCOLS)}")
    run_dir = Path(run_dir)
    run = load_encoder(run_dir, device)
    cfg = apply_overrides(run.cfg, overrides).validate()
    if data is not None:
        set_key(cfg, "data.eval_dataset", data)  # validated: the name must be a known dataset
        set_key(cfg, "data.eval_data_dir", data_dir)
    train_set, test_set = eval_sets or labelled_sets(cfg, run.in_channels)
    num_classes = int(train_set.num_classes or 0)
    if num_classes < 2:
        raise ValueError("evaluation needs at least 2 classes in the labelled data")
    subsets = [
        label_subset(item, train_set, num_classes, cfg, run_dir) for item in labels
    ]  # drawn (and checked) before any training: bad input fails before anything is written
    style = ProgressStyle.of(cfg.train) if progress else None
    features_cache = FeatureCache(run_dir / "cache" / "features" if cache else None)
    encoder, network = run_network_encoder(run, cfg, run_dir, device)
    sha = run.sha256 if encoder is run.encoder else encoder_sha256(encoder)
    ours = EvalRow(f"selfsup {cfg.method}", network)
    random_row, pixels_row = EvalRow("random encoder"), EvalRow("raw pixels")
    scratch_row = EvalRow("supervised from scratch")
    rows = [ours, *([random_row, pixels_row, scratch_row] if baselines else [])]
    feature_protocols = [p for p in protocols if p in FEATURE_PROTOCOLS]
    image_protocols = [p for p in protocols if p in IMAGE_PROTOCOLS]
    random_net = random_encoder(cfg, run.in_channels, device) if baselines else None

    def candidates() -> list[tuple[EvalRow, nn.Module | None, str | None]]:
        out: list[tuple[EvalRow, nn.Module | None, str | None]] = [(ours, encoder, sha)]
        if random_net is not None:
            out += [(random_row, random_net, None), (pixels_row, None, None)]
        return out

    if feature_protocols:
        for row, model, model_sha in candidates():
            if model is None:
                train, test = pixel_features(train_set, cfg), pixel_features(test_set, cfg)
            else:
                args = (cfg, device, style, features_cache, model_sha)
                train = split_features(row.name, "train", model, train_set, *args)
                test = split_features(row.name, "test", model, test_set, *args)
                row.representation = representation(model, test, test_set, cfg, device)
                if row is ours:
                    for warning in diagnose(row.representation):
                        say(f"warning: {row.name}: {warning}")
            for protocol in feature_protocols:
                for subset in subsets:
                    top1, detail = feature_protocol(
                        protocol, row.name, train, test, subset, cfg, num_classes, device, style
                    )
                    row.results[(protocol, subset.name)] = top1
                    row.details[(protocol, subset.name)] = {**detail, "subset": subset}
    for protocol in image_protocols:
        image_candidates: list[tuple[EvalRow, nn.Module, bool]] = [(ours, encoder, False)]
        if random_net is not None:
            if protocol == "finetune":
                image_candidates.append((scratch_row, random_net, True))
            else:
                image_candidates.append((random_row, random_net, False))
        for row, model, supervised in image_candidates:
            for subset in subsets:
                top1, detail = image_protocol(
                    protocol,
                    row.name,
                    model,
                    supervised,
                    train_set,
                    test_set,
                    subset,
                    cfg,
                    num_classes,
                    device,
                    style,
                )
                row.results[(protocol, subset.name)] = top1
                row.details[(protocol, subset.name)] = {**detail, "subset": subset}
    rows = [r for r in rows if r.results]
    record_results(run_dir, result_entries(rows, cfg, run), sha)
    return rows


REPRESENTATION_IMAGES = 512  # test images whose two augmented views give the alignment


@torch.no_grad()
def representation(
    encoder: nn.Module,
    test: tuple[Tensor, Tensor],
    test_set: ImageDataset,
    cfg: Config,
    device: torch.device | str,
) -> dict[str, float]:
    """Collapse metrics of an encoder: std, RankMe, uniformity of its test features, and the
    alignment of two views (:func:`~selfsup.eval.collapse.two_view_features`) of the first
    :data:`REPRESENTATION_IMAGES` test images."""
    from selfsup.eval.collapse import collapse_metrics, two_view_features

    indices = torch.arange(min(REPRESENTATION_IMAGES, len(test_set)))
    pair = two_view_features(encoder, test_set, indices, cfg, device)
    return collapse_metrics(test[0], views=pair)


def result_entries(rows: list[EvalRow], cfg: Config, run: RunEncoder) -> list[dict[str, Any]]:
    """The eval.json entries of ``rows``: one per candidate, protocol and label subset."""
    entries = []
    for row in rows:
        for (protocol, labels), top1 in row.results.items():
            detail = row.details[(protocol, labels)]
            subset: LabelSubset = detail["subset"]
            entries.append(
                {
                    "candidate": row.name,
                    "protocol": protocol,
                    "labels": labels,
                    "dataset": eval_dataset_name(cfg),
                    "network": row.network,
                    "top1": top1,
                    "settings": detail["settings"],
                    "selection": detail["selection"],
                    "train_images": len(subset.indices),
                    "label_subset": str(subset.path) if subset.path else None,
                    "test_split": "test (scored once, after selection)",
                    "step": run.step,
                    "source": run.source,
                    "representation": row.representation,
                }
            )
    return entries


def format_table(rows: list[EvalRow]) -> str:
    """Candidates x (protocol, labels) top-1 table."""
    columns: list[tuple[str, str]] = []
    for row in rows:
        columns += [key for key in row.results if key not in columns]
    names = [f"{p} {lab}" if lab != "100%" else p for p, lab in columns]
    width = max(12, *(len(n) + 1 for n in names)) if names else 12
    head = f"{'':26s}" + "".join(f"{n:>{width}s}" for n in names)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [
            f"{100 * r.results[key]:{width - 1}.2f}%" if key in r.results else f"{'-':>{width}s}"
            for key in columns
        ]
        lines.append(f"{r.name:26s}" + "".join(cells))
    shown = [r for r in rows if r.representation]
    if shown:
        lines += [
            "",
            f"{'':26s}{'std x sqrtD':>12s}{'RankMe':>10s}{'uniformity':>12s}{'alignment':>11s}",
        ]
        for r in shown:
            m = r.representation or {}
            lines.append(
                f"{r.name:26s}{m['embedding_std']:12.3f}{m['rankme']:10.1f}"
                f"{m['uniformity']:12.3f}{m.get('alignment', float('nan')):11.3f}"
            )
    return "\n".join(lines)
