import pytest
import torch

from selfsup.nn.masking import num_kept, patchify, random_masking, unpatchify


def test_patchify_layout_matches_a_python_loop():
    imgs = torch.randn(2, 3, 8, 12)
    p = 4
    patches = patchify(imgs, p)
    assert patches.shape == (2, 6, p * p * 3)
    for b in range(2):
        for r in range(2):
            for c in range(3):
                # (row in patch, column in patch, channel), channel fastest -- MAE's layout.
                expected = [
                    imgs[b, ch, r * p + i, c * p + j].item()
                    for i in range(p)
                    for j in range(p)
                    for ch in range(3)
                ]
                assert patches[b, r * 3 + c].tolist() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("shape", "p", "grid"), [((2, 1, 28, 28), 4, None), ((3, 3, 8, 12), 2, (4, 6))]
)
def test_unpatchify_inverts_patchify(shape, p, grid):
    imgs = torch.randn(shape)
    assert torch.equal(unpatchify(patchify(imgs, p), p, shape[1], grid), imgs)
    patches = torch.randn(shape[0], imgs.numel() // (shape[0] * p * p * shape[1]), p * p * shape[1])
    assert torch.equal(patchify(unpatchify(patches, p, shape[1], grid), p), patches)


def test_patchify_and_unpatchify_refuse_bad_sizes():
    with pytest.raises(ValueError, match="not divisible by patch_size=4"):
        patchify(torch.zeros(1, 1, 10, 8), 4)
    with pytest.raises(ValueError, match="need 48"):
        unpatchify(torch.zeros(1, 4, 16), 4, 3)
    with pytest.raises(ValueError, match="pass grid"):
        unpatchify(torch.zeros(1, 6, 16), 4, 1)


def test_num_kept_follows_mae_rule_without_round_off():
    # MAE keeps floor(L * (1 - ratio)) patches: 196 * 0.25 = 49, 49 * 0.25 = 12.25, 64 * 0.25 = 16,
    # 49 * 0.5 = 24.5, 50 * 0.67 = 33.5, 256 * 0.1 = 25.6.
    cases = [(196, 0.75, 49), (49, 0.75, 12), (64, 0.75, 16), (49, 0.5, 24), (50, 0.33, 33)]
    cases.append((256, 0.9, 25))
    for length, ratio, kept in cases:
        assert num_kept(length, ratio) == kept, (length, ratio)
    # 10 * (1 - 0.9) is 0.9999999999999998 in floating point: a plain int() would keep nothing.
    assert num_kept(10, 0.9) == 1


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_mask_ratio_outside_open_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"strictly between 0 and 1.*MAE uses 0\.75"):
        random_masking(torch.zeros(2, 16, 4), ratio)


def test_mask_ratio_that_keeps_or_masks_nothing_is_refused():
    with pytest.raises(ValueError, match="keeps no visible patch"):
        num_kept(4, 0.8)
    with pytest.raises(ValueError, match="masks no patch"):
        num_kept(4, 1e-9)


def test_each_sample_keeps_exactly_l_keep_tokens_with_its_own_mask():
    x = torch.randn(64, 49, 8)
    visible, mask, ids_restore = random_masking(x, 0.75, torch.Generator().manual_seed(0))
    keep = 12  # int(49 * 0.25)
    assert visible.shape == (64, keep, 8)
    assert mask.dtype == torch.float32 and ids_restore.dtype == torch.int64
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask.sum(dim=1), torch.full((64,), 49.0 - keep))
    assert len({tuple(row.tolist()) for row in mask}) == 64  # per-sample masks differ
    # Across many samples every position is masked about 75% of the time (uniform masking).
    many = random_masking(torch.zeros(4000, 49, 1), 0.75, torch.Generator().manual_seed(1))[1]
    assert many.mean(dim=0).sub(37 / 49).abs().max().item() < 0.04


def test_ids_restore_inverts_the_shuffle_and_mask_marks_the_removed_tokens():
    x = torch.randn(5, 20, 3)
    visible, mask, ids_restore = random_masking(x, 0.6, torch.Generator().manual_seed(2))
    keep = 8
    ids_shuffle = ids_restore.argsort(dim=1)
    shuffled = x.gather(1, ids_shuffle.unsqueeze(-1).expand(-1, -1, 3))  # [B, L, D]
    assert torch.equal(shuffled[:, :keep], visible)
    restored = shuffled.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, 3))
    assert torch.equal(restored, x)
    for b in range(5):
        kept_positions = set(ids_shuffle[b, :keep].tolist())
        expected = [0.0 if i in kept_positions else 1.0 for i in range(20)]
        assert mask[b].tolist() == expected
        # Visible tokens are exactly the rows of x at unmasked positions.
        assert sorted(map(tuple, visible[b].tolist())) == sorted(
            tuple(x[b, i].tolist()) for i in range(20) if mask[b, i] == 0
        )


def test_generator_makes_masks_reproducible():
    x = torch.randn(4, 16, 2)
    a = random_masking(x, 0.75, torch.Generator().manual_seed(3))
    b = random_masking(x, 0.75, torch.Generator().manual_seed(3))
    c = random_masking(x, 0.75, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[1], c[1])
