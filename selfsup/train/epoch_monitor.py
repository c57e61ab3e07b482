"""What the trainer measures on held-out images at an epoch end (every ``train.knn_every``).

One feature extraction serves everything: the online k-NN (:class:`OnlineKNN`) extracts the
bank and query features; the online linear probe classifies the same query features
(``linear_top1``); with ``train.collapse_metrics`` the query features give the collapse
metrics of :mod:`selfsup.eval.collapse` (``feature_std``, ``rankme``, ``rankme_ratio``,
``uniformity``), and two augmented views of the first :data:`ALIGNMENT_IMAGES` queries, drawn
with the method's own first two view specs (MAE: its one view, twice) from a fixed seeded
generator, give ``alignment``. That is the only extra work: ``2 x 256`` encoder passes next to
the k-NN's 7000 by default, plus an SVD of the ``[2000, D]`` query features. The generators are
the monitor's own, so the training run is the same with or without it.

``feature_std`` is the collapse module's ``embedding_std`` (std of the L2-normalised encoder
features x sqrt(D)); it is renamed because methods already log ``embedding_std`` per step, of
their projections and with another scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from selfsup.config import Config
from selfsup.data import ImageDataset
from selfsup.eval.collapse import collapse_metrics, diagnose, two_view_features
from selfsup.progress import ProgressStyle, phase
from selfsup.train.knn_monitor import KNNResult, OnlineKNN
from selfsup.train.online_probe import OnlineLinearProbe

__all__ = ["ALIGNMENT_IMAGES", "EpochMeasures", "EpochMonitor"]

ALIGNMENT_IMAGES = 256  # query images whose two views give the alignment


@dataclass
class EpochMeasures:
    """The epoch record's entries (``knn_top1``, ``linear_top1``, collapse metrics) and the
    collapse warnings, one line each."""

    record: dict[str, float]
    warnings: list[str] = field(default_factory=list)


class EpochMonitor:
    """Online k-NN, online probe top-1 and collapse metrics of an encoder on the eval splits."""

    def __init__(
        self, cfg: Config, eval_sets: tuple[ImageDataset, ImageDataset], device: torch.device
    ) -> None:
        self.cfg = cfg
        self.eval_sets = eval_sets
        self.device = device
        self.knn = OnlineKNN(cfg, eval_sets, device)

    def due(self, epoch: int) -> bool:
        """Whether the measures run after ``epoch`` (1-based): every ``train.knn_every``."""
        every = self.cfg.train.knn_every
        return every > 0 and epoch % every == 0

    def __call__(
        self, encoder: nn.Module, epoch: int, probe: OnlineLinearProbe | None = None
    ) -> EpochMeasures:
        """The measures of ``encoder`` after ``epoch`` (1-based): k-NN top-1, the ``probe``'s
        top-1 on the same features, and the collapse metrics with their warnings."""
        found = self.knn(encoder, f", epoch {epoch}", probe)
        record = {"knn_top1": found.accuracy}
        if found.linear is not None:
            record["linear_top1"] = found.linear
        if not self.cfg.train.collapse_metrics or len(found.query) < 2:  # no pairs to compare
            return EpochMeasures(record)
        metrics = self.collapse(encoder, found, f", epoch {epoch}")
        warnings = [f"encoder features: {w}" for w in diagnose(metrics)]
        record["feature_std"] = metrics.pop("embedding_std")
        record.update(metrics)
        return EpochMeasures(record, warnings)

    def collapse(self, encoder: nn.Module, found: KNNResult, label: str = "") -> dict[str, float]:
        """:func:`collapse_metrics` of the k-NN's query features, with the alignment of two
        views of the first :data:`ALIGNMENT_IMAGES` query images (a phase on stderr)."""
        t = self.cfg.train
        indices = found.query_indices[:ALIGNMENT_IMAGES]
        count = len(found.query)
        what = f"collapse metrics ({count} features, 2 x {len(indices)} views){label}"
        with phase(
            what, "extracting views", 2 * len(indices), "images", ProgressStyle.of(t)
        ) as step:
            views = two_view_features(
                encoder, self.eval_sets[1], indices, self.cfg, self.device, step.update
            )
            metrics = collapse_metrics(found.query, views=views)
            step.result = (
                f"feature std {metrics['embedding_std']:.3f}, RankMe {metrics['rankme']:.1f} "
                f"({100 * metrics['rankme_ratio']:.0f}% of {min(found.query.shape)}), "
                f"uniformity {metrics['uniformity']:.2f}, alignment {metrics['alignment']:.3f}"
            )
        return metrics
