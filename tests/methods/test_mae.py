import numpy as np
import pytest
import torch

from selfsup.backbones.vit import VisionTransformer
from selfsup.methods.mae import MAE
from selfsup.nn.masking import patchify, random_masking
from selfsup.views import MultiViewTransform, ViewSpec

MEAN, STD = [0.5], [0.25]


def _view(size: int = 16) -> ViewSpec:
    return ViewSpec(size=size, crop_scale=(0.2, 1.0), jitter_p=0, gray_p=0, blur_p=0)


def _mae(
    norm_pix_loss: bool = False, views: int = 1, mask_ratio: float = 0.75, size: int = 16
) -> MAE:
    torch.manual_seed(0)
    vit = VisionTransformer(16, 4, in_channels=1, embed_dim=32, depth=2, num_heads=2)
    recipe = MultiViewTransform([_view(size)] * views, MEAN, STD)
    return MAE(
        vit,
        recipe,
        mask_ratio,
        decoder_dim=24,
        decoder_depth=1,
        decoder_heads=2,
        norm_pix_loss=norm_pix_loss,
    )


def _numpy_loss(imgs: np.ndarray, pred: np.ndarray, mask: np.ndarray, p: int, norm: bool) -> float:
    """Hand computation, one patch at a time (1-channel images)."""
    batch, _, _, width = imgs.shape
    cols = width // p
    total, count = 0.0, 0
    for b in range(batch):
        for idx in range(mask.shape[1]):
            if mask[b, idx] == 0:
                continue
            r, c = divmod(idx, cols)
            target = imgs[b, 0, r * p : (r + 1) * p, c * p : (c + 1) * p].reshape(-1)
            if norm:
                target = (target - target.mean()) / np.sqrt(target.var(ddof=1) + 1e-6)
            total += float(np.mean((pred[b, idx] - target) ** 2))
            count += 1
    return total / count


def test_encoder_never_sees_mask_tokens():
    method = _mae()
    seen: dict[str, list[tuple[int, ...]]] = {"encoder": [], "decoder": []}
    first_input: list[torch.Tensor] = []
    for block in method.encoder.blocks:
        block.register_forward_hook(lambda m, i, o: seen["encoder"].append(tuple(i[0].shape)))
    method.encoder.blocks[0].register_forward_hook(lambda m, i, o: first_input.append(i[0]))
    for block in method.decoder_blocks:
        block.register_forward_hook(lambda m, i, o: seen["decoder"].append(tuple(i[0].shape)))
    imgs = torch.randn(3, 1, 16, 16)
    latent, mask, ids_restore = method.forward_encoder(imgs, torch.Generator().manual_seed(5))
    method.forward_decoder(latent, ids_restore)
    keep = 4  # int(16 * 0.25)
    assert seen["encoder"] == [(3, 1 + keep, 32)] * 2  # cls + visible patches only
    assert seen["decoder"] == [(3, 1 + 16, 24)]  # the decoder sees every position
    assert latent.shape == (3, 1 + keep, 32)
    # The encoder's input tokens are exactly the visible patch tokens of the same draw.
    visible, mask_ref, _ = random_masking(
        method.encoder.patch_tokens(imgs), 0.75, torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(first_input[0][:, 1:], visible)
    assert torch.equal(mask, mask_ref)


def test_decoder_puts_mask_tokens_at_removed_positions_in_image_order():
    method = _mae()
    inputs: list[torch.Tensor] = []
    method.decoder_blocks[0].register_forward_hook(lambda m, i, o: inputs.append(i[0]))
    latent, mask, ids_restore = method.forward_encoder(torch.randn(2, 1, 16, 16))
    pred = method.forward_decoder(latent, ids_restore)
    assert pred.shape == (2, 16, 16)  # [B, L, p*p*C]
    tokens = inputs[0] - method.decoder_pos_embed  # [2, 17, 24]
    embedded = method.decoder_embed(latent)  # [2, 1 + 4, 24]
    ids_keep = ids_restore.argsort(dim=1)[:, :4]
    for b in range(2):
        torch.testing.assert_close(tokens[b, 0], embedded[b, 0])  # cls first
        for pos in range(16):
            if mask[b, pos] == 1:
                torch.testing.assert_close(tokens[b, 1 + pos], method.mask_token[0, 0])
        for slot, pos in enumerate(ids_keep[b].tolist()):
            torch.testing.assert_close(tokens[b, 1 + pos], embedded[b, 1 + slot])


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_loss_matches_hand_computation(norm_pix_loss):
    method = _mae(norm_pix_loss)
    imgs = torch.randn(3, 1, 16, 16)
    pred = torch.randn(3, 16, 16)
    mask = random_masking(torch.zeros(3, 16, 1), 0.75, torch.Generator().manual_seed(0))[1]
    loss = method.forward_loss(imgs, pred, mask)
    expected = _numpy_loss(imgs.numpy(), pred.numpy(), mask.numpy(), 4, norm_pix_loss)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_loss_ignores_visible_patches_and_depends_on_masked_ones():
    method = _mae()
    imgs = torch.randn(2, 1, 16, 16)
    pred = torch.randn(2, 16, 16)
    mask = random_masking(torch.zeros(2, 16, 1), 0.75, torch.Generator().manual_seed(1))[1]
    base = method.forward_loss(imgs, pred, mask)
    visible = (mask == 0).unsqueeze(-1)
    changed_visible = torch.where(visible, pred + 10.0, pred)
    changed_masked = torch.where(visible, pred, pred + 0.5)
    assert method.forward_loss(imgs, changed_visible, mask).item() == pytest.approx(base.item())
    assert method.forward_loss(imgs, changed_masked, mask).item() != pytest.approx(base.item())
    # A perfect prediction of the masked patches gives zero, whatever is predicted elsewhere.
    perfect = torch.where(visible, pred, patchify(imgs, 4))
    assert method.forward_loss(imgs, perfect, mask).item() == pytest.approx(0.0, abs=1e-12)


def test_training_step_contract():
    method = _mae()
    views = method.make_views(torch.randint(0, 256, (4, 1, 20, 20), dtype=torch.uint8))
    out = method.training_step(views)
    assert out.loss.ndim == 0 and out.loss.requires_grad
    assert set(out.logs) == {"embedding_std"}
    assert out.embeddings is not None and out.embeddings.shape == (4, 32)
    assert not out.embeddings.requires_grad
    out.loss.backward()
    assert method.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert method.mask_token.grad.abs().sum() > 0
    assert method.encoder is method.backbone
    assert method.encoder(views[0]).shape == (4, 32)  # unmasked feature extractor
    state = method.state_dict()
    assert "decoder_pos_embed" in state and "backbone.pos_embed" in state
    with pytest.raises(ValueError, match="exactly 1 view"):
        method.training_step(views * 2)


def test_constructor_refuses_bad_settings():
    with pytest.raises(ValueError, match="exactly 1 view"):
        _mae(views=2)
    for ratio in (1.0, -0.25):
        with pytest.raises(ValueError, match=r"strictly between 0 and 1.*MAE uses 0\.75"):
            _mae(mask_ratio=ratio)
    with pytest.raises(ValueError, match="masks no patch"):  # > 0 but removes no patch of 16
        _mae(mask_ratio=1e-9)
    with pytest.raises(ValueError, match="make the view size equal"):
        _mae(size=20)


def test_mask_ratio_zero_is_the_plain_autoencoder():
    """Ratio 0: the encoder sees every patch in image order and the loss is the mean squared
    error over all patches (the paper's "no masking" baseline), not a NaN masked mean."""
    method = _mae(mask_ratio=0.0)
    imgs = torch.randn(3, 1, 16, 16)
    tokens = method.encoder.patch_tokens(imgs)  # [3, 16, 32]
    seen: list[torch.Tensor] = []
    method.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0]))
    latent, mask, ids_restore = method.forward_encoder(imgs)
    assert latent.shape == (3, 1 + 16, 32)
    torch.testing.assert_close(seen[0][:, 1:], tokens)  # every patch, unshuffled
    assert torch.equal(mask, torch.zeros(3, 16))
    assert torch.equal(ids_restore, torch.arange(16).expand(3, -1))
    # Unmasked, the encoder's cls features are those of the plain feature extractor.
    assert method.encoder.pool == "cls"
    torch.testing.assert_close(latent[:, 0], method.encoder(imgs))
    pred = method.forward_decoder(latent, ids_restore)  # [3, 16, 16]
    loss = method.forward_loss(imgs, pred, mask)
    expected = (pred - patchify(imgs, 4)).pow(2).mean()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    views = method.make_views(torch.randint(0, 256, (4, 1, 20, 20), dtype=torch.uint8))
    out = method.training_step(views)
    out.loss.backward()
    assert method.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert method.mask_token.grad is None or method.mask_token.grad.abs().sum() == 0  # unused


def test_reconstruct_returns_images_and_the_mask():
    method = _mae(norm_pix_loss=True)
    imgs = torch.randn(2, 1, 16, 16)
    pred_imgs, mask_imgs = method.reconstruct(imgs, torch.Generator().manual_seed(7))
    assert pred_imgs.shape == mask_imgs.shape == (2, 1, 16, 16)
    assert set(mask_imgs.unique().tolist()) == {0.0, 1.0}
    assert mask_imgs.mean().item() == pytest.approx(0.75)  # 12 of 16 patches removed
    # norm_pix_loss: each predicted patch is mapped back with its true patch's mean and std.
    latent, _, ids_restore = method.forward_encoder(imgs, torch.Generator().manual_seed(7))
    raw = method.forward_decoder(latent, ids_restore)
    target = patchify(imgs, 4)
    std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(patchify(pred_imgs, 4), raw * std + target.mean(-1, keepdim=True))


def test_a_few_adamw_steps_reduce_the_loss():
    method = _mae()
    g = torch.Generator().manual_seed(0)
    # Structured images: a bright square at a random place on a dark background.
    images = torch.zeros(32, 1, 16, 16, dtype=torch.uint8)
    corners = torch.randint(0, 10, (32, 2), generator=g)
    for i, (r, c) in enumerate(corners.tolist()):
        images[i, :, r : r + 6, c : c + 6] = 220
    fixed = method.make_views(images, torch.Generator().manual_seed(1))

    def held_out_loss() -> float:
        with torch.no_grad():
            latent, mask, ids = method.forward_encoder(fixed[0], torch.Generator().manual_seed(2))
            return method.forward_loss(fixed[0], method.forward_decoder(latent, ids), mask).item()

    before = held_out_loss()
    optimizer = torch.optim.AdamW(
        method.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05
    )
    for _ in range(40):
        loss = method.training_step(method.make_views(images, g)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < 0.5 * before, (before, after)
