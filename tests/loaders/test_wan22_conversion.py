"""Wan 2.2 TI2V-5B: its residual VAE (4x16x16, 48 channels at full size) and its per-frame-timestep transformer.

- `SpacetimeVAE(is_residual=True, ...)` against diffusers' `AutoencoderKLWan(is_residual=True)`, tiny random weights,
  encode and decode, fp32 <= 1e-5 relative (oneDNN off on both sides, so both use the same convolution kernels).
- A tiny TI2V checkpoint (diffusers layout, `expand_timesteps`) converted by the script: image-to-video through our
  per-frame timesteps equals diffusers' `WanImageToVideoPipeline(expand_timesteps=True)` on the same weights, noise,
  scheduler and prompt embeddings; a converted Wan 2.1 checkpoint instead re-noises its conditioning frames.
"""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline

from sora_diffusers import SoraImageToVideoPipeline, SpacetimeVAE
from sora_diffusers.loaders.original_checkpoint import (
    convert_wan_vae_state_dict,
    load_converted_state_dict,
    wan_vae_config_to_spacetime,
)

from .wan_layouts import WAN22_VAE_TINY, tiny_wan_transformer, tiny_wan_vae


RTOL = 1e-5
SCRIPT = Path(__file__).resolve().parents[2] / "conversion_scripts" / "convert_wan_to_sora.py"
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN"),
]


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, rtol: float = RTOL) -> None:
    assert ours.shape == reference.shape
    assert reference.std() > 0.05, "reference output is degenerate"
    error, scale = (ours - reference).abs().max().item(), reference.abs().max().item()
    assert error <= rtol * scale, f"max error {error:.3g} vs scale {scale:.3g}"


@pytest.fixture(scope="module")
def residual_vaes():
    wan = tiny_wan_vae(WAN22_VAE_TINY)
    ours = SpacetimeVAE(**wan_vae_config_to_spacetime(dict(wan.config))).eval()
    load_converted_state_dict(ours, convert_wan_vae_state_dict(wan.state_dict()))
    return wan, ours


@pytest.mark.parametrize("B, T, H, W", [(2, 1, 32, 32), (1, 5, 32, 48), (1, 13, 48, 32), (2, 9, 16, 80)])
@pytest.mark.parametrize("chunk", [1, None], ids=["chunked", "whole-clip"])
def test_residual_vae_matches_diffusers(residual_vaes, B, T, H, W, chunk):
    """Encode and decode of Wan 2.2's residual VAE; our temporal chunking (one latent frame, as diffusers runs) and
    whole clips (every layer sees all frames: the shortcuts' frame-0 padding must agree)."""
    wan, ours = residual_vaes
    assert ours.spatial_compression_ratio == 16 and ours.temporal_compression_ratio == 4
    ours.num_latent_frames_per_chunk = chunk
    x = torch.rand(B, 3, T, H, W) * 2 - 1
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        posterior_wan, posterior_ours = wan.encode(x).latent_dist, ours.encode(x).latent_dist
        _assert_close(posterior_ours.mean, posterior_wan.mean)
        _assert_close(posterior_ours.logvar, posterior_wan.logvar)
        z = posterior_wan.mean
        _assert_close(ours.decode(z).sample, wan.decode(z).sample)
    ours.enable_temporal_chunking(1)


def test_residual_vae_matches_diffusers_with_default_kernels(residual_vaes):
    """With each side's own CPU kernels (oneDNN on, as in use) the difference stays at rounding level.

    Spatial tiling is not compared: for a patched VAE diffusers cuts encode tiles from the patched video with the
    sample-pixel sizes (tiles twice as large as asked) and blends decoded tiles before unpatchifying (ramps in steps
    of 2 pixels); ours measures and blends in video pixels. Both are seam blends; neither is Wan's untiled output."""
    wan, ours = residual_vaes
    x = torch.rand(1, 3, 5, 64, 96) * 2 - 1
    with torch.no_grad():
        z = wan.encode(x).latent_dist.mean
        _assert_close(ours.encode(x).latent_dist.mean, z, rtol=2e-5)
        _assert_close(ours.decode(z).sample, wan.decode(z).sample, rtol=2e-5)


def test_residual_vae_config_checks():
    with pytest.raises(ValueError, match=r"`attn_scales`=\[0\.5\] needs `is_residual=False`"):
        SpacetimeVAE(is_residual=True, attn_scales=(0.5,))
    with pytest.raises(ValueError, match="`decoder_base_dim` must be a positive int or None, got 0"):
        SpacetimeVAE(decoder_base_dim=0)
    with torch.device("meta"):  # the TI2V-5B VAE's size: every key and shape of diffusers' (no memory)
        from diffusers import AutoencoderKLWan

        config = dict(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, patch_size=2, in_channels=12,
                      out_channels=12, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)  # fmt: skip
        wan = AutoencoderKLWan(**config)
        ours = SpacetimeVAE(**wan_vae_config_to_spacetime(dict(wan.config)))
    converted = convert_wan_vae_state_dict(wan.state_dict())
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert sum(v.numel() for v in converted.values()) == sum(p.numel() for p in ours.parameters())


# ---- TI2V: per-frame timesteps -------------------------------------------------------------------------------------


def _script():
    spec = importlib.util.spec_from_file_location("convert_wan_to_sora", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _scheduler(flow_shift: float = 5.0) -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=flow_shift
    )


@pytest.fixture(scope="module")
def ti2v(tmp_path_factory):
    """A tiny Wan 2.2 TI2V checkpoint in diffusers' layout (`expand_timesteps`), and its conversion."""
    transformer = tiny_wan_transformer(in_channels=8, out_channels=8)
    vae = tiny_wan_vae(WAN22_VAE_TINY)
    root = tmp_path_factory.mktemp("ti2v")
    WanPipeline(None, None, vae, _scheduler(), transformer, expand_timesteps=True).save_pretrained(root / "wan")
    assert _script().main(["--source", str(root / "wan"), "--output_dir", str(root / "sora")]) == 0
    pipe = SoraImageToVideoPipeline.from_pretrained(root / "sora")
    return transformer, vae, pipe


def _image(height: int, width: int) -> PIL.Image.Image:
    rng = np.random.default_rng(0)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _record_timesteps(transformer) -> list[torch.Tensor]:
    seen = []
    transformer.register_forward_pre_hook(lambda _, args, kwargs: seen.append(args[1].clone()), with_kwargs=True)
    return seen


def test_ti2v_converts_with_per_frame_timesteps(ti2v):
    _, _, pipe = ti2v
    assert pipe.transformer.config.per_frame_timesteps is True
    assert pipe.transformer.config.in_channels == 8 and pipe.vae.config.is_residual is True
    assert pipe.vae_scale_factor_spatial == 16 and pipe.scheduler.config.flow_shift == 5.0
    assert (pipe.config.default_height, pipe.config.default_width, pipe.config.default_num_frames) == (704, 1280, 121)


def test_ti2v_image_to_video_matches_diffusers(ti2v):
    """Frame 0 is the clean image latent at timestep 0, the other frames are denoised: what diffusers' TI2V does."""
    transformer, vae, pipe = ti2v
    reference = WanImageToVideoPipeline(None, None, vae, _scheduler(), transformer=transformer, expand_timesteps=True)
    ours = SoraImageToVideoPipeline(None, None, copy.deepcopy(pipe.transformer), pipe.vae, _scheduler())
    ours.set_progress_bar_config(disable=True)
    reference.set_progress_bar_config(disable=True)
    H, W, T = 32, 64, 9
    torch.manual_seed(1)
    embeds, negative = torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    noise = torch.randn(1, 8, 3, H // 16, W // 16)
    common = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, height=H, width=W, num_frames=T,
                  num_inference_steps=4, guidance_scale=4.0, latents=noise, output_type="latent")  # fmt: skip
    seen = _record_timesteps(ours.transformer)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        expected = reference(image=_image(H, W), **common).frames
        got = ours(_image(H, W), **common).frames
    _assert_close(got, expected)
    assert all(t.shape == (2, 3) and (t[:, 0] == 0).all() and (t[:, 1:] > 0).all() for t in seen)  # (2B, T')


def test_wan21_image_to_video_falls_back_to_renoised_replacement(ti2v):
    """Without per-frame training (converted Wan 2.1), every frame is told the step's timestep and the image latent
    enters re-noised to that level: (1 - sigma) * image + sigma * noise, with the run's fixed noise."""
    _, _, pipe = ti2v
    transformer = copy.deepcopy(pipe.transformer)
    transformer.register_to_config(per_frame_timesteps=False)
    ours = SoraImageToVideoPipeline(None, None, transformer, pipe.vae, _scheduler())
    ours.set_progress_bar_config(disable=True)
    seen = []
    transformer.register_forward_pre_hook(lambda _, args: seen.append((args[0].clone(), args[1].clone())))
    image, noise = _image(32, 64), torch.randn(1, 8, 3, 2, 4)
    with torch.no_grad():
        ours(image, prompt_embeds=torch.randn(1, 6, 16), height=32, width=64, num_frames=9, num_inference_steps=3,
             guidance_scale=1.0, latents=noise, output_type="latent")  # fmt: skip
        image_latent = ours.encode_video(ours.preprocess_frames(image, 32, 64))  # (1, 8, 1, 2, 4)
    assert [tuple(t.shape) for _, t in seen] == [(1,)] * 3  # one timestep per video, never per frame
    for (model_input, t), step_t, sigma in zip(seen, ours.scheduler.timesteps, ours.scheduler.sigmas[:3].tolist()):
        assert t.tolist() == [float(step_t)]
        renoised = (1 - sigma) * image_latent + sigma * noise[:, :, :1]
        assert torch.allclose(model_input[:, :, :1], renoised, atol=1e-6), sigma
    assert 0 < ours.scheduler.sigmas[1] < 1  # a step where image and noise are both present


def test_original_ti2v_release_layout_converts(tmp_path, ti2v):
    """Wan2.2-TI2V-5B as released: config.json with model_type "ti2v", sharded original keys, Wan2.2_VAE.pth."""
    import json

    from .wan_layouts import original_model_config, save_sharded, wan_transformer_to_original, wan_vae_to_original

    transformer, vae, converted = ti2v
    folder = tmp_path / "Wan2.2-TI2V-tiny"
    save_sharded(wan_transformer_to_original(transformer.state_dict()), folder, num_shards=2)
    (folder / "config.json").write_text(json.dumps(original_model_config(transformer, model_type="ti2v")))
    torch.save(wan_vae_to_original(vae.state_dict(), num_res_blocks=1), folder / "Wan2.2_VAE.pth")
    out = tmp_path / "sora"
    assert _script().main(["--source", str(folder), "--output_dir", str(out), "--text_encoder", "none"]) == 0
    pipe = SoraImageToVideoPipeline.from_pretrained(out)
    assert pipe.transformer.config.per_frame_timesteps is True and pipe.vae.config.is_residual is True
    assert pipe.scheduler.config.flow_shift == 5.0
    for name in ("transformer", "vae"):
        ours, reference = getattr(pipe, name).state_dict(), getattr(converted, name).state_dict()
        assert set(ours) == set(reference) and all(torch.equal(ours[k], reference[k]) for k in ours), name


def test_ti2v_5b_transformer_config_converts_at_full_size():
    """Wan2.2-TI2V-5B's transformer config (48 channels in and out): same keys, shapes and parameter count (meta)."""
    from diffusers import WanTransformer3DModel

    from sora_diffusers import DiTVideoTransformer3D
    from sora_diffusers.loaders.original_checkpoint import (
        convert_wan_transformer_state_dict,
        wan_transformer_config_to_sora,
    )

    config = dict(num_attention_heads=24, attention_head_dim=128, ffn_dim=14336, num_layers=30, in_channels=48,
                  out_channels=48, text_dim=4096, freq_dim=256)  # fmt: skip
    with torch.device("meta"):
        wan = WanTransformer3DModel(**config)
        ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config), per_frame_timesteps=True))
    converted = convert_wan_transformer_state_dict(wan.state_dict())
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in wan.parameters()) == 4_999_787_712
