"""SimCLR learns: after a short run on real data the encoder beats itself randomly initialised."""

import pytest
import torch

from selfsup import build
from selfsup.cli import demo_config
from selfsup.config import apply_overrides
from selfsup.data import TensorImageDataset
from selfsup.eval.knn import knn_accuracy
from selfsup.eval.run import features_of, random_encoder
from selfsup.train.trainer import Trainer
from tests.conftest import requires_fashion_mnist


def _head(dataset: TensorImageDataset, n: int) -> TensorImageDataset:
    images, labels = dataset.get_batch(torch.arange(n))
    return TensorImageDataset(images, labels, dataset.name, dataset.num_classes)


@requires_fashion_mnist
@pytest.mark.slow
def test_simclr_beats_the_same_encoder_randomly_initialised(tmp_path):
    cfg = apply_overrides(
        demo_config(),
        ["data.subset=4096", "train.epochs=4", "train.knn_every=0", "train.progress=false"],
    ).validate()
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    sets = build.eval_datasets(cfg)
    assert sets is not None
    bank, queries = _head(sets[0], 5000), _head(sets[1], 2000)  # type: ignore[arg-type]

    def knn(encoder: torch.nn.Module) -> float:
        train = features_of(encoder, bank, cfg, "cpu")
        test = features_of(encoder, queries, cfg, "cpu")
        return knn_accuracy(*train, *test, num_classes=10)

    trained = knn(trainer.method.encoder)
    untrained = knn(random_encoder(cfg, trainer.in_channels))
    assert trained > untrained + 0.02, (trained, untrained)
