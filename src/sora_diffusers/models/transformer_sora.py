"""`DiTVideoTransformer3D`: a diffusion transformer over spacetime latent patches, text-conditioned, for any
resolution, aspect ratio and duration, with a timestep per latent frame.

With `patch_size=(1, 2, 2)`, `qk_norm=True`, `cross_attn_norm=True` and Wan's sizes it computes exactly what diffusers'
`WanTransformer3DModel` (Wan 2.1 T2V) computes; `sora_diffusers.loaders.original_checkpoint` converts the weights.
"""

import dataclasses
import functools
import math
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention import AttentionMixin, FeedForward
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.utils import apply_lora_scale
from torch import nn

from ..loaders.single_file import SingleFileMixin
from .attention import SoraAttention
from .embeddings import RotaryPosEmbed3D, TimeTextEmbedding, rope_axes_dims
from .normalization import frames_view, gated_residual, modulate
from .patching import check_patchable, patch_grid, patchify, unpatchify


class DiTVideoBlock(nn.Module):
    """Self-attention (3D RoPE), text cross-attention and a GELU feed-forward, with adaLN-Zero time modulation.

    The modulation `temb` is (B, T_m, 6, D): T_m = 1 (one timestep for the video) or T' (one per latent frame), so
    frames given as clean conditioning (timestep 0) are modulated differently from the frames being denoised.
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        qk_norm: bool = True,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__()
        head_dim = dim // num_heads
        # 1. Self-attention
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = SoraAttention(dim, num_heads, head_dim, qk_norm=qk_norm, eps=eps)
        # 2. Cross-attention over text tokens
        self.attn2 = SoraAttention(dim, num_heads, head_dim, qk_norm=qk_norm, eps=eps, is_cross_attention=True)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        # 3. Feed-forward
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        # (shift, scale, gate) for attention, then for the feed-forward; added to the per-sample modulation
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor],
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        T_m = temb.shape[1]
        # fp32: adaLN is unstable in bf16; (B, T_m, 6, D) -> six (B, T_m, 1, D)
        shift_msa, scale_msa, gate_msa, c_shift, c_scale, c_gate = (self.scale_shift_table + temb.float()).split(1, 2)
        x = frames_view(hidden_states, T_m)  # (B, T_m, S/T_m, D)

        # 1. Self-attention
        h = modulate(self.norm1(x.float()), shift_msa, scale_msa).type_as(x)
        h = self.attn1(h.flatten(1, 2), None, None, rotary_emb)  # (B, S, D)
        x = gated_residual(x.float(), frames_view(h, T_m), gate_msa).type_as(x)

        # 2. Cross-attention
        h = self.norm2(x.float()).type_as(x)
        h = self.attn2(h.flatten(1, 2), encoder_hidden_states, encoder_attention_mask, None)  # (B, S, D)
        x = x + frames_view(h, T_m)

        # 3. Feed-forward
        h = modulate(self.norm3(x.float()), c_shift, c_scale).type_as(x)
        x = gated_residual(x.float(), self.ffn(h).float(), c_gate).type_as(x)
        return x.flatten(1, 2)  # (B, S, D)


def _apply_lora_scale(forward):
    """diffusers' `apply_lora_scale("attention_kwargs")` (scale the active LoRA adapters by
    `attention_kwargs["scale"]` for one call), restoring each adapter's scale exactly afterwards: diffusers resets the
    scales to 1 after `scale=0`, which silently dropped weights set with `set_adapters(..., adapter_weights=...)`."""
    scaled_forward = apply_lora_scale("attention_kwargs")(forward)

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        if (kwargs.get("attention_kwargs") or {}).get("scale", 1.0) == 1.0:
            return scaled_forward(self, *args, **kwargs)
        saved = [(m.scaling, dict(m.scaling)) for m in self.modules() if isinstance(getattr(m, "scaling", None), dict)]
        try:
            return scaled_forward(self, *args, **kwargs)
        finally:
            for scaling, values in saved:
                scaling.update(values)

    return wrapper


class DiTVideoTransformer3D(SingleFileMixin, ModelMixin, ConfigMixin, PeftAdapterMixin, CacheMixin, AttentionMixin):
    r"""
    Diffusion transformer over spacetime latent patches.

    Args:
        patch_size (`tuple[int, int, int]`, defaults to `(1, 2, 2)`): patch (p_t, p_h, p_w) in latent frames/pixels.
        num_attention_heads (`int`, defaults to 12): heads N.
        attention_head_dim (`int`, defaults to 128): channels per head D; the width is N * D.
        in_channels (`int`, defaults to 16): latent channels in.
        out_channels (`int`, *optional*, defaults to 16): latent channels out (`None` = `in_channels`).
        text_dim (`int`, defaults to 4096): width of the text encoder's hidden states.
        freq_dim (`int`, defaults to 256): sinusoidal timestep embedding width.
        ffn_dim (`int`, defaults to 8960): feed-forward hidden width.
        num_layers (`int`, defaults to 30): transformer blocks.
        cross_attn_norm (`bool`, defaults to `True`): affine LayerNorm before cross-attention.
        qk_norm (`bool`, defaults to `True`): RMS-normalise queries and keys across heads.
        eps (`float`, defaults to 1e-6): epsilon of all norms.
        rope_theta (`float`, defaults to 10000.0): RoPE base.
        rope_axes_dim (`tuple[int, int, int]`, *optional*): channels of a head rotated by t, h, w position; even,
            summing to `attention_head_dim`. `None` splits like Wan 2.1.
        per_frame_timesteps (`bool`, defaults to `False`): whether the weights were trained with a timestep per latent
            frame (clean conditioning frames at timestep 0). Read by pipelines to choose how to condition; the forward
            pass accepts per-frame timesteps either way.

    Defaults are the Wan 2.1 T2V 1.3B sizes.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "norm"]
    _no_split_modules = ["DiTVideoBlock"]
    _keep_in_fp32_modules = ["time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _repeated_blocks = ["DiTVideoBlock"]
    # What TaylorSeer caches when its config names no modules: diffusers' default patterns look for modules named
    # `attn`, which this model (named like Wan) does not have, so they would hook nothing.
    _taylorseer_cache_identifiers = [r"blocks\.\d+\.attn1", r"blocks\.\d+\.attn2"]
    _cp_plan = {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)},
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, int, int] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int | None = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: bool = True,
        eps: float = 1e-6,
        rope_theta: float = 10000.0,
        rope_axes_dim: tuple[int, int, int] | None = None,
        per_frame_timesteps: bool = False,
    ) -> None:
        super().__init__()
        _check_config(patch_size, num_attention_heads, attention_head_dim, rope_axes_dim)
        inner_dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels

        # 1. Patch & position embedding (a Linear on `patchify`'s tokens == Wan's stride-p Conv3d)
        self.rope = RotaryPosEmbed3D(rope_axes_dim or rope_axes_dims(attention_head_dim), rope_theta)
        self.patch_embedding = nn.Linear(in_channels * math.prod(patch_size), inner_dim)

        # 2. Condition embeddings
        self.condition_embedder = TimeTextEmbedding(inner_dim, freq_dim, text_dim)

        # 3. Transformer blocks
        self.blocks = nn.ModuleList(
            [
                DiTVideoBlock(inner_dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps)
                for _ in range(num_layers)
            ]
        )

        # 4. Output norm & projection
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)

        self.gradient_checkpointing = False

    def enable_cache(self, config) -> None:
        r"""diffusers' `CacheMixin.enable_cache` (FirstBlockCache, MagCache, TaylorSeer, ...); `SoraPipeline` runs each
        denoising call in a `cache_context`.

        A `TaylorSeerCacheConfig` that names no modules (no `cache_identifiers`, `skip_predict_identifiers` or
        `use_lite_mode`) caches the self- and cross-attention of every block (`blocks.N.attn1`, `blocks.N.attn2`).
        """
        from diffusers.hooks import TaylorSeerCacheConfig

        if (
            isinstance(config, TaylorSeerCacheConfig)
            and not config.use_lite_mode
            and config.cache_identifiers is None
            and config.skip_predict_identifiers is None
        ):
            config = dataclasses.replace(config, cache_identifiers=list(self._taylorseer_cache_identifiers))
        super().enable_cache(config)

    @_apply_lora_scale
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> Transformer2DModelOutput | tuple[torch.Tensor]:
        r"""
        Predict the flow velocity (or whatever the weights were trained for) of a batch of latent videos.

        Args:
            hidden_states (`torch.Tensor` of shape `(B, C, T, H, W)`):
                Noisy latents; T, H, W must be multiples of `patch_size`.
            timestep (`torch.Tensor` of shape `(B,)` or `(B, T')`):
                One timestep per sample, or one per latent frame (T' = T // p_t): frames given as clean
                conditioning carry timestep 0. A 0-d tensor or a number is broadcast to the batch.
            encoder_hidden_states (`torch.Tensor` of shape `(B, L, text_dim)`): text encoder hidden states.
            encoder_attention_mask (`torch.Tensor` of shape `(B, L)`, *optional*):
                1/True for real text tokens, 0/False for padding, which cross-attention then ignores.
            return_dict (`bool`, defaults to `True`): return a `Transformer2DModelOutput` instead of a tuple.
            attention_kwargs (`dict`, *optional*): `{"scale": s}` scales the active LoRA adapters.

        Returns:
            `Transformer2DModelOutput` with `sample` of shape `(B, out_channels, T, H, W)`, or `(sample,)`.
        """
        timestep, encoder_attention_mask = self._check_inputs(
            hidden_states, timestep, encoder_hidden_states, encoder_attention_mask
        )
        p = tuple(self.config.patch_size)
        grid = patch_grid(hidden_states.shape, p)  # (T', H', W')

        # 1. Patch & position embedding
        rotary_emb = self.rope(grid, hidden_states.device)  # 2 x (1, S, 1, D_head/2)
        hidden_states = self.patch_embedding(patchify(hidden_states, p))  # (B, S, D)

        # 2. Condition embeddings
        temb, timestep_proj, encoder_hidden_states = self.condition_embedder(timestep, encoder_hidden_states)
        # temb (B, T_m, D); timestep_proj (B, T_m, 6, D); encoder_hidden_states (B, L, D)

        # 3. Transformer blocks
        block_args = (encoder_hidden_states, timestep_proj, rotary_emb, encoder_attention_mask)
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(block, hidden_states, *block_args)
            else:
                hidden_states = block(hidden_states, *block_args)  # (B, S, D)

        # 4. Output norm, projection & unpatchify
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(2)).split(1, 2)  # 2 x (B, T_m, 1, D)
        x = frames_view(hidden_states, temb.shape[1])  # (B, T_m, S/T_m, D)
        x = modulate(self.norm_out(x.float()), shift.to(x.device), scale.to(x.device)).type_as(hidden_states)
        x = self.proj_out(x.flatten(1, 2))  # (B, S, pt*ph*pw*C_out)
        output = unpatchify(x, grid, p)  # (B, C_out, T, H, W)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _check_inputs(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validate shapes; return the timestep as (B, T_m) and the text mask as bool (B, L) or None (no padding)."""
        check_patchable(hidden_states.shape, tuple(self.config.patch_size))
        B, C = hidden_states.shape[:2]
        if C != self.config.in_channels:
            raise ValueError(
                f"`hidden_states` has {C} channels; this model takes in_channels={self.config.in_channels}."
            )
        T_ = hidden_states.shape[2] // self.config.patch_size[0]

        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(B)
        if timestep.ndim == 1 and timestep.shape[0] == B:
            timestep = timestep[:, None]  # (B, 1)
        elif not (timestep.ndim == 2 and timestep.shape[0] == B and timestep.shape[1] in (1, T_)):
            raise ValueError(
                f"`timestep` must have shape ({B},) or ({B}, {T_}) (one per latent frame, T' = frames // p_t), "
                f"got {tuple(timestep.shape)}."
            )
        if timestep.shape[1] > 1 and getattr(self, "_parallel_config", None) is not None:
            # Context parallelism splits the tokens across ranks regardless of frame boundaries, so one rank's
            # tokens cannot be grouped into frames for per-frame modulation.
            raise ValueError(
                "Per-frame `timestep` (B, T') is not supported with context parallelism; pass one timestep per sample."
            )

        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != B:
            raise ValueError(
                f"`encoder_hidden_states` must have shape ({B}, sequence_length, {self.config.text_dim}), "
                f"got {tuple(encoder_hidden_states.shape)}."
            )
        if encoder_hidden_states.shape[2] != self.config.text_dim:
            raise ValueError(
                f"`encoder_hidden_states` width {encoder_hidden_states.shape[2]} != text_dim={self.config.text_dim}."
            )
        if encoder_attention_mask is not None:
            if tuple(encoder_attention_mask.shape) != tuple(encoder_hidden_states.shape[:2]):
                raise ValueError(
                    f"`encoder_attention_mask` must have shape {tuple(encoder_hidden_states.shape[:2])}, "
                    f"got {tuple(encoder_attention_mask.shape)}."
                )
            encoder_attention_mask = encoder_attention_mask.bool()
            if encoder_attention_mask.all():
                encoder_attention_mask = None  # no padding: take the faster unmasked attention kernels
        return timestep, encoder_attention_mask


def _check_config(
    patch_size: tuple[int, int, int],
    num_attention_heads: int,
    attention_head_dim: int,
    rope_axes_dim: tuple[int, int, int] | None,
) -> None:
    if len(patch_size) != 3 or any(int(p) < 1 for p in patch_size):
        raise ValueError(f"`patch_size` must be three positive ints (p_t, p_h, p_w), got {patch_size}.")
    if num_attention_heads < 1 or attention_head_dim < 2 or attention_head_dim % 2:
        raise ValueError(
            f"`num_attention_heads` must be >= 1 and `attention_head_dim` even (RoPE rotates channel pairs), "
            f"got {num_attention_heads} and {attention_head_dim}."
        )
    axes = rope_axes_dim or rope_axes_dims(attention_head_dim)
    if len(axes) != 3 or sum(axes) != attention_head_dim or any(d % 2 for d in axes):
        raise ValueError(
            f"`rope_axes_dim` must be three even ints summing to attention_head_dim={attention_head_dim}, got {axes}."
        )


def _register_with_diffusers_hooks() -> None:
    """Tell diffusers' caches (FirstBlockCache, ...) how a `DiTVideoBlock` returns its hidden states."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    TransformerBlockRegistry.register(
        model_class=DiTVideoBlock,
        metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None),
    )


_register_with_diffusers_hooks()
