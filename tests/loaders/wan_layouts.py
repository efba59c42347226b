"""Test helpers: tiny random Wan checkpoints in the layouts the public releases use.

The original layout (Wan-AI/Wan2.1-T2V-*, Wan2.2-*: `blocks.N.self_attn.q`, `Wan2.1_VAE.pth`) is built here by
reversing diffusers' own original -> diffusers converters (`diffusers.loaders.single_file_utils`); each reversal is
checked against diffusers' forward converter, so what the tests feed our converter is what diffusers reads as Wan's.
"""

import json
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers, convert_wan_vae_to_diffusers
from safetensors.torch import save_file

from ..conftest import perturb_


# Parity criterion of the conversion tests, fp32: max |ours - diffusers| <= RTOL * max |diffusers|.
RTOL = 1e-5


def assert_close_to_reference(ours: torch.Tensor, reference: torch.Tensor) -> None:
    """`ours` equals diffusers' `reference` to RTOL of its scale; a near-constant reference fails (a vacuous pass)."""
    assert ours.shape == reference.shape
    assert reference.std() > 0.05, "reference output is degenerate"
    error, scale = (ours - reference).abs().max().item(), reference.abs().max().item()
    assert error <= RTOL * scale, f"max error {error:.3g} vs scale {scale:.3g}"


# Tiny Wan 2.1 VAE in the release's shape (dim_mult 1, 2, 4, 4 and 2 resnets per level: diffusers' original-layout
# converter assumes both).
WAN21_VAE_TINY = dict(
    base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]
)
WAN21_VAE_TINY.update(latents_mean=[0.0, 0.1, -0.1, 0.2], latents_std=[1.0, 2.0, 0.5, 1.5])
# Tiny Wan 2.2 TI2V VAE: residual levels, 2x2 pixel patches, its own decoder width.
WAN22_VAE_TINY = dict(base_dim=4, decoder_base_dim=6, z_dim=8, dim_mult=[1, 2, 4, 4], num_res_blocks=1)
WAN22_VAE_TINY.update(
    is_residual=True, patch_size=2, in_channels=12, out_channels=12, temperal_downsample=[False, True, True]
)
WAN22_VAE_TINY.update(latents_mean=[0.1 * i for i in range(8)], latents_std=[1.0 + 0.1 * i for i in range(8)])
WAN22_VAE_TINY.update(scale_factor_spatial=16)
# Tiny Wan transformer (original config.json keys of `WanModel`).
WAN_TRANSFORMER_TINY = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=16,
    freq_dim=32, ffn_dim=48, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6,
)  # fmt: skip

_TRANSFORMER_TO_ORIGINAL = [  # diffusers name part -> original, applied in order
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1.", "self_attn."),
    ("attn2.", "cross_attn."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".o."),
    ("ffn.net.0.proj", "ffn.0"),
    ("ffn.net.2", "ffn.2"),
    (".norm2.", ".norm3."),  # diffusers' affine cross-attention norm is the original's norm3
    ("proj_out", "head.head"),
]


def wan_transformer_to_original(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers `WanTransformer3DModel` state dict -> the original Wan layout, checked with diffusers' converter."""
    original = {}
    for key, value in state_dict.items():
        new = key
        for theirs, wan in _TRANSFORMER_TO_ORIGINAL:
            new = new.replace(theirs, wan)
        new = "head.modulation" if new == "scale_shift_table" else new.replace(".scale_shift_table", ".modulation")
        original[new] = value
    _assert_same(
        convert_wan_transformer_to_diffusers(dict(original)), state_dict, "convert_wan_transformer_to_diffusers"
    )
    return original


_RESNET_TO_ORIGINAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3", "conv2": "residual.6"}
_RESNET_TO_ORIGINAL["conv_shortcut"] = "shortcut"


def _resnet_param(path: str) -> str:
    module, _, param = path.partition(".")
    return f"{_RESNET_TO_ORIGINAL[module]}.{param}"


def wan_vae_to_original(state_dict: dict[str, torch.Tensor], num_res_blocks: int = 2) -> dict[str, torch.Tensor]:
    """diffusers `AutoencoderKLWan` state dict -> the original `Wan2.1_VAE.pth` / `Wan2.2_VAE.pth` layout.

    Wan 2.1 (flat levels) is checked against diffusers' `convert_wan_vae_to_diffusers`; Wan 2.2 (nested levels, as
    Wan 2.2's `Down_ResidualBlock.downsamples` / `Up_ResidualBlock.upsamples` Sequentials name them) has no importable
    diffusers converter (it lives in diffusers' scripts/convert_wan_to_diffusers.py::convert_vae_22).
    """
    residual = any(".resnets." in k and k.startswith("encoder.down_blocks") for k in state_dict)
    original = {}
    for key, value in state_dict.items():
        if m := re.fullmatch(r"(quant_conv|post_quant_conv)\.(.+)", key):
            new = f"{'conv1' if m.group(1) == 'quant_conv' else 'conv2'}.{m.group(2)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.conv_in\.(.+)", key):
            new = f"{m.group(1)}.conv1.{m.group(2)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.(norm_out|conv_out)\.(.+)", key):
            new = f"{m.group(1)}.head.{0 if m.group(2) == 'norm_out' else 2}.{m.group(3)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", key):
            new = f"{m.group(1)}.middle.{2 * int(m.group(2))}.{_resnet_param(m.group(3))}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            new = f"{m.group(1)}.middle.1.{m.group(2)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            part, kind, level, j, path = m.groups()
            samples = f"{kind}samples"
            if residual:
                new = f"{part}.{samples}.{level}.{samples}.{j}.{_resnet_param(path)}"
            else:  # Wan 2.1 decoder: one flat Sequential, (num_res_blocks + 1) resnets and an upsampler per level
                new = f"{part}.{samples}.{int(level) * (num_res_blocks + 2) + int(j)}.{_resnet_param(path)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(downsampler|upsampler)\.(.+)", key):
            part, kind, level, _, path = m.groups()
            j = num_res_blocks + (kind == "up")
            new = f"{part}.{kind}samples.{level}.{kind}samples.{j}.{path}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            new = f"decoder.upsamples.{int(m.group(1)) * (num_res_blocks + 2) + num_res_blocks + 1}.{m.group(2)}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(resample|time_conv)(.*)", key):
            new = f"encoder.downsamples.{m.group(1)}.{m.group(2)}{m.group(3)}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(.+)", key):
            new = f"encoder.downsamples.{m.group(1)}.{_resnet_param(m.group(2))}"
        else:
            raise AssertionError(f"no original name for {key}")
        original[new] = value
    assert len(original) == len(state_dict)
    if not residual:
        _assert_same(convert_wan_vae_to_diffusers(dict(original)), state_dict, "convert_wan_vae_to_diffusers")
    return original


def _assert_same(converted: dict, reference: dict, name: str) -> None:
    assert set(converted) == set(reference), f"{name}: {sorted(set(converted) ^ set(reference))[:8]}"
    assert all(converted[k] is reference[k] for k in reference), name


def tiny_wan_transformer(seed: int = 0, **overrides) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return perturb_(WanTransformer3DModel(**{**WAN_TRANSFORMER_TINY, **overrides})).eval()


def tiny_wan_vae(config: dict, seed: int = 0) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    return perturb_(AutoencoderKLWan(**config), std=0.05).eval()


def original_model_config(wan: WanTransformer3DModel, model_type: str = "t2v") -> dict:
    """The original release's config.json (`WanModel`) for a diffusers transformer."""
    c = wan.config
    return {
        "_class_name": "WanModel", "_diffusers_version": "0.30.0", "model_type": model_type,
        "patch_size": list(c.patch_size), "dim": c.num_attention_heads * c.attention_head_dim, "ffn_dim": c.ffn_dim,
        "freq_dim": c.freq_dim, "in_dim": c.in_channels, "out_dim": c.out_channels, "num_heads": c.num_attention_heads,
        "num_layers": c.num_layers, "text_dim": c.text_dim, "eps": c.eps, "text_len": 512,
    }  # fmt: skip


def save_sharded(state_dict: dict[str, torch.Tensor], folder: Path, num_shards: int) -> None:
    """Write `diffusion_pytorch_model-0000i-of-0000n.safetensors` shards and their index, as the 14B releases are."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state_dict)
    weight_map = {}
    for i in range(num_shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {k: state_dict[k].contiguous() for k in keys[i::num_shards]}
        save_file(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state_dict.values())}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({**index, "weight_map": weight_map})
    )
