"""What keeps non-contrastive methods from collapsing: BYOL's predictor and EMA target (4),
DINO's centering and sharpening (5)."""

from __future__ import annotations

from selfsup.eval.collapse import COLLAPSE_STD_RATIO
from selfsup.lab.arms import ArmSpec
from selfsup.lab.claim import Claim, PlotSpec, Results, register_claim
from selfsup.lab.claims.common import BYOL, DINO
from selfsup.lab.verdict import Verdict, above, all_of, collapse

__all__ = ["BYOL_COLLAPSE", "DINO_COLLAPSE", "RATIO"]

RATIO = 0.2  # collapsed: every seed below a fifth of the healthy arm's distance to collapse

NO_PREDICTOR = ("byol.predictor=false",)
NO_TARGET = ("byol.momentum_base=0", "byol.momentum_schedule=constant")


def _byol_verdict(r: Results) -> Verdict:
    healthy = r.get("BYOL", "embedding_std")
    return all_of(
        [
            collapse(healthy, r.get("no predictor", "embedding_std"), RATIO),
            collapse(healthy, r.get("no EMA target", "embedding_std"), RATIO),
            above(r.get("BYOL", "feature_std"), COLLAPSE_STD_RATIO, "complete collapse"),
        ],
        "each ablation collapses and BYOL does not",
    )


BYOL_COLLAPSE = register_claim(
    Claim(
        number=4,
        id="byol-collapse",
        name="BYOL collapses without its predictor or its EMA target",
        statement="BYOL avoids collapse only with both its predictor and its slowly moving "
        "target: without the predictor, or with the target a copy of the online network "
        "(momentum 0), the outputs go constant (Grill et al. 2020, Table 5).",
        setup="BYOL's Fashion-MNIST preset; arms: as is, without the predictor "
        "(`byol.predictor=false`), without the EMA target (`byol.momentum_base=0 "
        "byol.momentum_schedule=constant`: the target is the online network under a stop-"
        "gradient), and without both (a known collapse, the control). Measures: the std of the "
        "L2-normalised projections over the last quarter of training (`embedding_std`, "
        "~1/sqrt(D) when healthy, 0 when collapsed), the encoder's feature std x sqrt(D) and "
        "k-NN top-1. Holds: each ablation's projection std below a fifth of BYOL's for every "
        "seed, and BYOL's feature std above the library's complete-collapse threshold (0.01).",
        arms=(
            ArmSpec("BYOL", BYOL, epochs=1),
            ArmSpec("no predictor", BYOL, NO_PREDICTOR, epochs=1),
            ArmSpec("no EMA target", BYOL, NO_TARGET, epochs=1),
            ArmSpec("neither", BYOL, NO_PREDICTOR + NO_TARGET, epochs=1),
        ),
        measures=("embedding_std", "feature_std", "knn"),
        judge=_byol_verdict,
        plot=PlotSpec("bars", ("embedding_std", "knn")),
    )
)


def _dino_verdict(r: Results) -> Verdict:
    healthy = r.get("DINO", "teacher_entropy")
    return all_of(
        [
            collapse(healthy, r.get("no centering", "teacher_entropy"), RATIO),
            collapse(healthy, r.get("no sharpening", "teacher_entropy"), RATIO, ceiling=1.0),
        ],
        "without centering one dimension, without sharpening uniform",
    )


DINO_FREEZE = (("dino.freeze_last_layer_epochs", 0.1),)  # a tenth of the run, as the preset's
DINO_COLLAPSE = register_claim(
    Claim(
        number=5,
        id="dino-collapse",
        name="DINO needs both centering and sharpening",
        statement="DINO's teacher collapses without centering (to one dimension: entropy 0) "
        "and without sharpening (to uniform targets: entropy ln K); with both it does not "
        "(Caron et al. 2021, Fig. 7).",
        setup="DINO's Fashion-MNIST preset (ResNet-18 x0.25, 2 global + 6 local crops, 2048 "
        "prototypes, tau_t 0.04, tau_s 0.1); arms: as is, without centering "
        "(`dino.center_momentum=1`: the center stays 0), without sharpening (tau_t = tau_s = "
        "0.1). Measures: the teacher's entropy as a share of ln K over the last quarter of "
        "training (0 = one dimension, 1 = uniform) and k-NN top-1 of the teacher. Holds: "
        "without centering the entropy is below a fifth of DINO's for every seed, and without "
        "sharpening its distance to uniform is below a fifth of DINO's.",
        arms=(
            ArmSpec("DINO", DINO, epochs=1.0, per_run=DINO_FREEZE),
            ArmSpec("no centering", DINO, ("dino.center_momentum=1.0",), 1.0, per_run=DINO_FREEZE),
            ArmSpec(
                "no sharpening",
                DINO,
                ("dino.teacher_temperature=0.1", "dino.warmup_teacher_temperature=0.1"),
                1.0,
                per_run=DINO_FREEZE,
            ),
        ),
        measures=("teacher_entropy", "knn"),
        judge=_dino_verdict,
        plot=PlotSpec("bars", ("teacher_entropy", "knn")),
    )
)
