"""Encoder and decoder networks of `SpacetimeVAE` (Wan 2.1's architecture, or Wan 2.2's with `is_residual`), built
from the causal layers of `causal_conv.py`. Every layer takes `(x, cache)`, x of shape (B, C, T, H, W).
"""

from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .causal_conv import (
    AttentionBlock,
    CausalCache,
    CausalConv3d,
    ChannelRMSNorm,
    MidBlock,
    Resample,
    ResidualBlock,
    ResidualDownBlock,
    ResidualUpBlock,
    UpBlock,
)


# ---------------------------------------------------------------------------------------------------------------------
# Encoder and decoder. Every layer takes `(x, cache)`, x of shape (B, C, T, H, W); the layers are in causal_conv.py.
# ---------------------------------------------------------------------------------------------------------------------


def _run_layer(owner: nn.Module, layer: Callable, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
    """`layer(x, cache)`, through gradient checkpointing when `owner` has it switched on and grad is enabled."""
    if torch.is_grad_enabled() and owner.gradient_checkpointing:
        return owner._gradient_checkpointing_func(layer, x, cache)
    return layer(x, cache)


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanEncoder3d
class Encoder3d(nn.Module):
    """(B, C_in, T, H, W) -> (B, out_channels, T', H', W'): conv_in, per level residual blocks (+ attention) and a
    downsample, a middle block, then norm -> SiLU -> conv_out. Arguments as in `SpacetimeVAE`; with `is_residual`
    each level is one `ResidualDownBlock` (Wan 2.2: a shortcut around the level, no attention)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_dim: int,
        dim_mult: Sequence[int],
        num_res_blocks: int,
        attn_scales: Sequence[float],
        temporal_downsample: Sequence[bool],
        dropout: float,
        is_residual: bool = False,
    ) -> None:
        super().__init__()
        dims = [base_dim * mult for mult in (1, *dim_mult)]
        self.conv_in = CausalConv3d(in_channels, dims[0], 3, padding=1)

        # 1. One level per `dim_mult` entry; all but the last end with a 2x downsample (and 2x in time if asked).
        self.down_blocks = nn.ModuleList()
        scale = 1.0  # resolution relative to the input, matched against `attn_scales`
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            last = level == len(dim_mult) - 1
            if is_residual:
                time = not last and bool(temporal_downsample[level])
                self.down_blocks.append(ResidualDownBlock(in_dim, out_dim, num_res_blocks, dropout, time, not last))
                continue
            for _ in range(num_res_blocks):
                self.down_blocks.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    self.down_blocks.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if level < len(dim_mult) - 1:
                self.down_blocks.append(
                    Resample(out_dim, "downsample3d" if temporal_downsample[level] else "downsample2d")
                )
                scale /= 2

        # 2. Middle block and output head.
        self.mid_block = MidBlock(dims[-1], dropout)
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        x = self.conv_in(x, cache)  # (B, base_dim, T, H, W)
        for layer in self.down_blocks:
            x = _run_layer(self, layer, x, cache)  # down to (B, C_top, T', H', W')
        x = _run_layer(self, self.mid_block, x, cache)
        x = self.conv_out(F.silu(self.norm_out(x)), cache).contiguous()  # (B, out_channels, T', H', W')
        if cache is not None:
            cache.end_first_chunk()
        return x


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanDecoder3d
class Decoder3d(nn.Module):
    """(B, z_dim, T', H', W') -> (B, out_channels, T, H, W): conv_in, a middle block, per level residual blocks and
    an upsample, then norm -> SiLU -> conv_out. Arguments as in `SpacetimeVAE`; `temporal_upsample` is the encoder's
    `temporal_downsample` reversed. With `is_residual` each level is one `ResidualUpBlock` (Wan 2.2)."""

    def __init__(
        self,
        z_dim: int,
        out_channels: int,
        base_dim: int,
        dim_mult: Sequence[int],
        num_res_blocks: int,
        temporal_upsample: Sequence[bool],
        dropout: float,
        is_residual: bool = False,
    ) -> None:
        super().__init__()
        dims = [base_dim * mult for mult in (dim_mult[-1], *reversed(dim_mult))]
        self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0], dropout)

        self.up_blocks = nn.ModuleList()
        for level, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if is_residual:  # Wan 2.2: the upsamplers keep their channels
                up = level < len(dim_mult) - 1
                time = up and bool(temporal_upsample[level])
                self.up_blocks.append(ResidualUpBlock(in_dim, out_dim, num_res_blocks, dropout, time, up))
                continue
            in_dim = in_dim // 2 if level > 0 else in_dim  # the previous level's upsampler halved the channels
            mode = None
            if level < len(dim_mult) - 1:
                mode = "upsample3d" if temporal_upsample[level] else "upsample2d"
            self.up_blocks.append(UpBlock(in_dim, out_dim, num_res_blocks, dropout, mode))

        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1)
        self.gradient_checkpointing = False

    def _head(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        # contiguous: CPU inference runs channels-last (see CausalConv3d), callers get the usual layout
        return self.conv_out(F.silu(self.norm_out(x, inplace=True), inplace=True), cache).contiguous()

    def stream(
        self, x: torch.Tensor, cache: CausalCache | None = None, max_frames: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Yield the decoded frames of `x` (B, z_dim, T', H', W') in time order, as (B, out_channels, n, H, W) blocks.

        When a stage outputs more than `max_frames` frames (time upsampling doubles them), the following stages
        take them `max_frames` at a time: no layer ever holds more than `max_frames` frames at its resolution.
        """
        stages = [self.conv_in, self.mid_block, *self.up_blocks, self._head]
        yield from self._run_stages(x, stages, cache, max_frames)

    def _run_stages(
        self, x: torch.Tensor, stages: list[Callable], cache: CausalCache | None, max_frames: int | None
    ) -> Iterator[torch.Tensor]:
        for i, stage in enumerate(stages):
            x = _run_layer(self, stage, x, cache)
            if max_frames is not None and x.shape[2] > max_frames and i + 1 < len(stages):
                for part in x.split(max_frames, dim=2):  # depth first: frame order is kept in every layer
                    yield from self._run_stages(part, stages[i + 1 :], cache, max_frames)
                return
        yield x
        if cache is not None:
            cache.end_first_chunk()  # frame 0 has left the last stage

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """Decode `x` in one piece (no splitting)."""
        (frames,) = self.stream(x, cache)
        return frames
