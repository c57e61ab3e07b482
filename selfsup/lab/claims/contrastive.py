"""Contrastive learning's claims: batch size (1), MoCo's queue (2) and momentum (3), the
temperature of NT-Xent (9)."""

from __future__ import annotations

from selfsup.lab.arms import ArmSpec
from selfsup.lab.claim import Claim, PlotSpec, Results, register_claim
from selfsup.lab.claims.common import ACCURACY_FLOOR, MOCO, SIMCLR
from selfsup.lab.verdict import Verdict, all_of, best_of, greater, matches, monotone

__all__ = ["BATCH_SIZE", "MOCO_MOMENTUM", "MOCO_QUEUE", "TEMPERATURE"]

BATCHES = (32, 64, 128, 256, 512)
BATCH_SIZE = register_claim(
    Claim(
        number=1,
        id="batch-size",
        name="SimCLR improves with the batch size",
        statement="SimCLR's representation improves with the batch size at an equal number of "
        "epochs, because a larger batch gives every anchor more negatives (Chen et al. 2020, "
        "Fig. 9: batch 256 to 8192, the gain largest for short training).",
        setup="The SimCLR Fashion-MNIST preset (ResNet-18 x0.25, tau 0.1, LARS with the "
        "square-root rule lr = 0.075 sqrt(B), the paper's choice for small batches) at batch "
        "32, 64, 128, 256 and 512, each for the same epochs (a small batch takes more steps); "
        "k-NN top-1 of `selfsup eval knn`. Holds: a monotone rise (Spearman rho >= 0.8, batch "
        "512 above batch 32 beyond the seeds' spread, no batch beating a larger one beyond "
        "it); does not hold: some batch beats a larger one beyond the spread.",
        arms=tuple(
            ArmSpec(f"batch {b}", SIMCLR, (f"train.batch_size={b}",), epochs=1, x=b)
            for b in BATCHES
        ),
        measures=("knn",),
        judge=lambda r: monotone(r.sweep("knn"), increasing=True, floor=ACCURACY_FLOOR),
        plot=PlotSpec("sweep", ("knn",), "batch size", log_x=True),
    )
)

QUEUED, LARGE = "MoCo (batch 64, queue 4096)", "SimCLR (batch 512)"
MOCO_QUEUE = register_claim(
    Claim(
        number=2,
        id="moco-queue",
        name="MoCo's queue replaces SimCLR's large batch",
        statement="MoCo's queue decouples the number of negatives from the batch size: with a "
        "small batch and a large queue it matches SimCLR with a large batch (He et al. 2020; "
        "Chen et al. 2020, MoCo v2: 256 images and 65536 queued keys beat SimCLR at 4096).",
        setup="MoCo v2's Fashion-MNIST preset (4096 queued keys, momentum 0.99, split-BN) at "
        "batch 64 against SimCLR's preset at batch 512, the same epochs; controls: SimCLR at "
        "batch 64 (does the large batch matter here at all?) and MoCo with a queue of one batch "
        "(64 keys: is it the queue?). k-NN top-1. Holds: MoCo (64, 4096) within 1 point of "
        "SimCLR (512) even allowing for the seeds' spread; does not hold: further apart beyond "
        "it.",
        arms=(
            ArmSpec(QUEUED, MOCO, ("train.batch_size=64", "moco.queue_size=4096"), epochs=1),
            ArmSpec(LARGE, SIMCLR, ("train.batch_size=512",), epochs=1),
            ArmSpec("SimCLR (batch 64)", SIMCLR, ("train.batch_size=64",), epochs=1),
            ArmSpec(
                "MoCo (batch 64, queue 64)",
                MOCO,
                ("train.batch_size=64", "moco.queue_size=64"),
                epochs=1,
            ),
        ),
        measures=("knn",),
        judge=lambda r: matches(
            r.get(QUEUED, "knn"), r.get(LARGE, "knn"), tolerance=1.0, floor=ACCURACY_FLOOR
        ),
        plot=PlotSpec("bars", ("knn",)),
    )
)

MOMENTA = (0.0, 0.9, 0.99, 0.999)


def _momentum_verdict(r: Results) -> Verdict:
    arms = r.arms("knn")
    return all_of(
        [
            best_of(arms, {"m 0.99", "m 0.999"}, ACCURACY_FLOOR),
            greater(r.get("m 0.99", "knn"), r.get("m 0", "knn"), ACCURACY_FLOOR),
        ],
        "a slow key encoder is best and m = 0 is worse",
    )


MOCO_MOMENTUM = register_claim(
    Claim(
        number=3,
        id="moco-momentum",
        name="MoCo needs a slowly moving key encoder",
        statement="MoCo's key encoder must move slowly: momentum 0.99-0.999 works best, and "
        "m = 0 (keys from a copy of the query encoder) fails (He et al. 2020, Table: 0.999 "
        "best, 0.9 lower, 0 does not train).",
        setup="MoCo v2's Fashion-MNIST preset (batch 256, 4096 queued keys) with the key "
        "encoder's momentum m in {0, 0.9, 0.99, 0.999}, the same epochs; k-NN top-1. Holds: "
        "the best m is 0.99 or 0.999, beyond the seeds' spread of the others, and m = 0.99 "
        "beats m = 0 beyond it. Note: over one short epoch m = 0.999 leaves the key encoder "
        "close to its initialisation (0.999^234 = 0.79 of it remains).",
        arms=tuple(
            ArmSpec(f"m {m:g}", MOCO, (f"moco.momentum={m}",), epochs=1, x=m) for m in MOMENTA
        ),
        measures=("knn",),
        judge=_momentum_verdict,
        plot=PlotSpec("bars", ("knn",)),
    )
)

TAUS = (0.05, 0.1, 0.2, 0.5, 1.0)


def _temperature_verdict(r: Results) -> Verdict:
    return all_of(
        [
            best_of(r.arms("knn"), {"tau 0.1", "tau 0.2", "tau 0.5"}, ACCURACY_FLOOR),
            greater(r.get("tau 0.1", "knn"), r.get("tau 1", "knn"), ACCURACY_FLOOR),
        ],
        "the best temperature is 0.1-0.5 and tau = 1 is worse",
    )


TEMPERATURE = register_claim(
    Claim(
        number=9,
        id="temperature",
        name="NT-Xent needs a low temperature",
        statement="NT-Xent works best at a low temperature, 0.1-0.5, and clearly worse at "
        "tau = 1 (Chen et al. 2020, Table 5: 0.1 best on ImageNet; 0.5 the CIFAR choice).",
        setup="SimCLR's Fashion-MNIST preset (batch 256; its own tau is 0.1) with tau in "
        "{0.05, 0.1, 0.2, 0.5, 1}, the same epochs; k-NN top-1. Holds: the best tau is 0.1, "
        "0.2 or 0.5 beyond the seeds' spread of 0.05 and 1, and tau 0.1 beats tau 1 beyond it.",
        arms=tuple(
            ArmSpec(f"tau {t:g}", SIMCLR, (f"simclr.temperature={t}",), epochs=1, x=t) for t in TAUS
        ),
        measures=("knn",),
        judge=_temperature_verdict,
        plot=PlotSpec("sweep", ("knn",), "temperature tau", log_x=True),
    )
)
