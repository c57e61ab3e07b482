"""Online k-NN accuracy during pre-training: a cheap, label-using signal that features improve.

By default it runs on fixed random subsets, 5000 bank and 2000 query images
(``train.knn_train_samples``/``knn_test_samples``), so that it costs a small, stated share of
training: about 3% of an epoch of the demo (docs/reliability.md, "Progress and silence").
The features it extracts come back with the accuracy (:class:`KNNResult`), so the epoch's other
measures (the online probe's top-1, collapse metrics) reuse them instead of extracting again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfsup import build
from selfsup.config import Config
from selfsup.data import ImageDataset, iterate_batches
from selfsup.eval.features import extract_features
from selfsup.eval.knn import knn_accuracy
from selfsup.progress import ProgressStyle, phase
from selfsup.train.online_probe import OnlineLinearProbe

__all__ = ["KNNResult", "OnlineKNN"]


@dataclass
class KNNResult:
    """One online k-NN: its top-1 and the features it extracted (float32, on the CPU)."""

    accuracy: float  # k-NN top-1 in [0, 1]
    bank: Tensor  # [Nb, D] features of the bank images (training split)
    bank_labels: Tensor  # [Nb] int64
    query: Tensor  # [Nq, D] features of the query images (test split)
    query_labels: Tensor  # [Nq] int64
    query_indices: Tensor  # [Nq] the query images' indices in the test split
    linear: float | None = None  # the online linear probe's top-1 on the query features


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

    def __call__(
        self, encoder: nn.Module, label: str = "", probe: OnlineLinearProbe | None = None
    ) -> KNNResult:
        """The k-NN top-1 and the features; ``label`` follows the phase's name (e.g.
        ``", epoch 3"``); with ``probe``, its top-1 on the same query features as well."""
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
            linear = None if probe is None else probe.top1(query, query_labels)
            if linear is not None:
                step.result += f" (online linear probe {100 * linear:.2f}%)"
        return KNNResult(accuracy, bank, bank_labels, query, query_labels, query_idx, linear=linear)
