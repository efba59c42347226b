"""Checkpoint key maps: the single source for `conversion_scripts/`, loaders and tests.

Each section converts one public checkpoint family into this package's format. Conversions check key counts and
shapes and raise `ValueError` naming what does not fit; nothing is loaded silently or partially.
"""

import re

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


# ---- SpacetimeVAE <- diffusers AutoencoderKLWan ----------------------------------------------------------------
#
# SpacetimeVAE's modules carry diffusers' names, so diffusers-layout Wan 2.1 VAE weights load as they are: every rule
# below keeps its key (`\g<0>`). The table is still the complete vocabulary of a Wan 2.1 VAE checkpoint (regex, full
# match -> `re.Match.expand` template), so anything else (Wan 2.2's residual blocks, `patch_size`, an original
# `Wan2.1_VAE.pth`) is reported instead of silently dropped. Shapes are checked by `load_converted_state_dict`.

_WAN_VAE_RESNET = r"(norm1|norm2)\.gamma|(conv1|conv2|conv_shortcut)\.(weight|bias)"
_WAN_VAE_ATTENTION = r"norm\.gamma|(to_qkv|proj)\.(weight|bias)"
WAN_VAE_KEY_MAP: dict[str, str] = {
    r"(quant_conv|post_quant_conv)\.(weight|bias)": r"\g<0>",
    r"(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)": r"\g<0>",
    r"(encoder|decoder)\.norm_out\.gamma": r"\g<0>",
    rf"(encoder|decoder)\.mid_block\.resnets\.[01]\.({_WAN_VAE_RESNET})": r"\g<0>",
    rf"(encoder|decoder)\.mid_block\.attentions\.0\.({_WAN_VAE_ATTENTION})": r"\g<0>",
    rf"encoder\.down_blocks\.\d+\.({_WAN_VAE_RESNET}|{_WAN_VAE_ATTENTION})": r"\g<0>",
    r"encoder\.down_blocks\.\d+\.(resample\.1|time_conv)\.(weight|bias)": r"\g<0>",
    rf"decoder\.up_blocks\.\d+\.resnets\.\d+\.({_WAN_VAE_RESNET})": r"\g<0>",
    r"decoder\.up_blocks\.\d+\.upsamplers\.0\.(resample\.1|time_conv)\.(weight|bias)": r"\g<0>",
}
# diffusers `AutoencoderKLWan` config key -> `SpacetimeVAE` config key.
WAN_VAE_CONFIG_MAP: dict[str, str] = {
    "in_channels": "in_channels",
    "out_channels": "out_channels",
    "z_dim": "latent_channels",
    "base_dim": "base_dim",
    "dim_mult": "dim_mult",
    "num_res_blocks": "num_res_blocks",
    "attn_scales": "attn_scales",
    "temperal_downsample": "temporal_downsample",
    "dropout": "dropout",
    "latents_mean": "latents_mean",
    "latents_std": "latents_std",
}
# Module prefixes that only the original (non-diffusers) Wan 2.1 VAE layout has.
_ORIGINAL_WAN_VAE_PREFIXES = ("encoder.downsamples.", "decoder.upsamples.", "encoder.middle.", "decoder.middle.")


def _rename_keys(
    state_dict: dict[str, torch.Tensor], key_map: dict[str, str]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename each key by the first rule of `key_map` that fully matches it; also return the keys no rule matched."""
    rules = [(re.compile(pattern), template) for pattern, template in key_map.items()]
    renamed, unmatched = {}, []
    for key, value in state_dict.items():
        for rule, template in rules:
            match = rule.fullmatch(key)
            if match is not None:
                renamed[match.expand(template)] = value
                break
        else:
            unmatched.append(key)
    return renamed, sorted(unmatched)


def convert_wan_vae_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers `AutoencoderKLWan` (Wan 2.1) state dict -> a `SpacetimeVAE` state dict (tensors shared, not copied).

    Load the result with `load_converted_state_dict(vae, converted)`, which checks key counts and shapes against the
    model before `load_state_dict(strict=True)`.

    Raises `ValueError` listing every key that matches no rule of `WAN_VAE_KEY_MAP`, and for original-layout Wan
    checkpoints (convert those with diffusers' `convert_wan_vae_to_diffusers` first).
    """
    original = sorted(key for key in state_dict if key.startswith(_ORIGINAL_WAN_VAE_PREFIXES))
    if original:
        raise ValueError(
            f"Original Wan 2.1 VAE layout (keys like {original[:3]}); convert it to diffusers' layout first with "
            "`diffusers.loaders.single_file_utils.convert_wan_vae_to_diffusers`."
        )
    converted, unmatched = _rename_keys(state_dict, WAN_VAE_KEY_MAP)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} of {len(state_dict)} keys match no rule of WAN_VAE_KEY_MAP (not a Wan 2.1 VAE in "
            f"diffusers' layout? Wan 2.2's residual VAE is not supported): {unmatched}"
        )
    if len(converted) != len(state_dict):
        raise ValueError(f"WAN_VAE_KEY_MAP merged keys: {len(state_dict)} keys in, {len(converted)} out.")
    return converted


def wan_vae_config_to_spacetime(config: dict) -> dict:
    """A diffusers `AutoencoderKLWan` config -> `SpacetimeVAE` keyword arguments.

    `patch_size` carries over; diffusers counts the patched channels in `in_channels` / `out_channels` (12 for
    patch_size=2), SpacetimeVAE the video's (3). Raises `ValueError` for options SpacetimeVAE does not have: Wan 2.2's
    `is_residual` blocks and a `decoder_base_dim` other than `base_dim`.
    """
    unsupported = {
        "is_residual": bool(config.get("is_residual", False)),
        "decoder_base_dim": config.get("decoder_base_dim") not in (None, config.get("base_dim")),
    }
    used = sorted(name for name, is_used in unsupported.items() if is_used)
    if used:
        raise ValueError(f"SpacetimeVAE reproduces the Wan 2.1 VAE; unsupported AutoencoderKLWan options: {used}.")
    converted = {ours: config[theirs] for theirs, ours in WAN_VAE_CONFIG_MAP.items() if theirs in config}
    patch_size = config.get("patch_size") or 1
    for name in ("in_channels", "out_channels"):
        if name in converted:
            if converted[name] % (patch_size * patch_size):
                raise ValueError(f"AutoencoderKLWan `{name}`={converted[name]} is not a multiple of patch_size**2.")
            converted[name] //= patch_size * patch_size
    return {**converted, "patch_size": patch_size}
