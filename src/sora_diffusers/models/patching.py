"""Spacetime patches: the tokens of `DiTVideoTransformer3D`.

Tokens are ordered frame-major, (t, h, w), so the tokens of one latent frame are contiguous. Per-frame modulation
(per-frame timesteps) relies on that order: `(B, S, D)` views as `(B, T', H'*W', D)`.
"""

import torch


def check_patchable(shape: tuple[int, ...], patch_size: tuple[int, int, int], name: str = "hidden_states") -> None:
    """Raise `ValueError` unless `shape = (B, C, T, H, W)` splits into whole `patch_size` patches."""
    if len(shape) != 5:
        raise ValueError(
            f"`{name}` must be 5-D (batch_size, channels, frames, height, width), got shape {tuple(shape)}."
        )
    for axis, size, patch in zip(("frames", "height", "width"), shape[2:], patch_size):
        if size < patch or size % patch:
            lower, upper = max(patch, size // patch * patch), (size // patch + 1) * patch
            raise ValueError(
                f"`{name}` {axis}={size} must be a positive multiple of the patch size {patch} "
                f"(patch_size={tuple(patch_size)}); nearest valid values: {lower} or {upper}."
            )


def patch_grid(shape: tuple[int, ...], patch_size: tuple[int, int, int]) -> tuple[int, int, int]:
    """(B, C, T, H, W) -> the token grid (T', H', W') = (T // p_t, H // p_h, W // p_w)."""
    return tuple(size // patch for size, patch in zip(shape[2:], patch_size))


def patchify(x: torch.Tensor, patch_size: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, S, p_t*p_h*p_w*C); inverse of `unpatchify`.

    einops: 'b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)'
    """
    B, C, T, H, W = x.shape
    p_t, p_h, p_w = patch_size
    x = x.reshape(B, C, T // p_t, p_t, H // p_h, p_h, W // p_w, p_w)  # (B, C, T', pt, H', ph, W', pw)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, T', H', W', pt, ph, pw, C)
    return x.reshape(B, -1, p_t * p_h * p_w * C)  # (B, S, pt*ph*pw*C)


def unpatchify(x: torch.Tensor, grid: tuple[int, int, int], patch_size: tuple[int, int, int]) -> torch.Tensor:
    """(B, S, p_t*p_h*p_w*C) -> (B, C, T, H, W) for the token grid (T', H', W'); inverse of `patchify`.

    einops: 'b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)'
    """
    B = x.shape[0]
    T_, H_, W_ = grid
    p_t, p_h, p_w = patch_size
    x = x.reshape(B, T_, H_, W_, p_t, p_h, p_w, -1)  # (B, T', H', W', pt, ph, pw, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, T', pt, H', ph, W', pw)
    return x.reshape(B, x.shape[1], T_ * p_t, H_ * p_h, W_ * p_w)  # (B, C, T, H, W)


def conv3d_weight_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """A patch-embedding `nn.Conv3d` weight (D, C, pt, ph, pw) -> the equivalent `nn.Linear` weight (D, pt*ph*pw*C).

    A Conv3d whose stride equals its kernel is a linear map of each patch; this reorders its weight to `patchify`'s
    (pt, ph, pw, C) feature order.
    """
    return weight.permute(0, 2, 3, 4, 1).reshape(weight.shape[0], -1)  # (D, pt*ph*pw*C)


def linear_weight_to_conv3d(weight: torch.Tensor, in_channels: int, patch_size: tuple[int, int, int]) -> torch.Tensor:
    """The inverse of `conv3d_weight_to_linear`: (D, pt*ph*pw*C) -> (D, C, pt, ph, pw)."""
    p_t, p_h, p_w = patch_size
    weight = weight.reshape(weight.shape[0], p_t, p_h, p_w, in_channels)  # (D, pt, ph, pw, C)
    return weight.permute(0, 4, 1, 2, 3).contiguous()  # (D, C, pt, ph, pw)
