"""Online k-NN accuracy during pre-training: a cheap, label-using signal that features improve."""

from __future__ import annotations

import torch
from torch import nn

from selfsup import build
from selfsup.config import Config
from selfsup.data import ImageDataset, iterate_batches
from selfsup.eval.features import extract_features
from selfsup.eval.knn import knn_accuracy

__all__ = ["OnlineKNN"]


class OnlineKNN:
    """``eval.knn_k``-NN top-1 of an encoder on fixed random subsets of the labelled splits
    (``train.knn_train_samples`` bank images, ``train.knn_test_samples`` queries)."""

    def __init__(
        self, cfg: Config, eval_sets: tuple[ImageDataset, ImageDataset], device: torch.device
    ) -> None:
        self.cfg = cfg
        self.eval_sets = eval_sets
        self.device = device

    def __call__(self, encoder: nn.Module) -> float:
        train, test = self.eval_sets
        t, e = self.cfg.train, self.cfg.eval
        transform = build.eval_transform(self.cfg)
        gen = torch.Generator().manual_seed(t.seed + 1)
        bank_idx = torch.randperm(len(train), generator=gen)[: t.knn_train_samples or len(train)]
        query_idx = torch.randperm(len(test), generator=gen)[: t.knn_test_samples or len(test)]
        bank, bank_labels = extract_features(
            encoder,
            iterate_batches(train, e.batch_size, self.device, bank_idx),
            transform,
            self.device,
            channels_last=t.channels_last,
        )
        query, query_labels = extract_features(
            encoder,
            iterate_batches(test, e.batch_size, self.device, query_idx),
            transform,
            self.device,
            channels_last=t.channels_last,
        )
        num_classes = int(max(bank_labels.max(), query_labels.max()).item()) + 1
        return knn_accuracy(
            bank,
            bank_labels,
            query,
            query_labels,
            num_classes,
            k=e.knn_k,
            temperature=e.knn_temperature,
        )
