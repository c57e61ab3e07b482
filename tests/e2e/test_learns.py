"""SimCLR learns: after a short run on real data the encoder beats itself randomly initialised."""

import pytest
import torch

from selfsup import build
from selfsup.cli import demo_config
from selfsup.config import apply_overrides
from selfsup.data import TensorImageDataset
from selfsup.eval.knn import knn_accuracy
from selfsup.eval.linear import linear_probe
from selfsup.eval.run import features_of, random_encoder
from selfsup.train.trainer import Trainer
from tests.conftest import requires_fashion_mnist


def _head(dataset: TensorImageDataset, n: int) -> TensorImageDataset:
    images, labels = dataset.get_batch(torch.arange(n))
    return TensorImageDataset(images, labels, dataset.name, dataset.num_classes)


@requires_fashion_mnist
@pytest.mark.slow
def test_simclr_beats_the_same_encoder_randomly_initialised(tmp_path):
    # The demo's recipe on 4096 images for 4 epochs with a half-width ResNet (width 0.125): the
    # full width took 215 s on one thread of a 2-core EPYC (fp32), this one 60-70 s. Batch 128
    # (128 steps) instead of 256 (64 steps): after 64 steps the gains were too small for a bound
    # that must hold on CPUs whose bf16 kernels differ. base_lr 0.075 (the demo now uses 0.1).
    overrides = [
        "data.subset=4096",
        "backbone.width=0.125",
        "train.batch_size=128",
        "train.epochs=4",
        "optim.base_lr=0.075",
    ]
    cfg = apply_overrides(
        demo_config(), [*overrides, "train.knn_every=0", "train.progress=false"]
    ).validate()
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    sets = build.eval_datasets(cfg)
    assert sets is not None
    bank, queries = _head(sets[0], 5000), _head(sets[1], 2000)  # type: ignore[arg-type]

    def knn_and_linear(encoder: torch.nn.Module) -> tuple[float, float]:
        train = features_of(encoder, bank, cfg, "cpu")
        test = features_of(encoder, queries, cfg, "cpu")
        knn = knn_accuracy(*train, *test, num_classes=10)
        probe = linear_probe(*train, *test, 10, epochs=cfg.eval.linear_epochs)
        return knn, probe.test_accuracy

    trained = knn_and_linear(trainer.method.encoder)
    untrained = knn_and_linear(random_encoder(cfg, trainer.in_channels))
    # Measured on the AVX2 EPYC (fp32, one thread): seed 0 (the test's) k-NN 0.768 against 0.654
    # at random init, linear 0.772 against 0.686; seed 1 k-NN +0.057, linear +0.048. (At full
    # width, bf16 moved the trained k-NN by 0.011 and the linear probe by 0.003 from fp32.)
    # The linear gain carries the bound; k-NN must improve too.
    assert trained[1] > untrained[1] + 0.03, (trained, untrained)
    assert trained[0] > untrained[0], (trained, untrained)
