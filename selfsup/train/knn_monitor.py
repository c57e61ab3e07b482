"""Online k-NN accuracy during pre-training: a cheap, label-using signal that features improve.

By default it runs on fixed random subsets, 5000 bank and 2000 query images
(``train.knn_train_samples``/``knn_test_samples``), so that it costs a small, stated share of
training: about 3% of an epoch of the demo (docs/reliability.md, "Progress and silence").
"""

from __future__ import annotations

import torch
from torch import nn

from selfsup import build
from selfsup.config import Config
from selfsup.data import ImageDataset, iterate_batches
from selfsup.eval.features import extract_features
from selfsup.eval.knn import knn_accuracy
from selfsup.progress import ProgressStyle, phase

__all__ = ["OnlineKNN"]


class OnlineKNN:
    """``eval.knn_k``-NN top-1 of an encoder on fixed random subsets of the labelled splits
    (``train.knn_train_samples`` bank images, ``train.knn_test_samples`` queries). Each call is
    a phase on stderr: what it extracts, its progress, the accuracy and its time."""

    def __init__(
        self, cfg: Config, eval_sets: tuple[ImageDataset, ImageDataset], device: torch.device
    ) -> None:
        self.cfg = cfg
        self.eval_sets = eval_sets
        self.device = device

    def __call__(self, encoder: nn.Module, label: str = "") -> float:
        """Top-1 in [0, 1]; ``label`` follows the phase's name (e.g. ``", epoch 3"``)."""
        train, test = self.eval_sets
        t, e = self.cfg.train, self.cfg.eval
        transform = build.eval_transform(self.cfg)
        gen = torch.Generator().manual_seed(t.seed + 1)
        bank_idx = torch.randperm(len(train), generator=gen)[: t.knn_train_samples or len(train)]
        query_idx = torch.randperm(len(test), generator=gen)[: t.knn_test_samples or len(test)]
        what = f"online {e.knn_k}-NN ({len(bank_idx)} bank / {len(query_idx)} queries){label}"
        total = len(bank_idx) + len(query_idx)
        style = ProgressStyle.of(t)
        with phase(what, "extracting features", total, "images", style) as step:
            bank, bank_labels = extract_features(
                encoder,
                iterate_batches(train, e.batch_size, self.device, bank_idx),
                transform,
                self.device,
                channels_last=t.channels_last,
                progress=step.update,
            )
            query, query_labels = extract_features(
                encoder,
                iterate_batches(test, e.batch_size, self.device, query_idx),
                transform,
                self.device,
                channels_last=t.channels_last,
                progress=step.update,
            )
            num_classes = int(max(bank_labels.max(), query_labels.max()).item()) + 1
            accuracy = knn_accuracy(
                bank,
                bank_labels,
                query,
                query_labels,
                num_classes,
                k=e.knn_k,
                temperature=e.knn_temperature,
            )
            step.result = f"top-1 {100 * accuracy:.2f}%"
        return accuracy
