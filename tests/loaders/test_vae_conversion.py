"""Wan 2.1 parity: diffusers' AutoencoderKLWan weights -> SpacetimeVAE, then identical encode and decode.

Reference: `diffusers.AutoencoderKLWan` (0.42, `is_residual=False`) with random, perturbed weights (norm gains start at
one and biases at zero; noise makes them matter). Criterion, fp32: max |ours - diffusers| <= rtol * max |diffusers|,
for the posterior mean, its log-variance and the decoded video.
- Same convolution kernels on both sides (oneDNN switched off): SAME_KERNELS_RTOL. Measured: 0 (bit-identical).
- Default settings: PARITY_RTOL. Our CPU convolutions always take oneDNN, diffusers' take oneDNN or PyTorch's native
  kernel depending on the shape, so the sums are rounded in another order. Measured: up to 9.6e-6 over 5 seeds,
  the size of diffusers against itself with oneDNN on vs off (up to 1.0e-5, measured); hence 2e-5.
"""

import contextlib

import pytest
import torch
from diffusers import AutoencoderKLWan

from sora_diffusers.loaders.original_checkpoint import (
    WAN_VAE_KEY_MAP,
    convert_wan_vae_state_dict,
    load_converted_state_dict,
    wan_vae_config_to_spacetime,
)
from sora_diffusers.models.autoencoder_spacetime import SpacetimeVAE

from ..conftest import perturb_


PARITY_RTOL = 2e-5
SAME_KERNELS_RTOL = 5e-6  # oneDNN off: 0 for three shapes; 3.6e-6 for the decode of (1, 9, 8, 56) on an AVX-512
# AMD EPYC (its 1-latent-high maps take another BLAS blocking; 1e-6 held on the earlier machines' CPU)
WAN_TINY_CONFIG = dict(
    base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True]
)
WAN_TINY_CONFIG.update(latents_mean=[0.0, 0.1, -0.1, 0.2], latents_std=[1.0, 2.0, 0.5, 1.5])  # one per latent channel
# (B, T, H, W) videos: an image, odd latent lengths (T' = 2, 3), non-square both ways, odd latent sizes (3 x 5, 5 x 3).
PARITY_SHAPES = [(2, 1, 16, 16), (1, 5, 24, 40), (2, 9, 40, 24), (1, 9, 8, 56)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def wan_and_ours() -> tuple[AutoencoderKLWan, SpacetimeVAE]:
    torch.manual_seed(0)
    wan = perturb_(AutoencoderKLWan(**WAN_TINY_CONFIG)).eval()
    ours = SpacetimeVAE(**wan_vae_config_to_spacetime(dict(wan.config))).eval()
    load_converted_state_dict(ours, convert_wan_vae_state_dict(wan.state_dict()))
    return wan, ours


def _assert_parity(ours: torch.Tensor, wan: torch.Tensor, rtol: float = PARITY_RTOL) -> None:
    assert ours.shape == wan.shape
    assert wan.std() > 0.05  # a meaningful comparison: not a constant
    error, scale = (ours - wan).abs().max().item(), wan.abs().max().item()
    assert error <= rtol * scale, f"max error {error:.3g} vs scale {scale:.3g}"


@pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")
@pytest.mark.parametrize("same_kernels", [False, True], ids=["default", "same-kernels"])
@pytest.mark.parametrize("B, T, H, W", PARITY_SHAPES)
def test_encode_and_decode_match_diffusers(wan_and_ours, B, T, H, W, same_kernels):
    wan, ours = wan_and_ours
    x = torch.rand(B, 3, T, H, W) * 2 - 1
    rtol = SAME_KERNELS_RTOL if same_kernels else PARITY_RTOL
    kernels = torch.backends.mkldnn.flags(enabled=False) if same_kernels else contextlib.nullcontext()
    with torch.no_grad(), kernels:
        posterior_wan, posterior_ours = wan.encode(x).latent_dist, ours.encode(x).latent_dist
        _assert_parity(posterior_ours.mean, posterior_wan.mean, rtol)
        _assert_parity(posterior_ours.logvar, posterior_wan.logvar, rtol)
        z = posterior_wan.mean
        _assert_parity(ours.decode(z).sample, wan.decode(z).sample, rtol)


def test_whole_clip_matches_diffusers_too(wan_and_ours):
    """Without temporal chunking our layers see all frames at once; diffusers always runs frame 0, then 4 at a time."""
    wan, ours = wan_and_ours
    x = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    ours.disable_temporal_chunking()
    with torch.no_grad():
        z = wan.encode(x).latent_dist.mean
        _assert_parity(ours.encode(x).latent_dist.mean, z)
        _assert_parity(ours.decode(z).sample, wan.decode(z).sample)
    ours.enable_temporal_chunking(1)


def test_tiled_encode_and_decode_match_diffusers_tiling(wan_and_ours):
    """Same tiles, same linear blends: ours keeps only the bands still to be blended, diffusers every tile."""
    wan, ours = wan_and_ours
    x = torch.rand(1, 3, 5, 48, 72) * 2 - 1  # 2 x 3 tiles of 32 px every 16 / 24 px
    tiling = dict(tile_sample_min_height=32, tile_sample_min_width=32)
    tiling.update(tile_sample_stride_height=16, tile_sample_stride_width=24)
    wan.enable_tiling(**tiling)
    ours.enable_tiling(**tiling)
    with torch.no_grad():
        posterior_wan, posterior_ours = wan.encode(x).latent_dist, ours.encode(x).latent_dist
        z = posterior_wan.mean
        video_wan, video_ours = wan.decode(z).sample, ours.decode(z).sample
    wan.disable_tiling()
    ours.disable_tiling()
    _assert_parity(posterior_ours.mean, posterior_wan.mean)
    _assert_parity(posterior_ours.logvar, posterior_wan.logvar)
    _assert_parity(video_ours, video_wan)


def test_default_config_matches_wan21_state_dict():
    """SpacetimeVAE() is Wan 2.1's VAE: same keys and shapes as diffusers' default AutoencoderKLWan (meta device)."""
    with torch.device("meta"):
        wan, ours = AutoencoderKLWan(), SpacetimeVAE()
    converted = convert_wan_vae_state_dict(wan.state_dict())
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert wan_vae_config_to_spacetime(dict(wan.config)) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in ours.config.items() if k[0] != "_"
    }


def test_key_map_is_the_identity_on_wan_keys(wan_and_ours):
    wan, _ = wan_and_ours
    state_dict = wan.state_dict()
    converted = convert_wan_vae_state_dict(state_dict)
    assert list(converted) == list(state_dict) and all(converted[k] is state_dict[k] for k in state_dict)
    assert len(WAN_VAE_KEY_MAP) == 12  # 9 Wan 2.1 rules, 3 for Wan 2.2's residual levels


def test_conversion_rejects_unknown_keys_listing_them(wan_and_ours):
    state_dict = dict(wan_and_ours[0].state_dict())
    state_dict["decoder.up_blocks.0.avg_shortcut.weight"] = torch.zeros(1)  # a Wan 2.2 residual-VAE key
    state_dict["encoder.extra.bias"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"2 of \d+ keys match no rule.*avg_shortcut.*encoder\.extra\.bias"):
        convert_wan_vae_state_dict(state_dict)


def test_conversion_renames_the_original_wan_layout_first():
    """Original-layout keys (`Wan2.1_VAE.pth`) are renamed, not refused (parity: test_original_wan_layout.py)."""
    converted = convert_wan_vae_state_dict({"encoder.downsamples.0.residual.0.gamma": torch.ones(8, 1, 1, 1)})
    assert list(converted) == ["encoder.down_blocks.0.norm1.gamma"]


def test_loading_checks_counts_and_shapes(wan_and_ours):
    wan, ours = wan_and_ours
    converted = convert_wan_vae_state_dict(wan.state_dict())
    missing = {k: v for k, v in converted.items() if k != "decoder.conv_out.bias"}
    with pytest.raises(ValueError, match=r"missing \['decoder\.conv_out\.bias'\]"):
        load_converted_state_dict(ours, missing)
    misshapen = {**converted, "quant_conv.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"misshapen \['quant_conv\.bias: checkpoint \(3,\) vs model \(8,\)'\]"):
        load_converted_state_dict(ours, misshapen)


def test_config_conversion_keeps_wan22_options():
    config = wan_vae_config_to_spacetime({**WAN_TINY_CONFIG, "is_residual": True, "decoder_base_dim": 16})
    assert (config["is_residual"], config["decoder_base_dim"]) == (True, 16)
    with pytest.raises(ValueError, match="is_residual=True` ignores `attn_scales`"):
        wan_vae_config_to_spacetime({**WAN_TINY_CONFIG, "is_residual": True, "attn_scales": [0.5]})


def test_patched_vae_matches_diffusers_patch_size():
    """Wan 2.2's pixel patching (`patch_size=2`, without its residual blocks): same channel order as diffusers, so
    the weights convert unchanged and encode / decode agree; diffusers' config counts 12 patched channels, ours 3."""
    torch.manual_seed(0)
    config = {**WAN_TINY_CONFIG, "patch_size": 2, "in_channels": 12, "out_channels": 12}
    wan = perturb_(AutoencoderKLWan(**config)).eval()
    converted_config = wan_vae_config_to_spacetime(dict(wan.config))
    assert (converted_config["in_channels"], converted_config["patch_size"]) == (3, 2)
    ours = SpacetimeVAE(**converted_config).eval()
    load_converted_state_dict(ours, convert_wan_vae_state_dict(wan.state_dict()))
    assert ours.spatial_compression_ratio == 16
    x = torch.rand(2, 3, 5, 32, 48) * 2 - 1
    with torch.no_grad():
        posterior_wan, posterior_ours = wan.encode(x).latent_dist, ours.encode(x).latent_dist
        _assert_parity(posterior_ours.mean, posterior_wan.mean)
        _assert_parity(posterior_ours.logvar, posterior_wan.logvar)
        z = posterior_wan.mean
        _assert_parity(ours.decode(z).sample, wan.decode(z).sample)
