"""`DiTVideoTransformer3D.from_single_file` / `SpacetimeVAE.from_single_file` against diffusers' Wan classes.

Tiny random Wan checkpoints are written as one file in each layout the public files use (original keys, ComfyUI's
`model.diffusion_model.` prefix, diffusers keys; `.safetensors` and `.pth`), loaded with `from_single_file`, and
compared with diffusers' `WanTransformer3DModel` / `AutoencoderKLWan` holding the same weights. Criterion, fp32:
max |ours - diffusers| <= 1e-5 * max |diffusers| (VAE with oneDNN off, as in test_original_wan_layout.py).
"""

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from sora_diffusers import DiTVideoTransformer3D, SpacetimeVAE
from sora_diffusers.loaders.checkpoint_files import CheckpointError

from ..hub import add_to_hub_cache, use_hub_cache
from .wan_layouts import (
    WAN21_VAE_TINY,
    WAN22_VAE_TINY,
    assert_close_to_reference,
    tiny_wan_transformer,
    tiny_wan_vae,
    wan_transformer_to_original,
    wan_vae_to_original,
)


pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN"),
]
# Wan's 128-wide heads, so that the number of heads is read from the width as for the releases
WAN_128 = dict(num_attention_heads=2, attention_head_dim=128, ffn_dim=64, text_dim=16, freq_dim=32, num_layers=2)


def _transformer_parity(ours: DiTVideoTransformer3D, wan: WanTransformer3DModel) -> None:
    x, text = torch.randn(2, 4, 3, 6, 8), torch.randn(2, 7, 16)
    with torch.no_grad():
        assert_close_to_reference(
            ours(x, torch.tensor([999.0, 10.0]), text).sample, wan(x, torch.tensor([999.0, 10.0]), text).sample
        )


def _contiguous(state_dict: dict) -> dict:
    return {k: v.contiguous() for k, v in state_dict.items()}


def _public(config) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}


@pytest.fixture(scope="module")
def wan128():
    return tiny_wan_transformer(**WAN_128)


@pytest.mark.parametrize("layout", ["original", "comfyui", "diffusers"])
def test_transformer_single_file_matches_diffusers(wan128, tmp_path, layout):
    """Every size, the heads included (width // 128), comes from the file's shapes: no config is passed."""
    state_dict = wan128.state_dict()
    if layout != "diffusers":
        state_dict = wan_transformer_to_original(state_dict)
    if layout == "comfyui":
        state_dict = {f"model.diffusion_model.{k}": v for k, v in state_dict.items()}
    save_file(_contiguous(state_dict), tmp_path / "wan.safetensors")
    ours = DiTVideoTransformer3D.from_single_file(tmp_path / "wan.safetensors")
    expected = dict(num_attention_heads=2, attention_head_dim=128, in_channels=4, out_channels=4, text_dim=16)
    expected.update(freq_dim=32, ffn_dim=64, num_layers=2, patch_size=(1, 2, 2), per_frame_timesteps=False)
    assert {k: ours.config[k] for k in expected} == expected
    assert all(p.dtype == torch.float32 and not p.is_meta for p in ours.parameters()) and not ours.training
    _transformer_parity(ours, wan128)


def test_transformer_single_file_takes_heads_dtype_and_a_state_dict(tmp_path):
    wan = tiny_wan_transformer()  # 2 heads of 12: not Wan's 128
    original = wan_transformer_to_original(wan.state_dict())
    with pytest.raises(
        ValueError,
        match=r"the state dict: the width 24 is not a whole number of Wan's 128-wide heads; pass `num_attention_heads=`",
    ):
        DiTVideoTransformer3D.from_single_file(original)
    with pytest.raises(ValueError, match=r"the width 24 does not divide into `num_attention_heads`=5 heads"):
        DiTVideoTransformer3D.from_single_file(original, num_attention_heads=5)
    ours = DiTVideoTransformer3D.from_single_file(original, num_attention_heads=2)
    assert (ours.config.num_attention_heads, ours.config.attention_head_dim) == (2, 12)
    _transformer_parity(ours, wan)
    half = DiTVideoTransformer3D.from_single_file(original, num_attention_heads=2, torch_dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert torch.equal(half.proj_out.weight, wan.proj_out.weight.to(torch.bfloat16))


def test_transformer_single_file_with_a_diffusers_config_folder(tmp_path, wan128):
    """`config=` a diffusers Wan folder (`subfolder`), the way diffusers' own from_single_file takes one."""
    wan128.save_pretrained(tmp_path / "repo" / "transformer")
    save_file(_contiguous(wan128.state_dict()), tmp_path / "wan.safetensors")
    ours = DiTVideoTransformer3D.from_single_file(
        tmp_path / "wan.safetensors", config=str(tmp_path / "repo"), subfolder="transformer"
    )
    _transformer_parity(ours, wan128)


def test_transformer_single_file_of_our_layout_needs_its_config(tmp_path, tiny_transformer):
    save_file(_contiguous(tiny_transformer.state_dict()), tmp_path / "ours.safetensors")
    with pytest.raises(ValueError, match=r"ours\.safetensors: `patch_embedding\.weight` is 2-D .*pass `config=`"):
        DiTVideoTransformer3D.from_single_file(tmp_path / "ours.safetensors")
    tiny_transformer.save_config(tmp_path / "config")
    loaded = DiTVideoTransformer3D.from_single_file(tmp_path / "ours.safetensors", config=str(tmp_path / "config"))
    assert _public(loaded.config) == _public(tiny_transformer.config)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny_transformer.state_dict().values()))


def test_wan22_ti2v_width_reads_as_per_frame_timesteps():
    with torch.device("meta"):
        wan = WanTransformer3DModel(**{**WAN_128, "in_channels": 48, "out_channels": 48, "patch_size": (1, 2, 2)})
    ours = DiTVideoTransformer3D.from_single_file(wan_transformer_to_original(wan.state_dict()))
    assert ours.config.per_frame_timesteps and ours.config.in_channels == 48
    ours = DiTVideoTransformer3D.from_single_file(wan.state_dict(), per_frame_timesteps=False)
    assert not ours.config.per_frame_timesteps


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_wan21_vae_single_file_matches_diffusers(tmp_path, suffix):
    wan = tiny_wan_vae(WAN21_VAE_TINY)
    original = _contiguous(wan_vae_to_original(wan.state_dict()))
    path = tmp_path / f"wan_2.1_vae{suffix}"
    save_file(original, path) if suffix == ".safetensors" else torch.save(original, path)
    stats = {k: WAN21_VAE_TINY[k] for k in ("latents_mean", "latents_std")}  # Wan's own are for 16 channels
    ours = SpacetimeVAE.from_single_file(path, **stats)
    assert (ours.config.latents_mean, ours.config.latents_std) == (stats["latents_mean"], stats["latents_std"])
    video = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        assert_close_to_reference(ours.encode(video).latent_dist.mean, wan.encode(video).latent_dist.mean)
        z = wan.encode(video).latent_dist.mean
        assert_close_to_reference(ours.decode(z).sample, wan.decode(z).sample)


def test_wan22_vae_single_file_in_diffusers_layout(tmp_path):
    wan = tiny_wan_vae(WAN22_VAE_TINY)
    save_file(_contiguous(wan.state_dict()), tmp_path / "vae.safetensors")
    ours = SpacetimeVAE.from_single_file(tmp_path / "vae.safetensors")
    assert (ours.config.is_residual, ours.config.patch_size, ours.config.latent_channels) == (True, 2, 8)
    video = torch.rand(1, 3, 5, 32, 48) * 2 - 1
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        assert_close_to_reference(ours.encode(video).latent_dist.mean, wan.encode(video).latent_dist.mean)


def test_single_file_from_a_hub_url_in_the_local_cache(tmp_path, monkeypatch, wan128):
    """A Hub file URL resolves through huggingface_hub's own cache lookup (offline): `blob/REV`, `resolve/REV`."""
    cache = use_hub_cache(monkeypatch, tmp_path / "cache")
    save_file(_contiguous(wan_transformer_to_original(wan128.state_dict())), tmp_path / "w.safetensors")
    content = (tmp_path / "w.safetensors").read_bytes()
    commit = add_to_hub_cache(cache, "me/wan-repack", {"split_files/wan.safetensors": content}, revision="main")
    for url in (
        "https://huggingface.co/me/wan-repack/blob/main/split_files/wan.safetensors",
        f"https://huggingface.co/me/wan-repack/resolve/{commit}/split_files/wan.safetensors",
    ):
        _transformer_parity(DiTVideoTransformer3D.from_single_file(url), wan128)
    with pytest.raises(
        OSError, match=r"cannot get 'nope\.safetensors' of the Hub repo 'me/wan-repack' at revision 'main'"
    ):
        DiTVideoTransformer3D.from_single_file("https://huggingface.co/me/wan-repack/blob/main/nope.safetensors")


def test_single_file_bad_arguments_are_named(tmp_path, wan128):
    with pytest.raises(
        OSError, match=r"`pretrained_model_link_or_path_or_dict`='.*missing\.safetensors': no such file"
    ):
        DiTVideoTransformer3D.from_single_file(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match=r"is a GGUF \(quantized\) file, which is not supported"):
        DiTVideoTransformer3D.from_single_file("https://huggingface.co/city96/Wan2.1-T2V-14B-gguf/blob/main/a.gguf")
    with pytest.raises(ValueError, match=r"not a Hugging Face file URL"):
        DiTVideoTransformer3D.from_single_file("https://example.com/wan.safetensors")
    with pytest.raises(TypeError, match=r"must be a path, a Hugging Face file URL or a state dict, not int"):
        DiTVideoTransformer3D.from_single_file(3)
    with pytest.raises(TypeError, match=r"keywords that are not config entries: \['num_heads'\]"):
        DiTVideoTransformer3D.from_single_file(wan128.state_dict(), num_heads=2)
    with pytest.raises(TypeError, match=r"`dtype` must be a floating torch\.dtype, not torch\.int8"):
        DiTVideoTransformer3D.from_single_file(wan128.state_dict(), dtype=torch.int8)
    with pytest.raises(ValueError, match=r"is a 'WanTransformer3DModel' config; SpacetimeVAE takes"):
        SpacetimeVAE.from_single_file(wan128.state_dict(), config=dict(wan128.config))
    with pytest.raises(ValueError, match=r"the state dict: Not a Wan VAE state dict: no 'encoder\.conv_in\.weight'"):
        SpacetimeVAE.from_single_file(wan128.state_dict())
    with pytest.raises(ValueError, match=r"no `patch_embedding\.weight`: not a Wan transformer"):
        DiTVideoTransformer3D.from_single_file(tiny_wan_vae(WAN21_VAE_TINY).state_dict())


class _NotATensor:
    pass


def test_single_file_refuses_code_and_names_mismatched_weights(tmp_path, wan128):
    torch.save({"patch_embedding.weight": torch.zeros(1), "x": _NotATensor()}, tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match=r"code\.pth: refused by torch\.load\(weights_only=True\)"):
        DiTVideoTransformer3D.from_single_file(tmp_path / "code.pth")
    state_dict = dict(wan128.state_dict())
    del state_dict["blocks.1.ffn.net.2.bias"]
    with pytest.raises(ValueError, match=r"missing \['blocks\.1\.ffn\.net\.2\.bias'\]"):
        DiTVideoTransformer3D.from_single_file(state_dict)
