"""Checkpoint key maps: the single source for `conversion_scripts/`, loaders and tests.

Each section converts one public checkpoint family into this package's format. Conversions check key counts and
shapes and raise `ValueError` naming what does not fit; nothing is loaded silently or partially.
"""

import torch

from ..models.patching import conv3d_weight_to_linear


# ---- DiTVideoTransformer3D <- Wan 2.1 transformer (original or diffusers layout) --------------------------------
#
# Our module names are diffusers' `WanTransformer3DModel` names, so a diffusers-layout checkpoint maps 1:1 except the
# patch embedding (a Conv3d there, a Linear on `patchify`'s tokens here). The original Wan 2.1 layout (`self_attn.q`,
# `ffn.0`, ...) is renamed module by module. The original's affine cross-attention norm is `norm3`; ours (and
# diffusers') is `norm2` (the original's `norm2`, before the feed-forward, has no weights).

WAN_TRANSFORMER_TOP_LEVEL_RENAMES = {
    "patch_embedding": "patch_embedding",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
}
WAN_TRANSFORMER_BLOCK_RENAMES = {
    **{f"self_attn.{a}": f"attn1.{b}" for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))},
    **{f"cross_attn.{a}": f"attn2.{b}" for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"))},
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}
# Wan I2V / FLF2V weights (CLIP image cross-attention); our image conditioning is per-frame timesteps instead.
_WAN_UNSUPPORTED_MARKERS = ("img_emb", "image_embedder", "add_k_proj", "add_v_proj", "k_img", "v_img", "norm_added")


def _rename_module_path(path: str, renames: dict[str, str]) -> str | None:
    """'self_attn.q.weight' -> 'attn1.to_q.weight' (longest module prefix wins); None if nothing matches."""
    for old in sorted(renames, key=len, reverse=True):
        if path == old or path.startswith(old + "."):
            return renames[old] + path[len(old) :]
    return None


def _original_wan_key_to_diffusers(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "blocks" and len(parts) > 2:
        new = _rename_module_path(".".join(parts[2:]), WAN_TRANSFORMER_BLOCK_RENAMES)
        if new is not None:
            return f"blocks.{parts[1]}.{new}"
    else:
        new = _rename_module_path(key, WAN_TRANSFORMER_TOP_LEVEL_RENAMES)
        if new is not None:
            return new
    raise ValueError(f"Unrecognised key in an original Wan 2.1 transformer checkpoint: {key!r}.")


def convert_wan_transformer_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Wan 2.1 text-to-video transformer state dict, original layout (`Wan-AI/Wan2.1-T2V-*`) or diffusers layout
    (`*-Diffusers`, `WanTransformer3DModel`), -> a `DiTVideoTransformer3D` state dict.

    Raises `ValueError` for image-conditioned Wan checkpoints (CLIP image cross-attention) and unknown keys.
    """
    unsupported = sorted(k for k in state_dict if any(m in k for m in _WAN_UNSUPPORTED_MARKERS))
    if unsupported:
        raise ValueError(
            "Wan image-to-video weights (CLIP image cross-attention) are not supported; this model conditions on "
            f"images with per-frame timesteps. Unsupported keys: {unsupported[:6]}{' ...' if len(unsupported) > 6 else ''}"
        )
    is_original = "time_embedding.0.weight" in state_dict
    if not is_original and "condition_embedder.time_proj.weight" not in state_dict:
        raise ValueError(
            "Not a Wan 2.1 transformer state dict: expected `time_embedding.0.weight` (original layout) or "
            "`condition_embedder.time_proj.weight` (diffusers layout)."
        )
    converted = {}
    for key, value in state_dict.items():
        new_key = _original_wan_key_to_diffusers(key) if is_original else key
        if new_key == "patch_embedding.weight" and value.ndim == 5:
            value = conv3d_weight_to_linear(value)  # (D, C, pt, ph, pw) -> (D, pt*ph*pw*C)
        converted[new_key] = value
    return converted


def wan_transformer_config_to_sora(config: dict) -> dict:
    """A diffusers `WanTransformer3DModel` config -> `DiTVideoTransformer3D` keyword arguments."""
    if config.get("image_dim") is not None or config.get("added_kv_proj_dim") is not None:
        raise ValueError("Wan image-to-video configs (`image_dim`, `added_kv_proj_dim`) are not supported.")
    kept = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim")
    kept += ("freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "eps")
    sora = {k: config[k] for k in kept if k in config}
    sora["patch_size"] = tuple(sora.get("patch_size", (1, 2, 2)))
    sora["qk_norm"] = config.get("qk_norm", "rms_norm_across_heads") is not None
    return sora


def load_converted_state_dict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """`model.load_state_dict(state_dict, strict=True)` that first names every missing, unexpected and misshapen key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or misshapen:
        raise ValueError(
            f"Checkpoint does not match {type(model).__name__}: {len(state_dict)} keys vs {len(expected)} expected; "
            f"missing {missing[:8]}, unexpected {unexpected[:8]}, misshapen {misshapen[:8]}."
        )
    model.load_state_dict(state_dict, strict=True)
