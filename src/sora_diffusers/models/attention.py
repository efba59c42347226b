"""Attention of `DiTVideoTransformer3D`. The only caller of diffusers' `dispatch_attention_fn` in the package, so
`set_attention_backend("native" | "xformers" | "flash" | ...)`, the `attention_backend` context manager and context
parallelism apply unchanged."""

import torch
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry, dispatch_attention_fn
from torch import nn

from .embeddings import apply_rope


class SoraAttnProcessor:
    """q/k/v projections, RMS q/k norm across heads, 3D RoPE, then `dispatch_attention_fn` with q/k/v (B, S, N, D)."""

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: "SoraAttention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        query, key, value = _project_qkv(attn, hidden_states, encoder_hidden_states)  # (B, S, N*D), (B, L, N*D) x2
        query, key = attn.norm_q(query), attn.norm_k(key)

        query = query.unflatten(2, (attn.heads, -1))  # (B, S, N, D)
        key = key.unflatten(2, (attn.heads, -1))  # (B, L, N, D)
        value = value.unflatten(2, (attn.heads, -1))  # (B, L, N, D)
        if rotary_emb is not None:
            query, key = apply_rope(query, *rotary_emb), apply_rope(key, *rotary_emb)

        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=_mask_for_backend(attention_mask, self._attention_backend),
            backend=self._attention_backend,
            # Cross-attention keys are text tokens: never split them across context-parallel ranks.
            parallel_config=self._parallel_config if encoder_hidden_states is None else None,
        )  # (B, S, N, D)
        hidden_states = hidden_states.flatten(2, 3).type_as(query)  # (B, S, N*D)
        return attn.to_out[1](attn.to_out[0](hidden_states))


def _mask_for_backend(mask: torch.Tensor | None, backend: AttentionBackendName | str | None) -> torch.Tensor | None:
    """A (B, L) key-padding mask in the layout the backend reads: xformers builds its own aligned additive bias from
    (B, L) (a 4-D bool mask would be cast to a 0/1 bias there); SDPA-style kernels need (B, 1, 1, L) to broadcast."""
    if mask is None:
        return None
    backend = backend if backend is not None else _AttentionBackendRegistry.get_active_backend()[0]
    if AttentionBackendName(backend) == AttentionBackendName.XFORMERS:
        return mask
    return mask[:, None, None, :]  # (B, 1, 1, L)


def _project_qkv(
    attn: "SoraAttention", hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Self-attention when `encoder_hidden_states` is None, else cross-attention; uses fused weights when present."""
    context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
    if attn.fused_projections and not attn.is_cross_attention:
        return attn.to_qkv(hidden_states).chunk(3, dim=-1)
    if attn.fused_projections:
        return (attn.to_q(hidden_states), *attn.to_kv(context).chunk(2, dim=-1))
    return attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)


class SoraAttention(nn.Module, AttentionModuleMixin):
    """Multi-head attention with diffusers' module names (`to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k`), so
    LoRA target lists and Wan 2.1 weights carry over unchanged.

    Args:
        dim (`int`): width of the hidden states (queries).
        heads (`int`): number of heads N.
        dim_head (`int`): channels per head D.
        cross_attention_dim (`int`, *optional*): width of the keys' source; `None` means self-attention.
        qk_norm (`bool`): RMS-normalise q and k across all heads (Wan's "rms_norm_across_heads").
        eps (`float`): epsilon of the q/k norms.
    """

    _default_processor_cls = SoraAttnProcessor
    _available_processors = [SoraAttnProcessor]

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        cross_attention_dim: int | None = None,
        qk_norm: bool = True,
        eps: float = 1e-6,
        dropout: float = 0.0,
        is_cross_attention: bool = False,
        processor: SoraAttnProcessor | None = None,
    ):
        super().__init__()
        inner_dim = heads * dim_head
        kv_dim = cross_attention_dim or dim
        self.heads = heads
        self.inner_dim = inner_dim
        self.is_cross_attention = is_cross_attention
        self.use_bias = True

        self.to_q = nn.Linear(dim, inner_dim, bias=True)
        self.to_k = nn.Linear(kv_dim, inner_dim, bias=True)
        self.to_v = nn.Linear(kv_dim, inner_dim, bias=True)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, dim, bias=True), nn.Dropout(dropout)])
        norm = (lambda: nn.RMSNorm(inner_dim, eps=eps, elementwise_affine=True)) if qk_norm else nn.Identity
        self.norm_q, self.norm_k = norm(), norm()
        self.set_processor(processor or SoraAttnProcessor())

    @torch.no_grad()
    def fuse_projections(self) -> None:
        """Concatenate q/k/v (self-attention) or k/v (cross-attention) weights into one matmul (inference only)."""
        if self.fused_projections:
            return
        names = ("to_k", "to_v") if self.is_cross_attention else ("to_q", "to_k", "to_v")
        layers = [getattr(self, name) for name in names]
        fused = nn.Linear(layers[0].in_features, sum(layer.out_features for layer in layers), bias=True)
        fused.to(device=layers[0].weight.device, dtype=layers[0].weight.dtype)
        fused.weight.copy_(torch.cat([layer.weight for layer in layers]))
        fused.bias.copy_(torch.cat([layer.bias for layer in layers]))
        setattr(self, "to_kv" if self.is_cross_attention else "to_qkv", fused)
        self.fused_projections = True

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> torch.Tensor:
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)


def _register_with_diffusers_hooks() -> None:
    """Tell diffusers' layer-skip hooks what a skipped `SoraAttnProcessor` returns (its input hidden states)."""
    from diffusers.hooks._helpers import AttentionProcessorMetadata, AttentionProcessorRegistry

    def skip_output(attn, hidden_states, *args, **kwargs):
        return hidden_states

    AttentionProcessorRegistry.register(
        model_class=SoraAttnProcessor, metadata=AttentionProcessorMetadata(skip_processor_output_fn=skip_output)
    )


_register_with_diffusers_hooks()
