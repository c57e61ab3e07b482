"""The method contract every SSL method implements, and what the trainer relies on.

A method is an ``nn.Module`` holding everything it trains and everything it carries between steps
(EMA target, queue, center) as parameters or registered buffers, so ``state_dict()`` is the whole
method state and a checkpoint restores it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from selfsup.nn.ema import EMATarget
from selfsup.views import MultiViewTransform

if TYPE_CHECKING:
    from selfsup.config import Config
    from selfsup.data import ImageDataset


@dataclass
class StepOutput:
    """What one ``training_step`` returns: the loss to back-propagate and detached logs."""

    loss: Tensor
    logs: dict[str, Tensor] = field(
        default_factory=dict
    )  # detached scalars, synced only when logged
    embeddings: Tensor | None = None  # [B, D] detached, for collapse diagnostics
    # [B, F] detached backbone features of the first view (the encoder output the method
    # computes anyway; MAE: its visible patches pooled as the encoder pools), one row per image
    # in the batch's order: what the trainer's online linear probe learns from.
    features: Tensor | None = None


@dataclass(frozen=True)
class Progress:
    """Where training stands after a step; drives momentum rules and per-step schedules."""

    step: int  # global step just completed (0-based)
    total_steps: int
    epoch: int
    steps_per_epoch: int

    @property
    def fraction(self) -> float:
        return (self.step + 1) / max(1, self.total_steps)


def embedding_std(embeddings: Tensor) -> Tensor:
    """Collapse metric: mean per-dimension std of L2-normalised embeddings.

    Healthy embeddings spread over the sphere give about ``1/sqrt(D)``; collapse to one point gives 0.
    """
    z = nn.functional.normalize(embeddings.float(), dim=1)
    return z.std(dim=0).mean()


Network = Literal["online", "target"]
# What the encoder is fed: the images as the data holds them, or the CIE L channel of RGB images
# (Colorization), which selfsup.build.make_backbone converts inside the encoder.
EncoderInput = Literal["image", "lightness"]


class Method(nn.Module):
    """Base class: a backbone (``encoder``), heads, a loss, a view recipe and per-step rules.

    A method with a momentum network holds it as ``self.target``, an
    :class:`~selfsup.nn.ema.EMATarget` built from ``nn.Sequential(backbone, head...)``, so the
    target's first module is the backbone's EMA copy. ``default_network`` names the network the
    method's own evaluation protocol uses (DINO: the target, its teacher).
    """

    name: ClassVar[str] = "method"  # set by selfsup.methods.registry.register_method
    default_network: ClassVar[Network] = "online"
    # The linear-probe protocol of the method's paper puts BatchNorm1d(affine=False) before the
    # linear layer (MAE); eval.linear_batch_norm overrides it.
    linear_probe_batch_norm: ClassVar[bool] = False
    # "lightness": make_backbone wraps the backbone in a LightnessEncoder (RGB in, L inside), so
    # evaluation, export and the random-init baseline feed it RGB like any other encoder.
    encoder_input: ClassVar[EncoderInput] = "image"
    # State-dict key prefixes that differ between the processes of a distributed run by design
    # (SwAV: each process queues its own embeddings); checkpoints keep every process's copy.
    rank_local_state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, backbone: nn.Module, view_recipe: MultiViewTransform) -> None:
        super().__init__()
        self.backbone = backbone
        self.view_recipe = view_recipe

    @classmethod
    def from_config(
        cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform
    ) -> Method:  # pragma: no cover - every registered method defines it
        """Build the method from its config section around ``backbone`` (the registry calls it)."""
        raise TypeError(f"{cls.__name__} must define from_config(cfg, backbone, view_recipe)")

    @property
    def encoder(self) -> nn.Module:
        """The online backbone before any projection head (what training updates)."""
        return self.backbone

    @property
    def target_encoder(self) -> nn.Module | None:
        """The EMA copy of the backbone, or None for a method without a momentum network."""
        target = getattr(self, "target", None)
        return target.module[0] if isinstance(target, EMATarget) else None  # type: ignore[index]

    def resolve_network(self, network: str = "auto") -> Network:
        """``"auto"`` -> the method's protocol (``default_network``); checks the choice."""
        if network == "auto":
            return self.default_network
        if network == "online":
            return "online"
        if network == "target":
            if self.target_encoder is None:
                raise ValueError(
                    f"{self.name} has no EMA target network; use eval.network=online (or auto)"
                )
            return "target"
        raise ValueError(f"network must be auto, online or target, got {network!r}")

    def encoder_for(self, network: str = "auto") -> nn.Module:
        """The backbone that evaluation and export use: online, target, or the method's own
        choice (``"auto"``: DINO's teacher, every other method's online backbone)."""
        if self.resolve_network(network) == "target":
            assert self.target_encoder is not None
            return self.target_encoder
        return self.encoder

    def make_views(
        self, images: Tensor, generator: torch.Generator | None = None, size: int | None = None
    ) -> list[Tensor]:
        """The method's view recipe applied to a uint8 batch ``[B, C, H, W]`` on its device;
        with ``size``, its global views at ``size`` px and its local crops scaled with them
        (progressive resizing: :meth:`MultiViewTransform.at_size`)."""
        recipe = self.view_recipe if size is None else self.view_recipe.at_size(size)
        return recipe(images, generator=generator)

    def prepare_data(self, dataset: ImageDataset) -> None:
        """Statistics of the training data the method needs before its first step (the
        Colorization colour prior), kept in buffers so checkpoints carry them. The trainer calls
        it once the method is built, before any step; deterministic, it draws no random numbers.
        Default: nothing."""
        del dataset

    def training_step(self, views: list[Tensor]) -> StepOutput:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must implement training_step(views)")

    def diagnose(self, logs: dict[str, float]) -> list[str]:
        """Collapse warnings from the logged values (the trainer prints them each epoch).

        Base rule: the embeddings' per-dimension std (``embedding_std``, ~``1/sqrt(D)`` when
        healthy) below 0.01 means they have gone (nearly) constant.
        """
        std = logs.get("embedding_std")
        if std is not None and std < 0.01:
            return [
                f"{self.name}: embedding_std {std:.4f} < 0.01, the embeddings are collapsing to "
                "a constant; check the learning rate, temperature and augmentations"
            ]
        return []

    def configure_schedules(self, total_steps: int, steps_per_epoch: int) -> None:
        """Precompute the method's per-step schedules for a run of ``total_steps`` optimiser
        steps, as the lr schedule is precomputed: here the EMA target's momentum array (DINO
        adds its teacher temperature).

        Called once by the training step before the first step (and again, with the same values,
        when a run resumes). The arrays are derived, not state: they are never checkpointed.
        """
        del steps_per_epoch
        target = getattr(self, "target", None)
        if isinstance(target, EMATarget):
            target.configure(total_steps)

    def param_group_options(self) -> dict[str, dict[str, Any]]:
        """Optimiser options of some submodules' parameters, by submodule name: ``"fixed_lr"``
        (the peak learning rate at every step, neither warmed up nor decayed) and
        ``"lr_scale"`` (a multiple of the scheduled lr); see
        :func:`~selfsup.train.optim.param_groups`. SimSiam's predictor:
        ``{"predictor": {"fixed_lr": True}}``. Default: none, every parameter follows the
        schedule."""
        return {}

    def before_optimizer_step(self, progress: Progress) -> None:
        """Hook after backward and gradient clipping, before the optimiser step (DINO cancels
        its last layer's gradients here during the first epoch). Default: nothing."""
        del progress

    def after_step(self, progress: Progress) -> None:
        """Hook after the optimiser step (EMA updates, queues, centers). Default: nothing."""
        del progress
