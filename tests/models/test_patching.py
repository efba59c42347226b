import pytest
import torch

from sora_diffusers.models.patching import check_patchable, conv3d_weight_to_linear, patch_grid, patchify, unpatchify


@pytest.mark.parametrize("patch_size", [(1, 2, 2), (2, 2, 2), (1, 1, 1), (2, 4, 2)])
def test_unpatchify_inverts_patchify(patch_size):
    x = torch.randn(2, 3, 4, 8, 12)
    tokens = patchify(x, patch_size)
    grid = patch_grid(x.shape, patch_size)
    assert tokens.shape == (2, grid[0] * grid[1] * grid[2], 3 * patch_size[0] * patch_size[1] * patch_size[2])
    assert torch.equal(unpatchify(tokens, grid, patch_size), x)


def test_token_order_matches_conv3d_patch_embedding():
    """A stride-p Conv3d flattened (t, h, w) equals Linear(patchify(x)) with the reordered conv weight."""
    patch_size = (2, 2, 3)
    conv = torch.nn.Conv3d(3, 5, kernel_size=patch_size, stride=patch_size)
    x = torch.randn(2, 3, 4, 6, 9)
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, S, D) in Wan's token order
    got = torch.nn.functional.linear(patchify(x, patch_size), conv3d_weight_to_linear(conv.weight), conv.bias)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_tokens_are_frame_major():
    """Per-frame modulation views (B, S, D) as (B, T', H'W', D): token s belongs to frame s // (H'W')."""
    x = torch.arange(3.0).view(1, 1, 3, 1, 1).expand(1, 1, 3, 4, 6).contiguous()  # value = frame index
    tokens = patchify(x, (1, 2, 2))  # (1, 18, 4)
    assert torch.equal(tokens[0, :, 0], torch.arange(3.0).repeat_interleave(6))


def test_check_patchable_names_argument_and_nearest_values():
    with pytest.raises(ValueError, match=r"`hidden_states` must be 5-D"):
        check_patchable((2, 4, 8, 8), (1, 2, 2))
    with pytest.raises(ValueError, match=r"height=7 must be a positive multiple of the patch size 2.*6 or 8"):
        check_patchable((1, 4, 3, 7, 8), (1, 2, 2))
