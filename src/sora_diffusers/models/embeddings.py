"""Position and condition embeddings of `DiTVideoTransformer3D`: 3D RoPE for any grid, timestep and text embedding."""

import torch
from diffusers.models.embeddings import PixArtAlphaTextProjection, TimestepEmbedding, Timesteps
from torch import nn


# ---- 3D rotary position embedding --------------------------------------------------------------------------------


def rope_axes_dims(attention_head_dim: int) -> tuple[int, int, int]:
    """Split a head's channels over (t, h, w) as Wan 2.1 does: h and w get 2 * (D // 6) each, t the rest."""
    h_dim = w_dim = 2 * (attention_head_dim // 6)
    return attention_head_dim - h_dim - w_dim, h_dim, w_dim


def rope_angles_1d(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """(L,) positions -> (L, dim // 2) rotation angles pos * theta^(-2i/dim), computed in float64 (exact for long grids)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device)[: dim // 2] / dim)
    return torch.outer(positions.to(torch.float64), inv_freq)


def rope_freqs_3d(
    grid: tuple[int, int, int],
    axes_dims: tuple[int, int, int],
    theta: float = 10000.0,
    device: torch.device | None = None,
    frame_offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles of every token of a (T', H', W') grid, for whatever grid arrives.

    Returns two float32 tensors of shape (1, S, 1, D // 2), S = T'*H'*W' in the (t, h, w) token order of `patchify`:
    channel pair i of a head is rotated by the angle of the axis that owns it (t first, then h, then w).
    """
    T_, H_, W_ = grid
    angles = [
        rope_angles_1d(torch.arange(size, device=device) + offset, dim, theta)
        for size, dim, offset in zip(grid, axes_dims, (frame_offset, 0, 0))
    ]  # (T', d_t/2), (H', d_h/2), (W', d_w/2)
    angles = torch.cat(
        [
            angles[0][:, None, None].expand(T_, H_, W_, -1),
            angles[1][None, :, None].expand(T_, H_, W_, -1),
            angles[2][None, None, :].expand(T_, H_, W_, -1),
        ],
        dim=-1,
    ).reshape(1, T_ * H_ * W_, 1, -1)  # (1, S, 1, D/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs (x[2i], x[2i+1]) of x (B, S, N, D) by angles given as cos/sin (1, S, 1, D/2).

    Same convention as Wan 2.1 (and diffusers' `repeat_interleave_real=True`), so converted weights see the same
    positions. Computed as one complex multiply in fp32 (6x faster on CPU than the pairwise real formula, measured);
    the real formula serves backends without complex support (MPS, torch.compile graphs).
    """
    if x.device.type == "mps" or torch.compiler.is_compiling():
        x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, S, N, D/2) each
        rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, S, N, D/2, 2)
        return rotated.flatten(-2).type_as(x)  # (B, S, N, D)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # (B, S, N, D/2) complex
    return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).type_as(x)  # (B, S, N, D)


class RotaryPosEmbed3D(nn.Module):
    """Module wrapper around `rope_freqs_3d` so context parallelism (`_cp_plan`) can split its outputs by token."""

    def __init__(self, axes_dims: tuple[int, int, int], theta: float = 10000.0):
        super().__init__()
        self.axes_dims = tuple(axes_dims)
        self.theta = theta

    def forward(
        self, grid: tuple[int, int, int], device: torch.device, frame_offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_freqs_3d(grid, self.axes_dims, self.theta, device=device, frame_offset=frame_offset)


# ---- timestep and text conditioning --------------------------------------------------------------------------------


class TimeTextEmbedding(nn.Module):
    """Timesteps (B, T_m) -> time embedding `temb` (B, T_m, D) and modulation `timestep_proj` (B, T_m, 6, D); text
    tokens (B, L, D_text) -> (B, L, D).

    T_m is 1 when one timestep drives the whole video and T' when every latent frame has its own.
    Module names follow diffusers' `WanTimeTextImageEmbedding`, so Wan weights and LoRAs address the same keys.
    """

    def __init__(self, dim: int, time_freq_dim: int, text_embed_dim: int, num_modulations: int = 6):
        super().__init__()
        self.num_modulations = num_modulations
        self.timesteps_proj = Timesteps(num_channels=time_freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(in_channels=time_freq_dim, time_embed_dim=dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, num_modulations * dim)
        self.text_embedder = PixArtAlphaTextProjection(text_embed_dim, dim, act_fn="gelu_tanh")

    def forward(
        self, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T_m = timestep.shape
        t_freq = self.timesteps_proj(timestep.flatten())  # (B*T_m, F)
        embedder_dtype = self.time_embedder.linear_1.weight.dtype
        if t_freq.dtype != embedder_dtype and embedder_dtype != torch.int8:
            t_freq = t_freq.to(embedder_dtype)
        temb = self.time_embedder(t_freq).type_as(encoder_hidden_states)  # (B*T_m, D)
        timestep_proj = self.time_proj(self.act_fn(temb))  # (B*T_m, 6*D)
        temb = temb.unflatten(0, (B, T_m))  # (B, T_m, D)
        timestep_proj = timestep_proj.unflatten(0, (B, T_m)).unflatten(2, (self.num_modulations, -1))  # (B, T_m, 6, D)
        return temb, timestep_proj, self.text_embedder(encoder_hidden_states)
