r"""MAE: masked autoencoders are scalable vision learners (He et al., 2021).

One view per image, in the order of the paper's figure:

1. ``patchify``: the image is cut into ``L`` patches, embedded, and fixed 2-D sin-cos position
   embeddings are added (before masking, so each token keeps its position).
2. ``random_masking``: per sample a random ``L_keep = floor(L (1 - r))`` of the tokens are kept
   (``r = 0.75``); ``mask`` marks the removed ones (1) in the original order.
3. ``forward_encoder``: the ViT runs on the visible tokens plus its cls token *only*; it never
   sees a mask token, which is what makes MAE cheap (the encoder processes ``1 + L/4`` tokens).
4. ``forward_decoder``: a Linear maps the latent to the decoder width, one shared learnable
   mask token fills every removed position, ``ids_restore`` puts the sequence back in image
   order, the decoder's own sin-cos position embedding is added, a light Transformer runs on
   all ``1 + L`` tokens and a Linear predicts each patch's ``p * p * C`` pixel values.
5. ``forward_loss``: mean squared error per patch, averaged over the removed patches only:

.. math::

    \mathcal{L} = \frac{\sum_{i} m_i \, \lVert \hat{x}_i - t_i \rVert^2 / (p^2 C)}{\sum_i m_i},
    \qquad t_i = \begin{cases} \dfrac{x_i - \mu_i}{\sqrt{\sigma_i^2 + 10^{-6}}} &
    \text{norm\_pix\_loss} \\ x_i & \text{otherwise} \end{cases}

with ``x_i`` the pixels of patch ``i``, ``mu_i`` / ``sigma_i^2`` their mean and (unbiased)
variance, and ``m_i = 1`` for removed patches. ``mask_ratio = 0`` is the plain autoencoder the
paper compares against: every patch is visible, nothing is shuffled, and the loss is the mean
over all patches (``m_i = 1`` everywhere in the sum above, none removed). The pixels are the
method's inputs, i.e. the images after the view recipe's mean/std normalisation (the official
code does the same with ImageNet statistics).

Downstream, the encoder is the ViT without masking (all patches, cls or mean pooling).

Differences from the reference:
    * Views (crop + flip) are computed on the training device from uint8 batches.
    * The masking noise comes from the global torch generator of the device (checkpointed by
      the trainer), or from an explicit ``generator`` in :meth:`MAE.forward_encoder`.
    * ``L_keep`` uses a 1e-6 tolerance against binary round-off (see
      :func:`selfsup.nn.masking.num_kept`); it equals the official ``int(L * (1 - r))``
      wherever that is not a round-off artefact.
    * The encoder's position embedding is a buffer, not a frozen parameter (same values).
    * ``mask_ratio = 0`` runs the plain autoencoder (loss over every patch); the official code
      has no such mode (its masked mean would divide by zero removed patches).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from selfsup.backbones.vit import (
    Block,
    VisionTransformer,
    init_transformer_weights,
    sincos_pos_embed_2d,
)
from selfsup.methods.base import Method, StepOutput, embedding_std
from selfsup.methods.registry import register_method
from selfsup.nn.masking import num_kept, patchify, random_masking, unpatchify
from selfsup.views import MultiViewTransform, mae_view

if TYPE_CHECKING:
    from selfsup.config import Config

__all__ = ["MAE"]

_NORM_PIX_EPS = 1e-6


@register_method("mae", views=lambda cfg: [mae_view(cfg.views.size)])
class MAE(Method):
    """Masked autoencoder: a ViT encoder on visible patches, a light decoder predicting pixels.

    Args:
        backbone: the ViT encoder (its ``image_size`` and ``patch_size`` fix the patch grid).
        view_recipe: exactly one view of side ``encoder.image_size`` (crop + flip, e.g.
            :func:`selfsup.views.mae_view`).
        mask_ratio: fraction of patches removed, in [0, 1); 0.75 in the paper. 0 is the plain
            autoencoder (every patch visible, the loss over all patches): the ablation baseline.
        decoder_dim: decoder width (512 in the paper); divisible by 4 and ``decoder_heads``.
        decoder_depth: decoder Transformer blocks (8 in the paper).
        decoder_heads: decoder attention heads (16 in the paper).
        norm_pix_loss: normalise each target patch by its own mean and variance (better
            features, reconstructions no longer viewable as they are).

    Example:
        >>> from selfsup.views import ViewSpec
        >>> vit = VisionTransformer(16, 4, in_channels=1, embed_dim=32, depth=1, num_heads=2)
        >>> spec = ViewSpec(size=16, crop_scale=(0.2, 1.0), jitter_p=0, gray_p=0, blur_p=0)
        >>> mae = MAE(vit, MultiViewTransform([spec], mean=[0.5], std=[0.25]),
        ...           decoder_dim=32, decoder_depth=1, decoder_heads=2)
        >>> views = mae.make_views(torch.zeros(3, 1, 16, 16, dtype=torch.uint8))
        >>> mae.training_step(views).loss.shape
        torch.Size([])
    """

    linear_probe_batch_norm = True  # the paper's linear probe: BN without affine first

    def __init__(
        self,
        backbone: nn.Module,
        view_recipe: MultiViewTransform,
        mask_ratio: float = 0.75,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__(backbone, view_recipe)
        if not isinstance(backbone, VisionTransformer):
            raise ValueError(
                f"MAE needs a selfsup VisionTransformer backbone (it masks patch tokens), got "
                f"{type(backbone).__name__}; set backbone.name=vit_micro|vit_tiny|... (or build "
                "one with selfsup.backbones.vit.build_vit)"
            )
        encoder = backbone
        if view_recipe.num_views != 1:
            raise ValueError(
                f"MAE uses exactly 1 view per image, the recipe makes {view_recipe.num_views}; "
                "pass MultiViewTransform([mae_view(size)], mean, std)"
            )
        view_size = view_recipe.specs[0].size
        if view_size != encoder.image_size:
            raise ValueError(
                f"the view size ({view_size} px) differs from the ViT's image_size "
                f"({encoder.image_size} px); the decoder's position grid is built for the "
                "latter, so make the view size equal to it"
            )
        if decoder_depth < 1:
            raise ValueError(f"decoder_depth must be >= 1 block, got {decoder_depth}")
        if mask_ratio != 0:  # 0: the plain autoencoder, nothing to validate
            num_kept(encoder.num_patches, mask_ratio)  # validates the ratio for this grid
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = encoder.patch_size
        self.in_channels = encoder.in_channels

        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = sincos_pos_embed_2d(decoder_dim, encoder.grid_size, cls_token=True)
        self.register_buffer("decoder_pos_embed", pos[None])  # [1, 1 + L, decoder_dim]
        self.decoder_pos_embed: Tensor
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * self.in_channels)

        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm):
            init_transformer_weights(module)
        init_transformer_weights(self.decoder_pred)
        nn.init.normal_(self.mask_token, std=0.02)

    @classmethod
    def from_config(cls, cfg: Config, backbone: nn.Module, view_recipe: MultiViewTransform) -> MAE:
        a = cfg.mae
        return cls(
            backbone,
            view_recipe,
            mask_ratio=a.mask_ratio,
            decoder_dim=a.decoder_dim,
            decoder_depth=a.decoder_depth,
            decoder_heads=a.decoder_heads,
            norm_pix_loss=a.norm_pix_loss,
        )

    @property
    def encoder(self) -> VisionTransformer:
        """The ViT; run unmasked (``encoder(images)``) it is the feature extractor to evaluate."""
        return self.backbone  # type: ignore[return-value]

    def forward_encoder(
        self, imgs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Images ``[B, C, H, W]`` -> ``latent [B, 1 + L_keep, D]``, ``mask [B, L]``,
        ``ids_restore [B, L]``; the ViT sees the cls token and the visible patches only (every
        patch, in image order, when ``mask_ratio`` is 0)."""
        tokens = self.encoder.patch_tokens(imgs)  # [B, L, D], position embedding added
        if self.mask_ratio == 0:  # the plain autoencoder: nothing removed, nothing shuffled
            batch, length, _ = tokens.shape
            mask = tokens.new_zeros(batch, length, dtype=torch.float32)  # [B, L]
            ids_restore = torch.arange(length, device=tokens.device).expand(batch, -1)
            visible = tokens
        else:
            visible, mask, ids_restore = random_masking(tokens, self.mask_ratio, generator)
        latent = self.encoder.forward_tokens(visible)  # [B, 1 + L_keep, D]
        return latent, mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """``latent [B, 1 + L_keep, D]`` -> pixel predictions ``[B, L, p*p*C]`` for every patch."""
        if ids_restore.shape[1] != self.encoder.num_patches:
            raise ValueError(
                f"got {ids_restore.shape[1]} patches but the decoder is built for "
                f"{self.encoder.num_patches} ({self.encoder.image_size} px images); feed images "
                "of the ViT's image_size"
            )
        x = self.decoder_embed(latent)  # [B, 1 + L_keep, Dd]
        batch, visible, width = x.shape
        num_masked = ids_restore.shape[1] + 1 - visible
        mask_tokens = self.mask_token.to(x.dtype).expand(batch, num_masked, -1)
        patches = torch.cat([x[:, 1:], mask_tokens], dim=1)  # [B, L, Dd], shuffled order
        index = ids_restore.unsqueeze(-1).expand(-1, -1, width)
        patches = patches.gather(1, index)  # [B, L, Dd], image order
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed  # [B, 1 + L, Dd]
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))  # [B, 1 + L, p*p*C]
        return x[:, 1:]  # drop the cls token

    def _target(self, imgs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Target patches ``[B, L, p*p*C]`` and their per-patch mean and std ``[B, L, 1]``."""
        target = patchify(imgs.float(), self.patch_size)
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + _NORM_PIX_EPS).sqrt()
        return target, mean, std

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean over removed patches of the per-patch MSE between ``pred`` and the pixels (over
        every patch for the plain autoencoder, ``mask_ratio`` 0, which removes none)."""
        target, mean, std = self._target(imgs)  # [B, L, p*p*C], [B, L, 1], [B, L, 1]
        if self.norm_pix_loss:
            target = (target - mean) / std
        per_patch = (pred.float() - target).pow(2).mean(dim=-1)  # [B, L]
        if self.mask_ratio == 0:
            return per_patch.mean()
        return (per_patch * mask).sum() / mask.sum()

    def training_step(self, views: list[Tensor]) -> StepOutput:
        """One view ``[B, C, H, W]`` -> reconstruction loss on its masked patches."""
        if len(views) != 1:
            raise ValueError(f"MAE takes exactly 1 view per image, got {len(views)}")
        (imgs,) = views  # [B, C, H, W], normalised
        latent, mask, ids_restore = self.forward_encoder(imgs)
        pred = self.forward_decoder(latent, ids_restore)  # [B, L, p*p*C]
        loss = self.forward_loss(imgs, pred, mask)
        # Collapse diagnostic on the mean-pooled visible tokens (what the encoder produced).
        pooled = latent[:, 1:].mean(dim=1).detach().float()  # [B, D]
        # The encoder's features of the visible patches, pooled as evaluation pools (cls/mean).
        features = latent[:, 0].detach() if self.encoder.pool == "cls" else pooled
        logs = {"embedding_std": embedding_std(pooled)}
        return StepOutput(loss, logs, pooled, features=features)

    @torch.no_grad()
    def reconstruct(
        self, imgs: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mask ``imgs [B, C, H, W]`` (normalised), predict them back.

        Returns:
            ``pred_imgs [B, C, H, W]`` -- the decoder's prediction of every patch, in the input's
            (normalised) pixel space; with ``norm_pix_loss`` each predicted patch is mapped back
            with the mean and variance of the true patch (as the MAE demo does: it borrows
            statistics of hidden patches, so it shows structure, not the model's brightness),
            and ``mask_imgs [B, C, H, W]`` -- 1 where a patch was removed, 0 where visible.
        """
        latent, mask, ids_restore = self.forward_encoder(imgs, generator)
        pred = self.forward_decoder(latent, ids_restore).float()  # [B, L, p*p*C]
        if self.norm_pix_loss:
            _, mean, std = self._target(imgs)
            pred = pred * std + mean
        grid = (imgs.shape[-2] // self.patch_size, imgs.shape[-1] // self.patch_size)
        mask_patches = mask.unsqueeze(-1).expand_as(pred)  # [B, L, p*p*C]
        pred_imgs = unpatchify(pred, self.patch_size, self.in_channels, grid)
        mask_imgs = unpatchify(mask_patches, self.patch_size, self.in_channels, grid)
        return pred_imgs, mask_imgs
