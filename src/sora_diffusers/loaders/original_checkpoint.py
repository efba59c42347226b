"""Checkpoint key maps: the single source for `conversion_scripts/`, loaders and tests.

Each section converts one public checkpoint family into this package's format (and back, for interop). Conversions
check key counts and shapes and raise `ValueError` naming what does not fit; nothing is loaded silently or partially.

Layouts: "original" is the Wan-AI release (`Wan-AI/Wan2.1-T2V-1.3B`, `Wan2.2-TI2V-5B`, ...: `blocks.N.self_attn.q`,
`Wan2.1_VAE.pth`), "diffusers" the `*-Diffusers` repos (`WanTransformer3DModel`, `AutoencoderKLWan`), "ours"
`DiTVideoTransformer3D` / `SpacetimeVAE`, whose module names are diffusers'. The release's UMT5 text encoder
(`models_t5_umt5-xxl-enc-bf16.pth`) maps to transformers' `UMT5EncoderModel` in `wan_umt5.py`.
"""

import math
import re

import torch

from ..models.autoencoder_spacetime import WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, WAN_LATENTS_MEAN, WAN_LATENTS_STD
from ..models.patching import conv3d_weight_to_linear, linear_weight_to_conv3d


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
    state_dict = strip_single_file_prefix(state_dict)
    is_original = "time_embedding.0.weight" in state_dict
    if not is_original and "condition_embedder.time_proj.weight" not in state_dict:
        raise ValueError(
            "Not a Wan transformer state dict: expected `time_embedding.0.weight` (original layout) or "
            "`condition_embedder.time_proj.weight` (diffusers layout)."
        )
    converted = {}
    for key, value in state_dict.items():
        new_key = _original_wan_key_to_diffusers(key) if is_original else key
        if new_key == "patch_embedding.weight" and value.ndim == 5:
            value = conv3d_weight_to_linear(value)  # (D, C, pt, ph, pw) -> (D, pt*ph*pw*C)
        converted[new_key] = value
    if len(converted) != len(state_dict):
        raise ValueError(f"Wan transformer renaming merged keys: {len(state_dict)} keys in, {len(converted)} out.")
    return converted


def strip_single_file_prefix(
    state_dict: dict[str, torch.Tensor], prefix: str = "model.diffusion_model."
) -> dict[str, torch.Tensor]:
    """Drop the prefix that single-file repacks (ComfyUI's) put before every transformer key."""
    if state_dict and all(key.startswith(prefix) for key in state_dict):
        return {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


_WAN_TRANSFORMER_CONFIG_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels")
_WAN_TRANSFORMER_CONFIG_KEYS += (
    "out_channels",
    "text_dim",
    "freq_dim",
    "ffn_dim",
    "num_layers",
    "cross_attn_norm",
    "eps",
)


def wan_transformer_config_to_sora(config: dict, per_frame_timesteps: bool = False) -> dict:
    """A diffusers `WanTransformer3DModel` config -> `DiTVideoTransformer3D` keyword arguments.

    `per_frame_timesteps=True` for weights trained with a timestep per latent frame (Wan 2.2 TI2V-5B, whose pipeline
    config has `expand_timesteps`); Wan 2.1 and Wan 2.2 A14B were not.
    """
    if config.get("image_dim") is not None or config.get("added_kv_proj_dim") is not None:
        raise ValueError("Wan image-to-video configs (`image_dim`, `added_kv_proj_dim`) are not supported.")
    sora = {k: config[k] for k in _WAN_TRANSFORMER_CONFIG_KEYS if k in config}
    sora["patch_size"] = tuple(sora.get("patch_size", (1, 2, 2)))
    sora["qk_norm"] = config.get("qk_norm", "rms_norm_across_heads") is not None
    return {**sora, "per_frame_timesteps": bool(per_frame_timesteps)}


# Arguments of the original `WanModel.__init__` (Wan2.1 / Wan2.2 `wan/modules/model.py`) with their defaults; a
# release's config.json lists only some of them.
_ORIGINAL_WAN_MODEL_DEFAULTS = dict(
    model_type="t2v", patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=2048, ffn_dim=8192, freq_dim=256,
    text_dim=4096, out_dim=16, num_heads=16, num_layers=32, qk_norm=True, cross_attn_norm=True, eps=1e-6,
)  # fmt: skip
# Original `model_type`s this package converts: text-to-video, and TI2V (text and image to video through per-frame
# timesteps, Wan 2.2 TI2V-5B). "i2v", "flf2v", "vace", "animate" add image encoders or extra inputs.
ORIGINAL_WAN_MODEL_TYPES = ("t2v", "ti2v")


def wan_original_transformer_config_to_diffusers(config: dict) -> dict:
    """An original Wan `config.json` (`"_class_name": "WanModel"`: `dim`, `num_heads`, `in_dim`, ...) -> the diffusers
    `WanTransformer3DModel` config of the same model (as diffusers' scripts/convert_wan_to_diffusers.py writes it).

    Raises `ValueError` for model types other than `ORIGINAL_WAN_MODEL_TYPES` and for inconsistent sizes.
    """
    config = {**_ORIGINAL_WAN_MODEL_DEFAULTS, **config}
    if config["model_type"] not in ORIGINAL_WAN_MODEL_TYPES:
        raise ValueError(
            f"Original Wan `model_type` {config['model_type']!r} is not supported (supported: "
            f"{ORIGINAL_WAN_MODEL_TYPES}); image-to-video here is per-frame timesteps, not Wan's image encoder."
        )
    dim, num_heads = int(config["dim"]), int(config["num_heads"])
    if dim % num_heads:
        raise ValueError(f"Original Wan config: `dim`={dim} is not a multiple of `num_heads`={num_heads}.")
    return {
        "patch_size": list(config["patch_size"]),
        "num_attention_heads": num_heads,
        "attention_head_dim": dim // num_heads,
        "in_channels": config["in_dim"],
        "out_channels": config["out_dim"],
        "text_dim": config["text_dim"],
        "freq_dim": config["freq_dim"],
        "ffn_dim": config["ffn_dim"],
        "num_layers": config["num_layers"],
        "cross_attn_norm": bool(config["cross_attn_norm"]),
        "qk_norm": "rms_norm_across_heads" if config["qk_norm"] else None,
        "eps": config["eps"],
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": 1024,
    }


def sora_transformer_config_to_wan(config: dict) -> dict:
    """The inverse of `wan_transformer_config_to_sora`: a `DiTVideoTransformer3D` config -> a diffusers
    `WanTransformer3DModel` config. Raises `ValueError` for options Wan's transformer does not have."""
    from ..models.embeddings import rope_axes_dims

    head_dim = config["attention_head_dim"]
    axes = config.get("rope_axes_dim")
    if config.get("rope_theta", 10000.0) != 10000.0 or (
        axes is not None and list(axes) != list(rope_axes_dims(head_dim))
    ):
        raise ValueError(
            f"WanTransformer3DModel has RoPE theta 10000 and Wan's axis split; this model has rope_theta="
            f"{config.get('rope_theta')}, rope_axes_dim={axes}."
        )
    wan = {k: config[k] for k in _WAN_TRANSFORMER_CONFIG_KEYS if k in config}
    wan["patch_size"] = list(wan["patch_size"])
    wan["out_channels"] = wan.get("out_channels") or wan["in_channels"]
    wan["qk_norm"] = "rms_norm_across_heads" if config.get("qk_norm", True) else None
    return {**wan, "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024}


def convert_sora_transformer_state_dict_to_wan(state_dict: dict[str, torch.Tensor], config: dict) -> dict:
    """The inverse of `convert_wan_transformer_state_dict` for the diffusers layout: our patch-embedding `Linear`
    becomes Wan's `Conv3d` again; every other tensor keeps its key (shared, not copied)."""
    converted = dict(state_dict)
    converted["patch_embedding.weight"] = linear_weight_to_conv3d(
        state_dict["patch_embedding.weight"], config["in_channels"], tuple(config["patch_size"])
    )
    return converted


def _listed(names: list[str], limit: int = 20) -> str:
    return f"{names[:limit]}" + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def load_converted_state_dict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], assign: bool = False
) -> None:
    """`model.load_state_dict(state_dict, strict=True, assign=assign)` that first names every missing, unexpected and
    misshapen key (`assign=True` for a model built under `init_empty_weights()`: the tensors become its weights)."""
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
            f"missing {_listed(missing)}, unexpected {_listed(unexpected)}, misshapen {_listed(misshapen)}."
        )
    model.load_state_dict(state_dict, strict=True, assign=assign)


# ---- SpacetimeVAE <- diffusers AutoencoderKLWan ----------------------------------------------------------------
#
# SpacetimeVAE's modules carry diffusers' names, so diffusers-layout Wan 2.1 and 2.2 VAE weights load as they are:
# every rule below keeps its key (`\g<0>`). The table is still the complete vocabulary of a Wan VAE checkpoint
# (regex, full match -> `re.Match.expand` template), so anything else is reported instead of silently dropped.
# Shapes are checked by `load_converted_state_dict`. Original-layout files (`Wan2.1_VAE.pth`, `Wan2.2_VAE.pth`) are
# renamed to this layout first (`convert_original_wan_vae_state_dict`, below).

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
    # Wan 2.2's residual VAE (`is_residual=True`): per level a block of resnets and one resampler
    rf"encoder\.down_blocks\.\d+\.resnets\.\d+\.({_WAN_VAE_RESNET})": r"\g<0>",
    r"encoder\.down_blocks\.\d+\.downsampler\.(resample\.1|time_conv)\.(weight|bias)": r"\g<0>",
    r"decoder\.up_blocks\.\d+\.upsampler\.(resample\.1|time_conv)\.(weight|bias)": r"\g<0>",
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
    "is_residual": "is_residual",
    "decoder_base_dim": "decoder_base_dim",
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


def is_original_wan_vae_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether a Wan VAE state dict is in the original release's layout (`encoder.downsamples.0...`)."""
    return any(key.startswith(_ORIGINAL_WAN_VAE_PREFIXES) for key in state_dict)


def convert_wan_vae_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Wan 2.1 or 2.2 VAE state dict, diffusers layout (`AutoencoderKLWan`) or original layout (`Wan2.1_VAE.pth`,
    `Wan2.2_VAE.pth`), -> a `SpacetimeVAE` state dict (tensors shared, not copied).

    Load the result with `load_converted_state_dict(vae, converted)`, which checks key counts and shapes against the
    model before `load_state_dict(strict=True)`; `wan_vae_config_from_state_dict` gives the matching config.

    Raises `ValueError` listing every key that matches no rule of `WAN_VAE_KEY_MAP`.
    """
    if is_original_wan_vae_layout(state_dict):
        state_dict = convert_original_wan_vae_state_dict(state_dict)
    converted, unmatched = _rename_keys(state_dict, WAN_VAE_KEY_MAP)
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} of {len(state_dict)} keys match no rule of WAN_VAE_KEY_MAP (not a Wan 2.1 / 2.2 VAE?): "
            f"{unmatched}"
        )
    if len(converted) != len(state_dict):
        raise ValueError(f"WAN_VAE_KEY_MAP merged keys: {len(state_dict)} keys in, {len(converted)} out.")
    return converted


def wan_vae_config_to_spacetime(config: dict) -> dict:
    """A diffusers `AutoencoderKLWan` config -> `SpacetimeVAE` keyword arguments.

    `patch_size` carries over; diffusers counts the patched channels in `in_channels` / `out_channels` (12 for
    patch_size=2), SpacetimeVAE the video's (3). Wan 2.2's residual VAE (`is_residual`, `decoder_base_dim`) carries
    over too. Raises `ValueError` for options SpacetimeVAE does not have (attention in a residual encoder).
    """
    if config.get("is_residual") and config.get("attn_scales"):
        raise ValueError("AutoencoderKLWan with `is_residual=True` ignores `attn_scales`; SpacetimeVAE refuses both.")
    converted = {ours: config[theirs] for theirs, ours in WAN_VAE_CONFIG_MAP.items() if theirs in config}
    if converted.get("decoder_base_dim") == converted.get("base_dim"):
        converted["decoder_base_dim"] = None
    patch_size = config.get("patch_size") or 1
    for name in ("in_channels", "out_channels"):
        if name in converted:
            if converted[name] % (patch_size * patch_size):
                raise ValueError(f"AutoencoderKLWan `{name}`={converted[name]} is not a multiple of patch_size**2.")
            converted[name] //= patch_size * patch_size
    return {**converted, "patch_size": patch_size}


def spacetime_vae_config_to_wan(config: dict) -> dict:
    """The inverse of `wan_vae_config_to_spacetime`: a `SpacetimeVAE` config -> an `AutoencoderKLWan` config."""
    wan = {theirs: config[ours] for theirs, ours in WAN_VAE_CONFIG_MAP.items() if ours in config}
    patch_size = config.get("patch_size", 1)
    for name in ("in_channels", "out_channels"):
        wan[name] = wan.get(name, 3) * patch_size * patch_size
    wan["decoder_base_dim"] = wan.get("decoder_base_dim") or wan["base_dim"]
    for name in ("dim_mult", "attn_scales", "temperal_downsample", "latents_mean", "latents_std"):
        if wan.get(name) is not None:
            wan[name] = list(wan[name])
    wan.update(patch_size=patch_size if patch_size > 1 else None)
    wan.update(scale_factor_temporal=2 ** sum(bool(f) for f in wan["temperal_downsample"]))
    wan.update(scale_factor_spatial=patch_size * 2 ** (len(wan["dim_mult"]) - 1))
    return wan


# ---- Original Wan VAE layout (`Wan2.1_VAE.pth`, `Wan2.2_VAE.pth`) -> diffusers' AutoencoderKLWan layout ---------
#
# As diffusers' `convert_wan_vae_to_diffusers` (loaders/single_file_utils.py, Wan 2.1) and `convert_vae_22`
# (scripts/convert_wan_to_diffusers.py) rename them, for any number of residual blocks per level (diffusers' Wan 2.1
# converter assumes 2). The original residual block is a Sequential: `residual.0` (norm), `.2` (conv), `.3` (norm),
# `.6` (conv); Wan 2.1's decoder is one flat Sequential of resnets and upsamplers, Wan 2.2's nests one per level.

WAN_VAE_ORIGINAL_RESIDUAL_RENAMES = {
    "residual.0": "norm1",
    "residual.2": "conv1",
    "residual.3": "norm2",
    "residual.6": "conv2",
    "shortcut": "conv_shortcut",
}
WAN_VAE_ORIGINAL_TOP_LEVEL_RENAMES = {
    "conv1": "quant_conv",
    "conv2": "post_quant_conv",
    **{f"{part}.conv1": f"{part}.conv_in" for part in ("encoder", "decoder")},
    **{f"{part}.head.0": f"{part}.norm_out" for part in ("encoder", "decoder")},
    **{f"{part}.head.2": f"{part}.conv_out" for part in ("encoder", "decoder")},
    **{f"{part}.middle.0": f"{part}.mid_block.resnets.0" for part in ("encoder", "decoder")},
    **{f"{part}.middle.1": f"{part}.mid_block.attentions.0" for part in ("encoder", "decoder")},
    **{f"{part}.middle.2": f"{part}.mid_block.resnets.1" for part in ("encoder", "decoder")},
}
_NESTED_LEVEL = re.compile(r"(encoder|decoder)\.(downsamples|upsamples)\.(\d+)\.(downsamples|upsamples)\.(\d+)\.(.+)")
_FLAT_LEVEL = re.compile(r"(encoder\.downsamples|decoder\.upsamples)\.(\d+)\.(.+)")
_RESAMPLER_PARTS = ("resample.", "time_conv.")


def _original_resnet_param(path: str) -> str | None:
    """'residual.2.weight' -> 'conv1.weight'; None for anything that is not a residual-block parameter."""
    return _rename_module_path(path, WAN_VAE_ORIGINAL_RESIDUAL_RENAMES)


def _original_wan_vae_key_to_diffusers(key: str, decoder_stride: int) -> str | None:
    """One original Wan VAE key -> its diffusers name, or None when it is not part of a Wan VAE."""
    nested = _NESTED_LEVEL.fullmatch(key)
    if nested:  # Wan 2.2: encoder.downsamples.{level}.downsamples.{j}.<...>
        part, _, level, _, _, rest = nested.groups()
        sampler = "downsampler" if part == "encoder" else "upsampler"
        if rest.startswith(_RESAMPLER_PARTS):
            return f"{part}.{'down' if part == 'encoder' else 'up'}_blocks.{level}.{sampler}.{rest}"
        param = _original_resnet_param(rest)
        j = nested.group(5)
        return (
            None
            if param is None
            else f"{part}.{'down' if part == 'encoder' else 'up'}_blocks.{level}.resnets.{j}.{param}"
        )
    flat = _FLAT_LEVEL.fullmatch(key)
    if flat:  # Wan 2.1: one Sequential for all levels
        prefix, index, rest = flat.group(1), int(flat.group(2)), flat.group(3)
        if prefix == "encoder.downsamples":  # diffusers keeps the encoder flat too
            param = rest if rest.startswith(_RESAMPLER_PARTS) else _original_resnet_param(rest)
            return None if param is None else f"encoder.down_blocks.{index}.{param}"
        level, j = divmod(index, decoder_stride)  # decoder: (num_res_blocks + 1) resnets, then an upsampler
        if rest.startswith(_RESAMPLER_PARTS):
            return f"decoder.up_blocks.{level}.upsamplers.0.{rest}" if j == decoder_stride - 1 else None
        param = _original_resnet_param(rest)
        return None if param is None else f"decoder.up_blocks.{level}.resnets.{j}.{param}"
    renamed = _rename_module_path(key, WAN_VAE_ORIGINAL_TOP_LEVEL_RENAMES)
    if renamed is not None and ".mid_block.resnets." in renamed:
        head, _, rest = renamed.partition(".mid_block.resnets.")
        index, _, path = rest.partition(".")
        param = _original_resnet_param(path)
        return None if param is None else f"{head}.mid_block.resnets.{index}.{param}"
    return renamed


def convert_original_wan_vae_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An original-layout Wan 2.1 / 2.2 VAE state dict (`torch.load("Wan2.1_VAE.pth", weights_only=True)`) -> the
    diffusers `AutoencoderKLWan` layout (tensors shared). Raises `ValueError` listing every key it cannot place."""
    # Wan 2.1's flat decoder: the first upsampler's index is num_res_blocks + 1, the per-level stride one more.
    first_upsampler = [
        int(m.group(1)) for k in state_dict if (m := re.match(r"decoder\.upsamples\.(\d+)\.resample\.", k))
    ]
    decoder_stride = min(first_upsampler) + 1 if first_upsampler else 1 << 30
    converted, unmatched = {}, []
    for key, value in state_dict.items():
        new_key = _original_wan_vae_key_to_diffusers(key, decoder_stride)
        if new_key is None:
            unmatched.append(key)
        else:
            converted[new_key] = value
    if unmatched:
        raise ValueError(f"{len(unmatched)} of {len(state_dict)} keys are not part of a Wan VAE: {sorted(unmatched)}")
    if len(converted) != len(state_dict):
        raise ValueError(f"Original Wan VAE renaming merged keys: {len(state_dict)} keys in, {len(converted)} out.")
    return converted


def wan_vae_config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
    """The `AutoencoderKLWan` config of a Wan VAE state dict (either layout), read from its tensor shapes.

    The original releases ship no VAE config; this recovers every size (`base_dim`, `decoder_base_dim`, `z_dim`,
    `dim_mult`, `num_res_blocks`, `temperal_downsample`, `is_residual`, `patch_size`). Latent statistics are Wan 2.1's
    for 16 latent channels, Wan 2.2's for 48, and none otherwise.
    """
    if is_original_wan_vae_layout(state_dict):
        state_dict = convert_original_wan_vae_state_dict(state_dict)
    try:
        base_dim, in_channels = state_dict["encoder.conv_in.weight"].shape[:2]
        z_dim = state_dict["post_quant_conv.weight"].shape[0]
        out_channels, decoder_top_dim = state_dict["decoder.conv_out.weight"].shape[:2]
    except KeyError as error:
        raise ValueError(f"Not a Wan VAE state dict: no {error.args[0]!r}.") from None
    is_residual = any(re.match(r"encoder\.down_blocks\.\d+\.resnets\.", k) for k in state_dict)
    levels = _encoder_levels(state_dict, is_residual)  # [(resnet out dims, has time_conv), ...]
    dim_mult = [out_dims[-1] // base_dim for out_dims, _ in levels]
    patch_size = math.isqrt(in_channels // 3)
    config = {
        "base_dim": base_dim,
        "decoder_base_dim": decoder_top_dim // dim_mult[0],
        "z_dim": z_dim,
        "dim_mult": dim_mult,
        "num_res_blocks": len(levels[0][0]),
        "attn_scales": [],
        "temperal_downsample": [time for _, time in levels[:-1]],
        "dropout": 0.0,
        "is_residual": is_residual,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "patch_size": patch_size if patch_size > 1 else None,
    }
    stats = {16: (WAN_LATENTS_MEAN, WAN_LATENTS_STD), 48: (WAN22_LATENTS_MEAN, WAN22_LATENTS_STD)}.get(z_dim)
    config["latents_mean"], config["latents_std"] = (list(stats[0]), list(stats[1])) if stats else (None, None)
    config["scale_factor_temporal"] = 2 ** sum(config["temperal_downsample"])
    config["scale_factor_spatial"] = max(patch_size, 1) * 2 ** (len(dim_mult) - 1)
    return config


def _encoder_levels(state_dict: dict[str, torch.Tensor], is_residual: bool) -> list[tuple[list[int], bool]]:
    """Per encoder level: the output channels of its resnets, and whether its downsampler also halves time."""
    if is_residual:
        levels = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))})
        result = []
        for level in levels:
            prefix = f"encoder.down_blocks.{level}."
            convs = sorted(
                (int(m.group(1)), v.shape[0])
                for k, v in state_dict.items()
                if (m := re.fullmatch(re.escape(prefix) + r"resnets\.(\d+)\.conv2\.weight", k))
            )
            result.append(([dim for _, dim in convs], f"{prefix}downsampler.time_conv.weight" in state_dict))
        return result
    modules = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k))})
    result, dims = [], []
    for index in modules:
        prefix = f"encoder.down_blocks.{index}."
        if f"{prefix}resample.1.weight" in state_dict:  # a downsampler closes the level
            result.append((dims, f"{prefix}time_conv.weight" in state_dict))
            dims = []
        elif f"{prefix}conv2.weight" in state_dict:
            dims.append(state_dict[f"{prefix}conv2.weight"].shape[0])
    return result + [(dims, False)]
