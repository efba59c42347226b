"""SpacetimeVAE: shapes, causality, chunked == unchunked, tiling, slicing, streaming decode, save/load, gradient
checkpointing, errors.

Tiny random-weight configs (base_dim 8): every test runs in about a second on 2 CPU cores. Parity with diffusers'
AutoencoderKLWan is in tests/loaders/test_vae_conversion.py.
"""

import pytest
import torch

from sora_diffusers.models.autoencoder_spacetime import (
    WAN_LATENTS_MEAN,
    WAN_LATENTS_STD,
    SpacetimeVAE,
    patchify,
    unpatchify,
)
from sora_diffusers.models.causal_conv import CausalCache, CausalConv3d

from ..conftest import perturb_


# 4x time, 8x space, 4 latent channels.
TINY_VAE_CONFIG = dict(
    latent_channels=4, base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1, latents_mean=None, latents_std=None
)
# Chunking changes the shapes the convolutions see, so oneDNN rounds fp32 sums in another order. Relative to the
# output's largest value, measured up to 6.6e-6 (decode, chunks of 1, 4 seeds), the same size as diffusers' own
# variation between its CPU convolution kernels (tests/loaders/test_vae_conversion.py). In float64 the chunked and
# whole-clip results agree to FLOAT64_RTOL: the algebra is the same, only the rounding differs.
CHUNK_RTOL = 2e-5
FLOAT64_RTOL = 1e-12


def _video(B: int = 1, T: int = 5, H: int = 16, W: int = 24) -> torch.Tensor:
    return torch.rand(B, 3, T, H, W) * 2 - 1  # (B, C, T, H, W) in [-1, 1]


def _public(config) -> dict:
    """Config values without private keys, tuples as lists (JSON turns our tuple defaults into lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items() if not k.startswith("_")}


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shared_vae() -> SpacetimeVAE:
    torch.manual_seed(0)
    return perturb_(SpacetimeVAE(**TINY_VAE_CONFIG)).eval()


@pytest.fixture
def vae(shared_vae) -> SpacetimeVAE:
    """The module's VAE, with its inference options back at their defaults after each test."""
    yield shared_vae
    shared_vae.float().enable_temporal_chunking(1)
    shared_vae.disable_tiling()
    shared_vae.disable_slicing()


# ---- shapes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T, H, W", [(1, 8, 8), (5, 16, 24), (9, 24, 16), (13, 40, 8)])
def test_latent_and_output_shapes(vae, T, H, W):
    with torch.no_grad():
        posterior = vae.encode(_video(2, T, H, W)).latent_dist
        z = posterior.mode()
        assert z.shape == (2, 4, 1 + (T - 1) // 4, H // 8, W // 8)  # T' = 1 + (T - 1) / 4
        assert posterior.sample(torch.Generator().manual_seed(0)).shape == z.shape
        assert vae.decode(z).sample.shape == (2, 3, T, H, W)


@pytest.mark.parametrize(
    "dim_mult, temporal_downsample, patch_size, ratios",
    [
        ((1, 2, 2, 2), (False, True, True), 1, (4, 8)),
        ((1, 2, 2, 2, 2), (False, False, True, True), 1, (4, 16)),
        ((1, 2, 2, 2), (False, True, True), 2, (4, 16)),
    ],
)
def test_compression_ratios_follow_config(dim_mult, temporal_downsample, patch_size, ratios):
    config = {**TINY_VAE_CONFIG, "dim_mult": dim_mult, "temporal_downsample": temporal_downsample}
    config["patch_size"] = patch_size
    vae = SpacetimeVAE(**config).eval()
    r_t, r_s = ratios
    assert (vae.temporal_compression_ratio, vae.spatial_compression_ratio) == ratios
    with torch.no_grad():
        z = vae.encode(_video(1, 1 + 2 * r_t, 2 * r_s, r_s)).latent_dist.mode()
        assert z.shape == (1, 4, 3, 2, 1)
        assert vae.decode(z).sample.shape == (1, 3, 1 + 2 * r_t, 2 * r_s, r_s)


def test_patchify_folds_pixel_blocks_into_channels_and_unpatchify_inverts_it():
    x = torch.arange(2 * 3 * 2 * 4 * 6, dtype=torch.float32).reshape(2, 3, 2, 4, 6)
    patched = patchify(x, 2)
    assert patched.shape == (2, 12, 2, 2, 3)
    # channel c * 4 + j * 2 + i holds channel c at row offset i, column offset j (diffusers' Wan 2.2 order)
    assert torch.equal(patched[:, 1 * 4 + 1 * 2 + 0], x[:, 1, :, 0::2, 1::2])
    assert torch.equal(patched[:, 2 * 4 + 0 * 2 + 1], x[:, 2, :, 1::2, 0::2])
    assert torch.equal(unpatchify(patched, 2), x)
    assert patchify(x, 1) is x and unpatchify(x, 1) is x


def test_patched_vae_chunked_and_tiled_decode_equal_the_whole_clip():
    """Patching is per frame and per pixel block: chunks and (patch-aligned) tiles see the same patched pixels."""
    torch.manual_seed(0)
    vae = perturb_(SpacetimeVAE(**{**TINY_VAE_CONFIG, "patch_size": 2})).eval().double()
    x = _video(1, 9, 32, 48).double()
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        assert z.shape == (1, 4, 3, 2, 3)
        video = vae.decode(z).sample
        vae.disable_temporal_chunking()
        assert _rel_err(vae.encode(x).latent_dist.mode(), z) <= FLOAT64_RTOL
        assert _rel_err(vae.decode(z).sample, video) <= FLOAT64_RTOL
        vae.enable_tiling(32, 32, 16, 16)
        streamed = torch.cat(list(vae.decode_frames(z, num_latent_frames=1)), dim=2)
        assert _rel_err(streamed, vae.decode(z).sample) <= FLOAT64_RTOL


def test_default_config_is_wan21():
    with torch.device("meta"):
        vae = SpacetimeVAE()
    assert (vae.temporal_compression_ratio, vae.spatial_compression_ratio) == (4, 8)
    assert (vae.config.base_dim, vae.config.latent_channels, tuple(vae.config.dim_mult)) == (96, 16, (1, 2, 4, 4))
    assert tuple(vae.config.latents_mean) == WAN_LATENTS_MEAN and tuple(vae.config.latents_std) == WAN_LATENTS_STD
    assert vae.config.patch_size == 1


# ---- causality --------------------------------------------------------------------------------------------------


def test_causal_conv_pads_only_before_the_frames():
    conv = CausalConv3d(1, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
        x = torch.zeros(1, 1, 3, 3, 3)
        x[:, :, 2] = 1.0  # only the last frame is non-zero
        y = conv(x)
    assert y.shape == x.shape
    assert y[:, :, :2].abs().max() == 0  # earlier outputs never see a later frame
    assert y[0, 0, 2, 1, 1] == 9  # the last output sees its own frame's 3x3 window


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the per-tap path runs on oneDNN only")
@pytest.mark.parametrize("kernel, padding", [(3, 1), ((3, 1, 1), (1, 0, 0))])  # residual conv; time upsampler conv
def test_causal_conv_per_tap_path_matches_the_padded_buffer_path(kernel, padding):
    """CPU fp32 inference takes `_forward_onednn` (one 2D conv per temporal tap, channels-last, cache rolled in
    place); float64 takes the padded-buffer path. Chunks shorter and longer than the 2-frame context, batch 2."""
    torch.manual_seed(0)
    conv = CausalConv3d(3, 5, kernel, padding=padding)
    x = torch.randn(2, 3, 12, 6, 7)
    cache, reference_cache, outputs, references, cache_tensors = CausalCache(), CausalCache(), [], [], []
    with torch.no_grad():
        start = 0
        for size in (1, 1, 3, 2, 5):
            outputs.append(conv(x[:, :, start : start + size], cache))
            references.append(conv.double()(x[:, :, start : start + size].double(), reference_cache))
            conv.float()
            cache_tensors.append(cache.get(conv))
            start += size
        whole = conv(x)  # no cache: zeros before frame 0
    streamed, reference = torch.cat(outputs, dim=2), torch.cat(references, dim=2)
    assert streamed.shape == (2, 5, 12, 6, 7)
    assert all(out.is_contiguous(memory_format=torch.channels_last_3d) for out in outputs)
    assert _rel_err(streamed.double(), reference) <= 1e-6
    assert _rel_err(whole.double(), reference) <= 1e-6
    torch.testing.assert_close(cache.get(conv).double(), reference_cache.get(conv), rtol=0, atol=1e-6)
    # After the first chunk the cache's tensor is rewritten in place, not replaced by a new one per chunk.
    assert len({t.data_ptr() for t in cache_tensors[1:]}) == 1


def test_encoder_is_causal(vae):
    x = _video(1, 9)
    y = x.clone()
    y[:, :, 5:] = torch.rand_like(y[:, :, 5:])  # change the frames of latent frame 2 only
    with torch.no_grad():
        zx, zy = vae.encode(x).latent_dist.mode(), vae.encode(y).latent_dist.mode()
    assert torch.equal(zx[:, :, :2], zy[:, :, :2])  # frames 0..4 -> latent frames 0, 1: unchanged
    assert (zx[:, :, 2] - zy[:, :, 2]).abs().max() > 1e-3


def test_decoder_is_causal(vae):
    z = torch.randn(1, 4, 3, 2, 3)
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    with torch.no_grad():
        a, b = vae.decode(z).sample, vae.decode(z2).sample
    assert torch.equal(a[:, :, :5], b[:, :, :5])  # latent frames 0, 1 -> frames 0..4
    assert (a[:, :, 5:] - b[:, :, 5:]).abs().max() > 1e-3


def test_image_is_a_one_frame_video(vae):
    video = _video(2, 5)
    with torch.no_grad():
        z_image = vae.encode(video[:, :, :1]).latent_dist.mode()
        z_video = vae.encode(video).latent_dist.mode()
        image = vae.decode(z_image).sample
    assert z_image.shape == (2, 4, 1, 2, 3) and image.shape == (2, 3, 1, 16, 24)
    torch.testing.assert_close(z_image, z_video[:, :, :1], rtol=0, atol=1e-6)


# ---- chunking, tiling, slicing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, CHUNK_RTOL), (torch.float64, FLOAT64_RTOL)])
@pytest.mark.parametrize("num_latent_frames", [1, 2, 3])
def test_chunked_equals_unchunked(vae, num_latent_frames, dtype, rtol):
    vae = vae.double() if dtype == torch.float64 else vae
    x = _video(1, 13, 16, 16).to(dtype)  # 4 latent frames: chunks of 3 leave a remainder
    with torch.no_grad():
        vae.disable_temporal_chunking()
        params_whole = vae.encode(x).latent_dist.parameters
        video_whole = vae.decode(params_whole[:, :4]).sample
        vae.enable_temporal_chunking(num_latent_frames)
        params_chunked = vae.encode(x).latent_dist.parameters
        video_chunked = vae.decode(params_whole[:, :4]).sample
    assert _rel_err(params_chunked, params_whole) <= rtol
    assert _rel_err(video_chunked, video_whole) <= rtol
    assert video_whole.std() > 0.05  # not a constant output


def test_causal_cache_carries_one_entry_per_causal_layer():
    conv = CausalConv3d(2, 2, 3, padding=1)
    cache, x = CausalCache(), torch.randn(1, 2, 5, 4, 4)
    with torch.no_grad():
        whole = conv(x)
        streamed = torch.cat([conv(x[:, :, t : t + 1], cache) for t in range(5)], dim=2)
    assert cache.get(conv).shape == (1, 2, 2, 4, 4)  # the last 2 input frames: the temporal kernel's context
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-5)


def test_slicing_matches_batched(vae):
    x = _video(3, 5)
    with torch.no_grad():
        params = vae.encode(x).latent_dist.parameters
        video = vae.decode(params[:, :4]).sample
        vae.enable_slicing()
        params_sliced = vae.encode(x).latent_dist.parameters
        video_sliced = vae.decode(params[:, :4]).sample
    assert _rel_err(params_sliced, params) <= CHUNK_RTOL and _rel_err(video_sliced, video) <= CHUNK_RTOL


def test_tiling_is_inactive_when_the_input_fits_one_tile(vae):
    x = _video(1, 5, 32, 32)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        video = vae.decode(z).sample
        vae.enable_tiling(32, 32, 24, 24)
        assert torch.equal(vae.encode(x).latent_dist.mode(), z) and torch.equal(vae.decode(z).sample, video)


def test_tiled_decode_matches_untiled_away_from_seams():
    """Tiles with diffusers' default sizes (256 px, stride 192) over a 192 x 384 frame: two tiles side by side,
    blended over 64 columns. The mid-block attention sees the whole frame, so it is switched off (output projection
    zeroed) to make the network local: its receptive field is then ~13 latent pixels (~100 px, measured), so pixels
    more than 104 px from a tile's inner edge must not change at all, and the rest only near the seam."""
    torch.manual_seed(0)
    vae = perturb_(SpacetimeVAE(**TINY_VAE_CONFIG)).eval()
    for block in (vae.encoder.mid_block, vae.decoder.mid_block):
        block.attentions[0].proj.weight.data.zero_()
        block.attentions[0].proj.bias.data.zero_()
    z = torch.randn(1, 4, 2, 24, 48)  # -> (1, 3, 5, 192, 384)
    with torch.no_grad():
        untiled = vae.decode(z).sample
        vae.enable_tiling(256, 256, 192, 192)
        tiled = vae.decode(z).sample
    # Tile 1 covers columns 0..256 (outputs 0..192), tile 2 columns 192..384: exact outside 152..296.
    assert _rel_err(tiled[..., :152], untiled[..., :152]) <= CHUNK_RTOL
    assert _rel_err(tiled[..., 296:], untiled[..., 296:]) <= CHUNK_RTOL
    seam = (tiled - untiled)[..., 152:296].abs()
    assert seam.max() > 1e-3  # the seam does differ: the test would catch tiles that are never blended
    # Random weights spread border effects undamped; still, the frame as a whole stays within 10%.
    assert (tiled - untiled).abs().mean() <= 0.1 * untiled.abs().mean()


def test_enable_tiling_rejects_gaps_and_misaligned_tiles(vae):
    with pytest.raises(ValueError, match="tile_sample_stride_width.*must not exceed"):
        vae.enable_tiling(64, 64, 64, 96)
    with pytest.raises(ValueError, match="tile_sample_min_height.*multiple of spatial_compression_ratio=8"):
        vae.enable_tiling(60, 64, 32, 32)
    assert not vae.use_tiling


# ---- streaming decode -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_latent_frames", [1, 2, 3])
@pytest.mark.parametrize("T_latent", [1, 2, 4])
def test_decode_frames_concatenate_to_decode(vae, num_latent_frames, T_latent):
    z = torch.randn(2, 4, T_latent, 2, 3)
    vae.enable_temporal_chunking(num_latent_frames)
    with torch.no_grad():
        video = vae.decode(z).sample
        chunks = list(vae.decode_frames(z))
    assert torch.equal(torch.cat(chunks, dim=2), video)  # the same decode loop, so bit for bit
    num_frames = [chunk.shape[2] for chunk in chunks]
    assert sum(num_frames) == 1 + 4 * (T_latent - 1)
    assert max(num_frames) <= num_latent_frames or num_latent_frames >= T_latent  # else one block: the whole clip
    assert all(chunk.shape == (2, 3, n, 16, 24) for chunk, n in zip(chunks, num_frames))
    assert all(chunk.abs().max() <= 1.0 for chunk in chunks)


def test_decode_frames_of_one_latent_frame_is_one_image(vae):
    z = torch.randn(1, 4, 1, 2, 3)
    with torch.no_grad():
        (chunk,) = vae.decode_frames(z)
        assert torch.equal(chunk, vae.decode(z).sample) and chunk.shape == (1, 3, 1, 16, 24)


def test_decode_frames_argument_overrides_the_chunking_setting(vae):
    z = torch.randn(1, 4, 4, 2, 2)
    vae.disable_temporal_chunking()
    with torch.no_grad():
        video = vae.decode(z).sample  # in one piece
        default = list(vae.decode_frames(z))  # chunking disabled: still one latent frame per step
        by_three = list(vae.decode_frames(z, num_latent_frames=3))
    assert max(chunk.shape[2] for chunk in default) == 1 and max(chunk.shape[2] for chunk in by_three) == 3
    for chunks in (default, by_three):
        assert _rel_err(torch.cat(chunks, dim=2), video) <= CHUNK_RTOL  # other chunk sizes: float rounding only


def test_decode_frames_is_lazy(vae):
    """Pulling a chunk decodes just the latent frames it needs: the stream never runs ahead of its consumer."""
    seen = []
    handle = vae.post_quant_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[2]))
    try:
        with torch.no_grad():
            stream = vae.decode_frames(torch.randn(1, 4, 5, 2, 2))
            assert seen == []
            assert next(stream).shape[2] == 1 and seen == [1]  # frame 0 comes from latent frame 0 alone
            assert sum(chunk.shape[2] for chunk in stream) == 16 and seen == [1] * 5
    finally:
        handle.remove()


def test_decode_frames_with_slicing_and_tiling_equals_decode(vae):
    z = torch.randn(2, 4, 3, 6, 7)  # 48 x 56 pixels: 3 x 4 tiles of 32 pixels at stride 16
    with torch.no_grad():
        untiled = vae.decode(z).sample
        vae.enable_slicing()
        vae.enable_tiling(32, 32, 16, 16)
        video = vae.decode(z).sample  # one tile after the other
        chunks = list(vae.decode_frames(z))  # all tiles one chunk at a time
    assert not torch.allclose(video, untiled, atol=1e-3)  # tiling did apply
    assert torch.equal(torch.cat(chunks, dim=2), video)
    assert all(chunk.shape[:2] == (2, 3) and chunk.shape[2] == 1 for chunk in chunks)


def test_decode_frames_keeps_the_grad_mode_of_the_call(vae):
    z = torch.randn(1, 4, 3, 2, 2)
    with torch.no_grad():
        stream = vae.decode_frames(z)
    assert not any(chunk.requires_grad for chunk in stream)  # pulled with autograd on, decoded without
    stream = vae.decode_frames(z)
    with torch.no_grad():
        assert all(chunk.requires_grad for chunk in stream)


def test_decode_frames_checks_its_arguments_when_called(vae):
    with pytest.raises(ValueError, match=r"`z` must have 4 channels"):
        vae.decode_frames(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"`num_latent_frames` must be a positive int"):
        vae.decode_frames(torch.zeros(1, 4, 2, 2, 2), num_latent_frames=0)


# ---- outputs, latents, save / load ------------------------------------------------------------------------------


def test_decode_clamps_to_unit_range(vae):
    with torch.no_grad():
        video = vae.decode(torch.randn(1, 4, 2, 2, 2) * 50).sample
    assert video.min() == -1.0 and video.max() == 1.0  # large latents saturate on both sides, and nothing exceeds


def test_forward_decodes_mode_or_a_seeded_posterior_sample(vae):
    x = _video(1, 5)
    with torch.no_grad():
        mode = vae(x).sample
        assert torch.equal(mode, vae.decode(vae.encode(x).latent_dist.mode()).sample)
        a = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(1)).sample
        b = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(1)).sample
        (sample,) = vae(x, sample_posterior=True, return_dict=False, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, mode) and not torch.equal(a, sample)


def test_latent_normalisation_round_trip():
    vae = SpacetimeVAE(
        **{**TINY_VAE_CONFIG, "latents_mean": (1.0, -1.0, 0.5, 0.0), "latents_std": (2.0, 1.0, 4.0, 0.5)}
    )
    z = torch.randn(2, 4, 3, 2, 2)
    normalized = vae.normalize_latents(z)
    assert torch.allclose(normalized[:, 0], (z[:, 0] - 1.0) / 2.0) and torch.allclose(normalized[:, 3], z[:, 3] / 0.5)
    torch.testing.assert_close(vae.denormalize_latents(normalized), z)
    identity = SpacetimeVAE(**TINY_VAE_CONFIG)  # latents_mean = latents_std = None
    assert identity.normalize_latents(z) is z and identity.denormalize_latents(z) is z


def test_save_and_load_round_trip(vae, tmp_path):
    vae.save_pretrained(tmp_path)
    loaded = SpacetimeVAE.from_pretrained(tmp_path).eval()
    assert _public(loaded.config) == _public(vae.config)
    x = _video(1, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x).sample, vae(x).sample)


def test_gradient_checkpointing_gives_identical_gradients():
    torch.manual_seed(0)
    vae = perturb_(SpacetimeVAE(**TINY_VAE_CONFIG)).train()
    x = _video(1, 5)

    def grads() -> dict[str, torch.Tensor]:
        vae.zero_grad()
        vae(x).sample.square().mean().backward()
        return {name: p.grad.clone() for name, p in vae.named_parameters()}

    vae.disable_temporal_chunking()  # checkpointing runs the clip in one piece; compare like with like
    reference = grads()
    calls = []

    def counting_checkpoint(module, *args):
        calls.append(module)
        return torch.utils.checkpoint.checkpoint(module.__call__, *args, use_reentrant=False)

    vae.enable_gradient_checkpointing(counting_checkpoint)
    checkpointed = grads()
    vae.disable_gradient_checkpointing()
    assert len(calls) > 10  # the encoder's and decoder's blocks really went through checkpointing
    assert all(g.abs().sum() > 0 for g in reference.values())  # every parameter gets a gradient
    for name, grad in reference.items():
        torch.testing.assert_close(checkpointed[name], grad, msg=name)


def test_chunked_training_gradients_match_whole_clip():
    torch.manual_seed(0)
    vae = perturb_(SpacetimeVAE(**TINY_VAE_CONFIG)).train()
    x = _video(1, 9)

    def grads(num_latent_frames: int | None) -> torch.Tensor:
        if num_latent_frames is None:
            vae.disable_temporal_chunking()
        else:
            vae.enable_temporal_chunking(num_latent_frames)
        vae.zero_grad()
        vae(x).sample.square().mean().backward()
        return torch.cat([p.grad.flatten() for p in vae.parameters()])

    whole, chunked = grads(None), grads(1)
    assert _rel_err(chunked, whole) <= CHUNK_RTOL


# ---- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, match",
    [
        ((1, 3, 16, 16), r"`x` must be a 5-D tensor .* `x\.unsqueeze\(2\)`"),
        ((1, 4, 5, 16, 16), r"`x` must have 3 channels"),
        ((1, 3, 6, 16, 16), r"`x` has 6 frames.* 1 \+ k \* 4 .* nearest valid counts are 5 and 9"),
        ((1, 3, 5, 20, 16), r"`x` height must be a multiple of spatial_compression_ratio=8, got 20.* 16 or 24"),
        ((1, 3, 5, 16, 12), r"`x` width must be a multiple of spatial_compression_ratio=8, got 12"),
    ],
)
def test_encode_rejects_bad_input(vae, shape, match):
    with pytest.raises(ValueError, match=match):
        vae.encode(torch.zeros(shape))


def test_decode_and_forward_name_their_argument(vae):
    with pytest.raises(ValueError, match=r"`z` must have 4 channels \(config `latent_channels`\)"):
        vae.decode(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"`z` must be a 5-D tensor"):
        vae.decode(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match=r"`sample` has 2 frames"):
        vae(torch.zeros(1, 3, 2, 16, 16))
    with pytest.raises(ValueError, match=r"`num_latent_frames` must be a positive int"):
        vae.enable_temporal_chunking(0)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"temporal_downsample": (True, True)}, r"`temporal_downsample` needs one bool per downsampling level.* 3"),
        ({"dim_mult": ()}, r"`dim_mult` must be a non-empty list"),
        ({"base_dim": 0}, r"`base_dim` must be a positive int"),
        ({"latents_mean": (0.0,) * 4}, r"`latents_mean` and `latents_std` must be both set or both None"),
        (
            {"latents_mean": (0.0,) * 3, "latents_std": (1.0,) * 3},
            r"`latents_mean` needs one value per latent channel",
        ),
        ({"dropout": 1.0}, r"`dropout` must be in \[0, 1\)"),
        ({"patch_size": 0}, r"`patch_size` must be a positive int"),
    ],
)
def test_config_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        SpacetimeVAE(**{**TINY_VAE_CONFIG, **overrides})


def test_decode_without_clamp_keeps_values_out_of_range_and_their_gradients(vae):
    torch.manual_seed(0)
    z = (torch.randn(1, TINY_VAE_CONFIG["latent_channels"], 2, 2, 3) * 30).requires_grad_()  # drives pixels past +-1

    raw = vae.decode(z, clamp=False).sample
    clamped = vae.decode(z.detach()).sample

    assert raw.abs().max() > 1.0
    torch.testing.assert_close(raw.detach().clamp(-1, 1), clamped, rtol=0, atol=1e-6)
    raw.square().mean().backward()  # every pixel passes a gradient, also those beyond +-1
    assert z.grad is not None and z.grad.abs().sum() > 0
