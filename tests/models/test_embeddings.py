import math

import pytest
import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed

from sora_diffusers.models.embeddings import apply_rope, rope_axes_dims, rope_freqs_3d


def test_rope_axes_dims_match_wan_split():
    assert rope_axes_dims(128) == (44, 42, 42)
    assert rope_axes_dims(12) == (4, 4, 4)


@pytest.mark.parametrize("grid", [(1, 1, 1), (3, 4, 6), (5, 7, 3), (2, 9, 16)])
def test_rope_shapes_for_any_grid(grid):
    cos, sin = rope_freqs_3d(grid, (4, 4, 4))
    S = math.prod(grid)
    assert cos.shape == sin.shape == (1, S, 1, 6)
    assert cos.dtype == torch.float32
    torch.testing.assert_close(cos**2 + sin**2, torch.ones_like(cos))


def test_rope_angles_per_axis_match_diffusers_1d_embedding():
    """Channel pairs of each axis rotate by diffusers' 1-D rotary angles of that axis's position."""
    grid, axes = (3, 5, 4), (4, 6, 2)
    cos, _ = rope_freqs_3d(grid, axes)
    cos = cos.reshape(*grid, -1)  # (T', H', W', 6)
    for axis, (size, dim) in enumerate(zip(grid, axes)):
        ref_cos, _ = get_1d_rotary_pos_embed(dim, size, 10000.0, use_real=True, repeat_interleave_real=True)
        start = sum(axes[:axis]) // 2
        index = [0, 0, 0]
        for pos in range(size):
            index[axis] = pos
            got = cos[tuple(index)][start : start + dim // 2]
            torch.testing.assert_close(got, ref_cos[pos, 0::2].float())


def test_rope_scores_depend_only_on_relative_position():
    """<rope(q, p1), rope(k, p2)> == <rope(q, p1 + d), rope(k, p2 + d)> for a shift d along each axis."""
    axes = (4, 4, 4)
    q, k = torch.randn(1, 1, 1, 12), torch.randn(1, 1, 1, 12)

    def score(pos_q, pos_k, grid=(8, 8, 8)):
        cos, sin = rope_freqs_3d(grid, axes)
        cos, sin = cos.reshape(*grid, -1), sin.reshape(*grid, -1)
        rq = apply_rope(q, cos[pos_q].view(1, 1, 1, -1), sin[pos_q].view(1, 1, 1, -1))
        rk = apply_rope(k, cos[pos_k].view(1, 1, 1, -1), sin[pos_k].view(1, 1, 1, -1))
        return (rq * rk).sum().item()

    base = score((1, 2, 3), (0, 5, 1))
    assert score((4, 2, 3), (3, 5, 1)) == pytest.approx(base, abs=1e-5)  # shift in t
    assert score((1, 4, 6), (0, 7, 4)) == pytest.approx(base, abs=1e-5)  # shift in h and w
    assert score((2, 2, 3), (0, 5, 1)) != pytest.approx(base, abs=1e-3)  # a different offset changes it


def test_apply_rope_keeps_norm_and_dtype():
    x = torch.randn(2, 12, 3, 12, dtype=torch.bfloat16)
    cos, sin = rope_freqs_3d((1, 3, 4), (4, 4, 4))
    y = apply_rope(x, cos, sin)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float().norm(dim=-1), x.float().norm(dim=-1), atol=0.05, rtol=0.02)
