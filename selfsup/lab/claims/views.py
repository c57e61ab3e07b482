"""What the views and the head do: the augmentation ablation (6) and the representation before
versus after the projection head (7)."""

from __future__ import annotations

from selfsup.lab.arms import ArmSpec
from selfsup.lab.claim import Claim, PlotSpec, Results, register_claim
from selfsup.lab.claims.common import ACCURACY_FLOOR, SIMCLR
from selfsup.lab.verdict import Measurement, Verdict, all_of, greater

__all__ = ["AUGMENTATIONS", "PROJECTION_HEAD"]

CROP, COLOUR, BOTH = "crop", "colour", "crop + colour"


def _augmentation_verdict(r: Results) -> Verdict:
    crop, colour, both = (r.get(name, "knn") for name in (CROP, COLOUR, BOTH))
    return all_of(
        [
            greater(crop, colour, ACCURACY_FLOOR),
            greater(both, crop, ACCURACY_FLOOR),
            greater(both, colour, ACCURACY_FLOOR),
        ],
        "crop beats colour, and the two together beat each alone",
    )


AUGMENTATIONS = register_claim(
    Claim(
        number=6,
        id="augmentations",
        name="Random crop matters most, crop + colour beats each alone",
        statement="Random cropping is the most important single augmentation of contrastive "
        "learning, and composing it with colour distortion beats either alone (Chen et al. "
        "2020, Fig. 5: crop and colour each give weak features, their composition the best).",
        setup="SimCLR's Fashion-MNIST preset with its views reduced to: crop (random resized "
        "crop 0.2-1 with flip; `views.jitter_p=0 views.gray_p=0`), colour (jitter and "
        "grayscale on the whole image, no flip: `views.crop_min_scale=1 views.flip_p=0`), crop "
        "+ colour (the preset: crop, flip, jitter, grayscale, no blur) and the full ImageNet "
        "recipe (the preset with blur, `views.blur_p=0.5`), the same epochs; k-NN top-1. On "
        "grey images colour jitter changes brightness and contrast only. Holds: crop > colour, "
        "crop + colour > crop and > colour, each beyond the seeds' spread.",
        arms=(
            ArmSpec(CROP, SIMCLR, ("views.jitter_p=0", "views.gray_p=0"), epochs=1),
            ArmSpec(COLOUR, SIMCLR, ("views.crop_min_scale=1.0", "views.flip_p=0"), epochs=1),
            ArmSpec(BOTH, SIMCLR, epochs=1),
            ArmSpec("full recipe (+ blur)", SIMCLR, ("views.blur_p=0.5",), epochs=1),
        ),
        measures=("knn",),
        judge=_augmentation_verdict,
        plot=PlotSpec("bars", ("knn",)),
    )
)


def _head_verdict(r: Results) -> Verdict:
    h, z = r.get("SimCLR", "linear"), r.get("SimCLR", "linear_z")
    before = Measurement("h (before the head)", h.values, h.seeds)
    after = Measurement("z (after the head)", z.values, z.seeds)
    return greater(before, after, ACCURACY_FLOOR)


PROJECTION_HEAD = register_claim(
    Claim(
        number=7,
        id="projection-head",
        name="Features before the projection head are better",
        statement="The representation before the projection head, h, is better than the "
        "head's output z, on which the loss is computed (Chen et al. 2020, Fig. 8: linear "
        "evaluation of h beats z by more than 10 points).",
        setup="SimCLR's Fashion-MNIST preset (its 3-layer v2 projector to 128-d), one run per "
        "seed; the same linear-probe protocol (`selfsup eval linear`: standardised frozen "
        "features, lr chosen on a validation split, test scored once) on the encoder's "
        "features h and on projector(h) = z. Holds: h beats z beyond the seeds' spread.",
        arms=(ArmSpec("SimCLR", SIMCLR, epochs=3),),
        measures=("linear", "linear_z"),
        judge=_head_verdict,
        plot=PlotSpec("grouped", ("linear", "linear_z")),
    )
)
