"""SpacetimeVAE: a causal 3D-convolution video VAE (Wan 2.1's or Wan 2.2's architecture), encoded and decoded in
temporal chunks.

Shape letters: B batch, C channels, T frames, H height, W width; primes are after compression, with
T' = 1 + (T - 1) / temporal_compression_ratio and H' = H / spatial_compression_ratio (frame 0 is encoded alone).

Module names equal those of diffusers' `AutoencoderKLWan` (Wan 2.1, and Wan 2.2 with `is_residual=True`), so a
diffusers-format Wan VAE state dict loads unchanged (see `loaders/original_checkpoint.py::convert_wan_vae_state_dict`).
"""

from collections.abc import Iterable, Iterator, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import AutoencoderMixin, DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook

from ..loaders.single_file import SingleFileMixin
from .autoencoder_networks import Decoder3d, Encoder3d
from .causal_conv import CausalCache, CausalConv3d
from .tiling import blend_tiles, tile_windows, tiled_apply


# Wan 2.1's per-channel latent statistics (the defaults of diffusers' AutoencoderKLWan).
WAN_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
# Wan 2.2's (TI2V-5B, 48 latent channels) per-channel latent statistics, from Wan's `Wan2_2_VAE` (and diffusers'
# scripts/convert_wan_to_diffusers.py).
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip
# diffusers' AutoencoderKLWan tiling defaults, in sample pixels.
DEFAULT_TILE_SAMPLE_MIN_SIZE = 256
DEFAULT_TILE_SAMPLE_STRIDE = 192


# ---------------------------------------------------------------------------------------------------------------------
# Pure helpers: config and input checks, frame bookkeeping (spatial tiling: tiling.py).
# ---------------------------------------------------------------------------------------------------------------------


def _check_config(
    in_channels: int,
    out_channels: int,
    latent_channels: int,
    base_dim: int,
    dim_mult: Sequence[int],
    num_res_blocks: int,
    temporal_downsample: Sequence[bool],
    dropout: float,
    latents_mean: Sequence[float] | None,
    latents_std: Sequence[float] | None,
    patch_size: int,
    is_residual: bool = False,
    decoder_base_dim: int | None = None,
    attn_scales: Sequence[float] = (),
) -> None:
    """Raise `ValueError` naming the first bad `SpacetimeVAE` config value."""
    if decoder_base_dim is not None and (not isinstance(decoder_base_dim, int) or decoder_base_dim < 1):
        raise ValueError(f"`decoder_base_dim` must be a positive int or None, got {decoder_base_dim!r}.")
    if is_residual and len(attn_scales) > 0:
        raise ValueError(
            f"`attn_scales`={list(attn_scales)} needs `is_residual=False`: Wan 2.2's levels have no attention."
        )
    counts = dict(in_channels=in_channels, out_channels=out_channels, latent_channels=latent_channels)
    counts.update(base_dim=base_dim, num_res_blocks=num_res_blocks, patch_size=patch_size)
    for name, value in counts.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if len(dim_mult) < 1 or any(not isinstance(m, int) or m < 1 for m in dim_mult):
        raise ValueError(f"`dim_mult` must be a non-empty list of positive ints, got {dim_mult!r}.")
    if len(temporal_downsample) != len(dim_mult) - 1:
        raise ValueError(
            "`temporal_downsample` needs one bool per downsampling level, i.e. len(dim_mult) - 1 ="
            f" {len(dim_mult) - 1} entries; got {len(temporal_downsample)}: {list(temporal_downsample)}."
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    if (latents_mean is None) != (latents_std is None):
        raise ValueError("`latents_mean` and `latents_std` must be both set or both None.")
    for name, stats in (("latents_mean", latents_mean), ("latents_std", latents_std)):
        if stats is not None and len(stats) != latent_channels:
            raise ValueError(f"`{name}` needs one value per latent channel ({latent_channels}), got {len(stats)}.")
    if latents_std is not None and min(latents_std) <= 0:
        raise ValueError(f"`latents_std` must be positive, got {list(latents_std)}.")


def _nearest_multiples(value: int, factor: int) -> str:
    lower = max(value // factor * factor, factor)
    return f"{lower} or {lower + factor}" if lower != value else f"{lower}"


def _check_video(x: torch.Tensor, name: str, channels: int, temporal_ratio: int, spatial_ratio: int) -> None:
    """Raise `ValueError` unless `x` is (B, channels, 1 + k * temporal_ratio, H, W) with H, W multiples of
    `spatial_ratio`."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim != 5:
        hint = (
            " For an image batch (B, C, H, W) use `x.unsqueeze(2)`: an image is a one-frame video."
            if x.ndim == 4
            else ""
        )
        raise ValueError(f"`{name}` must be a 5-D tensor (B, C, T, H, W), got shape {tuple(x.shape)}.{hint}")
    _, C, T, H, W = x.shape
    if C != channels:
        raise ValueError(f"`{name}` must have {channels} channels (config `in_channels`), got shape {tuple(x.shape)}.")
    if T < 1 or (T - 1) % temporal_ratio != 0:
        lower = 1 + max(T - 1, 0) // temporal_ratio * temporal_ratio
        raise ValueError(
            f"`{name}` has {T} frames, but the frame count must be 1 + k * {temporal_ratio} (frame 0 alone, then"
            f" groups of temporal_compression_ratio={temporal_ratio}): the nearest valid counts are {lower} and"
            f" {lower + temporal_ratio}."
        )
    for axis, size in (("height", H), ("width", W)):
        if size < 1 or size % spatial_ratio != 0:
            raise ValueError(
                f"`{name}` {axis} must be a multiple of spatial_compression_ratio={spatial_ratio}, got {size}: the"
                f" nearest valid {axis} is {_nearest_multiples(size, spatial_ratio)}."
            )


def _check_latents(z: torch.Tensor, name: str, channels: int) -> None:
    """Raise `ValueError` unless `z` is (B, channels, T', H', W') with at least one frame and pixel."""
    if not isinstance(z, torch.Tensor) or z.ndim != 5:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"`{name}` must be a 5-D tensor (B, C, T', H', W'), got {shape}.")
    if z.shape[1] != channels:
        raise ValueError(f"`{name}` must have {channels} channels (config `latent_channels`), got {tuple(z.shape)}.")
    if min(z.shape[2:]) < 1:
        raise ValueError(f"`{name}` needs at least one latent frame, row and column, got {tuple(z.shape)}.")


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::patchify / unpatchify (Wan 2.2's VAE).
# Channel c * p * p + j * p + i of a patched pixel holds video channel c at row offset i, column offset j (column
# offset before row offset, as diffusers orders them), so Wan 2.2 encoder and decoder weights keep their meaning.
def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C * p * p, T, H / p, W / p): each p x p block of pixels becomes one pixel."""
    if patch_size == 1:
        return x
    B, C, T, H, W = x.shape
    p = patch_size
    x = x.reshape(B, C, T, H // p, p, W // p, p).permute(0, 1, 6, 4, 2, 3, 5)  # (B, C, j, i, T, H/p, W/p)
    return x.reshape(B, C * p * p, T, H // p, W // p)


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The inverse of `patchify`: (B, C * p * p, T, h, w) -> (B, C, T, h * p, w * p)."""
    if patch_size == 1:
        return x
    B, Cpp, T, h, w = x.shape
    p = patch_size
    x = x.reshape(B, Cpp // (p * p), p, p, T, h, w).permute(0, 1, 4, 5, 3, 6, 2)  # (B, C, T, h, i, w, j)
    return x.reshape(B, Cpp // (p * p), T, h * p, w * p)


def _first_sample_frame(latent_frame: int, temporal_ratio: int) -> int:
    """Index of the first video frame encoded into `latent_frame`: 0 -> 0, j >= 1 -> 1 + (j - 1) * ratio."""
    return 0 if latent_frame == 0 else 1 + (latent_frame - 1) * temporal_ratio


def _write_frames(chunks: Iterable[torch.Tensor], out: torch.Tensor) -> None:
    """Write consecutive frame blocks (B, C, t, H, W) into `out` (B, C, T, H, W), in time order."""
    written = 0
    for frames in chunks:
        out[:, :, written : written + frames.shape[2]] = frames
        written += frames.shape[2]
    assert written == out.shape[2], f"decoded {written} frames into a video of {out.shape[2]}"


def _clamped_batches(streams: list[Iterator[torch.Tensor]]) -> Iterator[torch.Tensor]:
    """Advance the frame streams of a batch's slices together; yield each step's blocks joined along the batch and
    clamped to [-1, 1]."""
    for parts in zip(*streams):
        frames = parts[0] if len(parts) == 1 else torch.cat(parts)  # (B, C, t, H, W)
        yield frames.clamp_(-1.0, 1.0)  # in place: the block is ours


def _in_grad_mode(stream: Iterator[torch.Tensor], enabled: bool) -> Iterator[torch.Tensor]:
    """Run every step of `stream` with autograd `enabled`, in whatever mode the consumer pulls it."""
    while True:
        with torch.set_grad_enabled(enabled):  # not around the yield: the consumer's code keeps its own mode
            item = next(stream, None)
        if item is None:
            return
        yield item


# ---------------------------------------------------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------------------------------------------------


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::AutoencoderKLWan
class SpacetimeVAE(SingleFileMixin, ModelMixin, AutoencoderMixin, ConfigMixin):
    r"""Causal 3D-convolution video VAE: (B, C, T, H, W) in [-1, 1] <-> latents (B, latent_channels, T', H', W').

    Frame 0 is encoded alone, then groups of `temporal_compression_ratio` frames, so T' = 1 + (T - 1) / ratio and an
    image is a one-frame video (pass images as (B, C, 1, H, W); 4-D input is rejected rather than guessed at).
    The defaults are Wan 2.1's VAE (4x time, 8x space, 16 latent channels); a diffusers `AutoencoderKLWan` state dict
    loads unchanged. Encode and decode run in temporal chunks with a `CausalCache` (working memory constant in clip
    length, results equal to the unchunked ones), optionally in blended spatial tiles and one sample at a time.
    `decode_frames` yields the decoded frames chunk by chunk, so a video written to a file is never held whole.

    Args:
        in_channels (`int`, defaults to 3): Channels of the input video.
        out_channels (`int`, defaults to 3): Channels of the decoded video.
        latent_channels (`int`, defaults to 16): Channels of the latents (diffusers' `z_dim`).
        base_dim (`int`, defaults to 96): Channels of the first encoder level; level i has `base_dim * dim_mult[i]`.
        dim_mult (`tuple[int, ...]`, defaults to `(1, 2, 4, 4)`): Channel multiplier per level. Each level but the
            last halves height and width, so `spatial_compression_ratio = patch_size * 2 ** (len(dim_mult) - 1)`.
        num_res_blocks (`int`, defaults to 2): Residual blocks per encoder level (the decoder has one more).
        attn_scales (`tuple[float, ...]`, defaults to `()`): Encoder resolutions (1.0, 0.5, ...) that get an attention
            block after each residual block; as in diffusers' port, the decoder has attention in its middle block only.
        temporal_downsample (`tuple[bool, ...]`, defaults to `(False, True, True)`): Per downsampling level, whether it
            also halves the frames: `temporal_compression_ratio = 2 ** sum(temporal_downsample)`.
        dropout (`float`, defaults to 0.0): Dropout inside the residual blocks.
        latents_mean (`tuple[float, ...]`, *optional*, defaults to Wan 2.1's): Per-channel latent mean used by
            `normalize_latents` / `denormalize_latents`; `None` (with `latents_std`) makes them the identity.
        latents_std (`tuple[float, ...]`, *optional*, defaults to Wan 2.1's): Per-channel latent standard deviation.
        patch_size (`int`, defaults to 1): Side of the pixel blocks folded into channels before the encoder and
            unfolded after the decoder (Wan 2.2's `patchify`). With 2, the first level runs at half resolution on
            `4 * in_channels` channels: a quarter of the full-resolution convolutions' cost, for the same latents
            as one more downsampling level. `in_channels` / `out_channels` stay the video's channels (diffusers'
            Wan 2.2 config counts the patched channels: 12 for patch_size=2).
        is_residual (`bool`, defaults to `False`): Wan 2.2's levels: each encoder / decoder level is one residual
            block around its resnets and resampler, whose shortcut averages (down) or duplicates (up) pixels into
            channels; upsamplers keep their channels. Wan 2.2 TI2V-5B's VAE is `is_residual=True, patch_size=2,
            latent_channels=48, base_dim=160, decoder_base_dim=256`.
        decoder_base_dim (`int`, *optional*): `base_dim` of the decoder; `None` is `base_dim`.
    """

    _supports_gradient_checkpointing = True
    _group_offload_block_modules = ["quant_conv", "post_quant_conv", "encoder", "decoder"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 16,
        base_dim: int = 96,
        dim_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_scales: tuple[float, ...] = (),
        temporal_downsample: tuple[bool, ...] = (False, True, True),
        dropout: float = 0.0,
        latents_mean: tuple[float, ...] | None = WAN_LATENTS_MEAN,
        latents_std: tuple[float, ...] | None = WAN_LATENTS_STD,
        patch_size: int = 1,
        is_residual: bool = False,
        decoder_base_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check_config(
            in_channels, out_channels, latent_channels, base_dim, dim_mult, num_res_blocks, temporal_downsample,
            dropout, latents_mean, latents_std, patch_size, is_residual, decoder_base_dim, attn_scales,
        )  # fmt: skip
        pixels = patch_size * patch_size  # video pixels per patched pixel
        posterior_channels = 2 * latent_channels  # mean and log-variance

        # 1. Encoder: video -> posterior parameters.
        self.encoder = Encoder3d(
            in_channels * pixels,
            posterior_channels,
            base_dim,
            dim_mult,
            num_res_blocks,
            attn_scales,
            temporal_downsample,
            dropout,
            is_residual,
        )
        self.quant_conv = CausalConv3d(posterior_channels, posterior_channels, 1)

        # 2. Decoder: latents -> video, through the encoder's levels in reverse.
        self.post_quant_conv = CausalConv3d(latent_channels, latent_channels, 1)
        temporal_upsample = tuple(temporal_downsample)[::-1]
        self.decoder = Decoder3d(
            latent_channels, out_channels * pixels, decoder_base_dim or base_dim, dim_mult, num_res_blocks,
            temporal_upsample, dropout, is_residual,
        )  # fmt: skip

        # 3. Inference options: they change memory use and speed, not results (tiling aside), so they are not config.
        self.num_latent_frames_per_chunk: int | None = 1
        self.use_slicing = False
        self.use_tiling = False
        self.tile_sample_min_height = self.tile_sample_min_width = DEFAULT_TILE_SAMPLE_MIN_SIZE
        self.tile_sample_stride_height = self.tile_sample_stride_width = DEFAULT_TILE_SAMPLE_STRIDE

    @property
    def temporal_compression_ratio(self) -> int:
        """Video frames per latent frame (after frame 0, which is encoded alone)."""
        return 2 ** sum(bool(flag) for flag in self.config.temporal_downsample)

    @property
    def spatial_compression_ratio(self) -> int:
        """Video pixels per latent pixel along height and along width."""
        return self.config.patch_size * 2 ** (len(self.config.dim_mult) - 1)

    # ---- inference options ----

    def enable_temporal_chunking(self, num_latent_frames: int = 1) -> None:
        """Encode and decode `num_latent_frames` latent frames at a time (the default is 1, as Wan does).

        Encoding then runs the encoder on `num_latent_frames * temporal_compression_ratio` video frames at a time;
        decoding never lets a layer hold more than `num_latent_frames` frames at its resolution. Results equal
        those of `disable_temporal_chunking()` up to float rounding; peak memory no longer grows with clip length.
        """
        if not isinstance(num_latent_frames, int) or num_latent_frames < 1:
            raise ValueError(f"`num_latent_frames` must be a positive int, got {num_latent_frames!r}.")
        self.num_latent_frames_per_chunk = num_latent_frames

    def disable_temporal_chunking(self) -> None:
        """Encode and decode each clip in one piece (fastest for short clips; memory grows with clip length)."""
        self.num_latent_frames_per_chunk = None

    def enable_tiling(
        self,
        tile_sample_min_height: int | None = None,
        tile_sample_min_width: int | None = None,
        tile_sample_stride_height: int | None = None,
        tile_sample_stride_width: int | None = None,
    ) -> None:
        """Encode and decode in overlapping spatial tiles, blended linearly across the overlap (diffusers' arguments).

        Tiles change results near their borders (each sees less context); see the tests for the size of the effect.

        Args:
            tile_sample_min_height (`int`, *optional*): Tile height in video pixels; taller inputs are tiled.
            tile_sample_min_width (`int`, *optional*): Tile width in video pixels; wider inputs are tiled.
            tile_sample_stride_height (`int`, *optional*): Vertical step between tiles; the overlap
                `tile_sample_min_height - tile_sample_stride_height` is blended.
            tile_sample_stride_width (`int`, *optional*): Horizontal step between tiles.
        """
        sizes = {
            "tile_sample_min_height": tile_sample_min_height or self.tile_sample_min_height,
            "tile_sample_min_width": tile_sample_min_width or self.tile_sample_min_width,
            "tile_sample_stride_height": tile_sample_stride_height or self.tile_sample_stride_height,
            "tile_sample_stride_width": tile_sample_stride_width or self.tile_sample_stride_width,
        }
        ratio = self.spatial_compression_ratio
        for name, value in sizes.items():
            if not isinstance(value, int) or value % ratio != 0:
                raise ValueError(
                    f"`{name}` must be a positive multiple of spatial_compression_ratio={ratio}, got {value!r}."
                )
        for axis in ("height", "width"):
            if sizes[f"tile_sample_stride_{axis}"] > sizes[f"tile_sample_min_{axis}"]:
                raise ValueError(
                    f"`tile_sample_stride_{axis}` ({sizes[f'tile_sample_stride_{axis}']}) must not exceed"
                    f" `tile_sample_min_{axis}` ({sizes[f'tile_sample_min_{axis}']}): tiles would leave gaps."
                )
        for name, value in sizes.items():
            setattr(self, name, value)
        self.use_tiling = True

    # ---- latent normalisation ----

    def _latent_stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.config.latents_mean is None:
            return None
        _check_latents(z, "z", self.config.latent_channels)
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.config.latents_mean, device=z.device, dtype=z.dtype).view(shape)
        std = torch.tensor(self.config.latents_std, device=z.device, dtype=z.dtype).view(shape)
        return mean, std

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """(z - latents_mean) / latents_std per channel, for `z` of shape (B, latent_channels, T', H', W')."""
        stats = self._latent_stats(z)
        return z if stats is None else (z - stats[0]) / stats[1]

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize_latents`: z * latents_std + latents_mean per channel."""
        stats = self._latent_stats(z)
        return z if stats is None else z * stats[1] + stats[0]

    # ---- encode ----

    @apply_forward_hook
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        r"""Encode videos into the posterior over latents.

        Args:
            x (`torch.Tensor` of shape `(B, in_channels, T, H, W)`): Videos in [-1, 1], with T = 1 + k *
                `temporal_compression_ratio` and H, W multiples of `spatial_compression_ratio`.
            return_dict (`bool`, defaults to `True`): Return an `AutoencoderKLOutput` instead of a tuple.

        Returns:
            `AutoencoderKLOutput` whose `latent_dist` is a `DiagonalGaussianDistribution` over latents of shape
            (B, latent_channels, T', H', W'), or `(latent_dist,)`.
        """
        _check_video(x, "x", self.config.in_channels, self.temporal_compression_ratio, self.spatial_compression_ratio)
        params = x.new_empty(self._posterior_shape(x))  # (B, 2 * latent_channels, T', H', W'): mean and log-variance
        for batch in self._batch_slices(x.shape[0]):
            self._encode_into(x[batch], params[batch])
        posterior = DiagonalGaussianDistribution(params)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def _encode_into(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Encode (B, C, T, H, W) into posterior parameters `out` (B, 2 * latent_channels, T', H', W')."""
        size = (self.tile_sample_min_height, self.tile_sample_min_width)
        if not self.use_tiling or (x.shape[-2] <= size[0] and x.shape[-1] <= size[1]):
            return self._encode_chunks(x, out)
        r = self.spatial_compression_ratio
        stride = (self.tile_sample_stride_height, self.tile_sample_stride_width)
        blend = ((size[0] - stride[0]) // r, (size[1] - stride[1]) // r)
        tiled_apply(self._encode_tile, x, out, size, stride, (stride[0] // r, stride[1] // r), blend)

    def _encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_empty(self._posterior_shape(x))
        self._encode_chunks(x, out)
        return out

    def _encode_chunks(self, x: torch.Tensor, out: torch.Tensor) -> None:
        """Encode `x` into `out` a chunk of latent frames at a time, carrying causal context in a `CausalCache`."""
        num_latent_frames = out.shape[2]
        chunk = self._latent_frames_per_chunk(num_latent_frames, self.num_latent_frames_per_chunk)
        cache = CausalCache() if chunk < num_latent_frames else None
        r_t = self.temporal_compression_ratio
        for start in range(0, num_latent_frames, chunk):
            stop = min(start + chunk, num_latent_frames)
            frames = x[:, :, _first_sample_frame(start, r_t) : _first_sample_frame(stop, r_t)]  # (B, C, n, H, W)
            frames = patchify(frames, self.config.patch_size)  # (B, C * p * p, n, H / p, W / p)
            out[:, :, start:stop] = self.quant_conv(self.encoder(frames, cache))  # (B, 2z, stop - start, H', W')

    # ---- decode ----

    @apply_forward_hook
    def decode(self, z: torch.Tensor, return_dict: bool = True, clamp: bool = True) -> DecoderOutput | tuple:
        r"""Decode latents into videos, clamped to [-1, 1] (unless `clamp=False`).

        For long clips whose frames go to a file, `decode_frames` streams the same frames without ever holding the
        whole video.

        Args:
            z (`torch.Tensor` of shape `(B, latent_channels, T', H', W')`): Latents (not normalised).
            return_dict (`bool`, defaults to `True`): Return a `DecoderOutput` instead of a tuple.
            clamp (`bool`, defaults to `True`): Clamp to [-1, 1]. Train on `clamp=False`: a clamped pixel passes no
                gradient, so wherever the decoder overshoots the range (black backgrounds pull it below -1) the loss
                cannot pull it back.

        Returns:
            `DecoderOutput` whose `sample` has shape (B, out_channels, 1 + (T' - 1) * temporal_compression_ratio,
            H' * spatial_compression_ratio, W' * spatial_compression_ratio), or `(sample,)`.
        """
        _check_latents(z, "z", self.config.latent_channels)
        # Written chunk by chunk into one preallocated tensor: no list of chunks and no torch.cat copy.
        out = z.new_empty(self._video_shape(z))  # (B, out_channels, T, H, W)
        for batch in self._batch_slices(z.shape[0]):
            self._decode_into(z[batch], out[batch])
        if clamp:
            out = out.clamp_(-1.0, 1.0)  # in place: no second video-sized tensor
        return DecoderOutput(sample=out) if return_dict else (out,)

    @apply_forward_hook
    def decode_frames(self, z: torch.Tensor, num_latent_frames: int | None = None) -> Iterator[torch.Tensor]:
        r"""Decode latents chunk by chunk, yielding the video's frames in time order: a streaming `decode`.

        Only the causal cache and one chunk's activations are held, so memory does not grow with the clip length;
        what to keep of each chunk is the caller's choice (`export_to_video` writes it to the file and drops it):

        ```py
        frames = ((chunk[0].transpose(0, 1) + 1) / 2 for chunk in vae.decode_frames(z))  # (t, 3, H, W) in [0, 1]
        export_to_video(frames, "clip.mp4")
        ```

        The chunks, concatenated along dim 2, equal `decode(z).sample` exactly when `num_latent_frames` matches the
        `enable_temporal_chunking` setting (otherwise up to float rounding, as between chunk sizes). With slicing
        enabled, the samples advance together, one sample's activations at a time. With tiling enabled (and a frame
        larger than one tile), the tiles advance together, blended chunk by chunk as `decode` blends them: one tile's
        activations at a time, but every tile's causal cache at once (about the untiled cache plus the overlaps),
        where `decode` finishes one tile before the next and so holds one tile's cache but the whole video.

        The decode runs in the grad mode in effect when `decode_frames` is called, not when the chunks are pulled:
        a generator created under `torch.no_grad()` stays gradient-free (with autograd on, the cache would chain
        every chunk's graph and memory would grow with the clip again).

        Args:
            z (`torch.Tensor` of shape `(B, latent_channels, T', H', W')`): Latents (not normalised).
            num_latent_frames (`int`, *optional*): Latent frames decoded per step. Defaults to the
                `enable_temporal_chunking` setting, or 1 while chunking is disabled (one step would hold the clip).

        Returns:
            `Iterator[torch.Tensor]`: consecutive frame blocks of shape (B, out_channels, t,
            H' * spatial_compression_ratio, W' * spatial_compression_ratio), clamped to [-1, 1],
            1 + (T' - 1) * temporal_compression_ratio frames in all. A block holds at most `num_latent_frames` frames
            (the decoder splits time-upsampled frames to that size), or the whole clip when it fits in one step.
        """
        _check_latents(z, "z", self.config.latent_channels)  # here, not when the first chunk is pulled
        if num_latent_frames is not None and (not isinstance(num_latent_frames, int) or num_latent_frames < 1):
            raise ValueError(f"`num_latent_frames` must be a positive int, got {num_latent_frames!r}.")
        chunk = num_latent_frames or self.num_latent_frames_per_chunk or 1
        batches = [self._decode_stream_tiled(z[batch], chunk) for batch in self._batch_slices(z.shape[0])]
        return _in_grad_mode(_clamped_batches(batches), torch.is_grad_enabled())

    def _decode_into(self, z: torch.Tensor, out: torch.Tensor) -> None:
        """Decode (B, z, T', H', W') into `out` (B, C_out, T, H, W), unclamped; tiles one after the other."""
        tiling = self._decode_tiling(z)
        if tiling is None:
            return _write_frames(self._decode_stream(z, self.num_latent_frames_per_chunk), out)
        tiled_apply(self._decode_tile, z, out, *tiling)

    def _decode_tile(self, z: torch.Tensor) -> torch.Tensor:
        out = z.new_empty(self._video_shape(z))
        _write_frames(self._decode_stream(z, self.num_latent_frames_per_chunk), out)
        return out

    def _decode_stream_tiled(self, z: torch.Tensor, chunk: int) -> Iterator[torch.Tensor]:
        """`_decode_stream`, over blended tiles when tiling applies: every tile advances one block per step."""
        tiling = self._decode_tiling(z)
        if tiling is None:
            yield from self._decode_stream(z, chunk)
            return
        tile_size, tile_stride, out_stride, blend = tiling
        windows, num_cols = tile_windows(z.shape[-2:], tile_size, tile_stride)
        B, C, _, H, W = self._video_shape(z)
        tiles = [self._decode_stream(z[..., rows, cols], chunk) for rows, cols in windows]
        for blocks in zip(*tiles):  # the same block sizes in every tile: the same frames and chunks
            frames = z.new_empty(B, C, blocks[0].shape[2], H, W)  # (B, C_out, t, H, W)
            blend_tiles(blocks, frames, num_cols, out_stride, blend)
            yield frames

    def _decode_stream(self, z: torch.Tensor, chunk: int | None) -> Iterator[torch.Tensor]:
        """The decode loop: yield the frames of `z` (B, z, T', H', W') in time order as unclamped (B, C_out, t, H, W)
        blocks, decoding `chunk` latent frames at a time (`None`: in one piece) with a `CausalCache`."""
        num_latent_frames = z.shape[2]
        chunk = self._latent_frames_per_chunk(num_latent_frames, chunk)
        cache = CausalCache() if chunk < num_latent_frames else None
        max_frames = chunk if cache is not None else None
        for start in range(0, num_latent_frames, chunk):
            x = self.post_quant_conv(z[:, :, start : start + chunk])  # (B, z, n, H', W')
            for frames in self.decoder.stream(x, cache, max_frames):  # (B, C_out * p * p, m, H / p, W / p) blocks
                yield unpatchify(frames, self.config.patch_size)  # (B, C_out, m, H, W), in time order

    def _decode_tiling(
        self, z: torch.Tensor
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]] | None:
        """Tile size and stride in latent pixels, then stride and blend in video pixels; `None` without tiling."""
        r = self.spatial_compression_ratio
        size = (self.tile_sample_min_height // r, self.tile_sample_min_width // r)
        if not self.use_tiling or (z.shape[-2] <= size[0] and z.shape[-1] <= size[1]):
            return None
        stride = (self.tile_sample_stride_height, self.tile_sample_stride_width)
        blend = (self.tile_sample_min_height - stride[0], self.tile_sample_min_width - stride[1])
        return size, (stride[0] // r, stride[1] // r), stride, blend

    # ---- shared ----

    def _posterior_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """(B, C, T, H, W) video -> (B, 2 * latent_channels, T', H', W') posterior parameters."""
        B, _, T, H, W = x.shape
        r_t, r_s = self.temporal_compression_ratio, self.spatial_compression_ratio
        return (B, 2 * self.config.latent_channels, 1 + (T - 1) // r_t, H // r_s, W // r_s)

    def _video_shape(self, z: torch.Tensor) -> tuple[int, ...]:
        """(B, C, T', H', W') latents -> (B, out_channels, T, H, W) video."""
        B, _, T, H, W = z.shape
        r_t, r_s = self.temporal_compression_ratio, self.spatial_compression_ratio
        return (B, self.config.out_channels, 1 + (T - 1) * r_t, H * r_s, W * r_s)

    def _latent_frames_per_chunk(self, num_latent_frames: int, chunk: int | None) -> int:
        """`chunk` latent frames at a time (`None`: all at once), at most the clip's `num_latent_frames`."""
        # Gradient checkpointing recomputes layers, which must not find the cache already advanced: one piece.
        if chunk is None or (torch.is_grad_enabled() and self.is_gradient_checkpointing):
            return num_latent_frames
        return min(chunk, num_latent_frames)

    def _batch_slices(self, batch_size: int) -> list[slice]:
        return [slice(b, b + 1) for b in range(batch_size)] if self.use_slicing else [slice(None)]

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple:
        r"""Encode then decode.

        Args:
            sample (`torch.Tensor` of shape `(B, in_channels, T, H, W)`): Videos in [-1, 1].
            sample_posterior (`bool`, defaults to `False`): Decode a sample of the posterior instead of its mode.
            return_dict (`bool`, defaults to `True`): Return a `DecoderOutput` instead of a tuple.
            generator (`torch.Generator`, *optional*): Generator for the posterior sample.
        """
        _check_video(
            sample, "sample", self.config.in_channels, self.temporal_compression_ratio, self.spatial_compression_ratio
        )
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, return_dict=return_dict)
