"""Causal 3D convolution, the one cache that carries its context across temporal chunks, and the Wan 2.1 / 2.2 VAE
layers built on them (norm, residual, attention, resample, middle and up blocks, and Wan 2.2's residual down / up
blocks with their parameter-free shortcuts; `SpacetimeVAE` assembles them).

A causal layer's output at frame t depends on input frames <= t only, so a clip processed in temporal chunks gives
the same result as the clip processed whole, provided every layer sees the last frames of the previous chunk.
`CausalCache` keeps those frames, one entry per layer, for one encode or decode call: each layer asks it for the
frames it pushed at the end of the previous chunk (`None` at the start of the clip) and pushes its new tail. All
cache logic is in this file's first section; the layers below only pass the cache on.

Frame 0 is special in Wan-style video VAEs: time downsampling passes it through (it is encoded alone) and time
upsampling does not double it (it decodes to one frame). `CausalCache.is_first_chunk` tells the two resampling
functions whether the frames in flight start at frame 0. Passing `cache=None` everywhere means "the whole clip is in
flight": nothing is carried, frame 0 is at the start (used for training, where gradient checkpointing recomputes
layers and must not see a cache already advanced by the first pass).

Every layer takes `(x, cache)` with x of shape (B, C, T, H, W).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalCache:
    """The frames each causal layer needs from the previous temporal chunk, for one encode or decode call.

    Create a fresh cache per call (and per spatial tile), then feed the chunks in time order. Layers key their
    entries by themselves, so the cache needs no layer count or index bookkeeping.
    """

    def __init__(self) -> None:
        self.is_first_chunk = True  # the frames in flight start at frame 0 of the clip
        self._frames: dict[nn.Module, torch.Tensor] = {}

    def get(self, layer: nn.Module) -> torch.Tensor | None:
        """The frames `layer` pushed at the end of the previous chunk, or `None` at the start of the clip."""
        return self._frames.get(layer)

    def push(self, layer: nn.Module, frames: torch.Tensor) -> None:
        """Keep `frames` for `layer`'s next chunk. Pass a copy, not a view, so the chunk's activations can be freed."""
        self._frames[layer] = frames

    def end_first_chunk(self) -> None:
        """Called by the model once frame 0 has left its last layer: later chunks hold no special frame."""
        self.is_first_chunk = False


def is_first_chunk(cache: CausalCache | None) -> bool:
    """Whether the frames in flight start at frame 0; without a cache the whole clip is in flight."""
    return cache is None or cache.is_first_chunk


def _use_onednn(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def _roll_context(previous: torch.Tensor | None, x: torch.Tensor, context: int) -> torch.Tensor:
    """The last `context` frames of (previous, x) along dim 2, written into `previous` when it can take them (no
    new tensor per chunk); `previous=None` stands for zero frames."""
    T = x.shape[2]
    if previous is None:
        start = torch.zeros_like(x[:, :, :1]).expand(-1, -1, max(context - T, 0), -1, -1)
        return torch.cat([start, x[:, :, -context:]], dim=2).contiguous(memory_format=torch.channels_last_3d)
    for i in range(context - T):  # keep the context's newest frames, oldest first (no overlap between reads/writes)
        previous[:, :, i] = previous[:, :, i + T]
    previous[:, :, max(context - T, 0) :] = x[:, :, -context:]
    return previous


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanCausalConv3d
class CausalConv3d(nn.Conv3d):
    """`nn.Conv3d` whose temporal padding lies entirely before the frames, so output frame t sees input frames <= t.

    Arguments are those of `nn.Conv3d`. A temporal padding `p_t` becomes `2 * p_t` frames of left context (as in
    Wan): zeros at the start of the clip, the previous chunk's last input frames (from the cache) afterwards.
    Spatial padding is ordinary zero padding on both sides.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        pad_t, pad_h, pad_w = self.padding
        self.context_frames = 2 * pad_t
        self.spatial_padding = (pad_h, pad_w)
        self.padding = (0, 0, 0)  # forward pads instead, causally in time

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        # PyTorch sends small fp32 CPU 3D convs (batch 1 with C * T * H <= 20480, which chunked decoding produces) to
        # `slow_conv3d`: an im2col path whose column buffer is 27x the input, and ~6x slower than oneDNN (measured:
        # 35 vs 6 ms per frame, 32 channels at 128 x 128, 2 threads). In inference we call oneDNN directly; with
        # autograd on, the default dispatch keeps its backward.
        if _use_onednn(x):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C_out, T', H', W'); T' = T for the usual stride 1 and `2 * p_t = k_t - 1`."""
        pad_h, pad_w = self.spatial_padding
        if self.context_frames == 0 and pad_h == pad_w == 0:
            return super().forward(x)
        if _use_onednn(x):
            return self._forward_onednn(x, cache)
        return super().forward(self._padded(x, cache))

    def _padded(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        """x in one padded buffer: zeros around the frames and, before them, `context_frames` frames of context
        (zeros at the start of the clip, the previous chunk's last input frames afterwards); pushes x's tail."""
        H, W = x.shape[-2:]
        pad_h, pad_w = self.spatial_padding
        context = self.context_frames
        x = F.pad(x, (pad_w, pad_w, pad_h, pad_h, context, 0))  # (B, C, context + T, H + 2p_h, W + 2p_w)
        if context == 0:
            return x
        rows, cols = slice(pad_h, pad_h + H), slice(pad_w, pad_w + W)
        previous = cache.get(self) if cache is not None else None
        if previous is not None:
            x[:, :, :context, rows, cols] = previous
        if cache is not None:
            cache.push(self, x[:, :, -context:, rows, cols].clone())  # (B, C, context, H, W)
        return x

    def _forward_onednn(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        """`forward` for CPU fp32 inference: one 2D convolution per temporal tap, in channels-last layout.

        Output frame t is the sum over taps k of `weight[:, :, k]` applied to frame t + k of the sequence (context,
        then `x`), so each tap convolves a run of frames of `x` and a run of cached frames where they are, and adds
        into the output: no buffer of context and frames joined (the cache is rolled in place instead), and
        channels-last frames go to oneDNN without a reorder. Measured per 3x3x3 conv, one frame after two of
        context, one thread: 32 channels at 128 x 128, 4 MiB of transient memory instead of 18 for the padded-
        buffer path above and 7.8 ms instead of 12.5; 128 channels at 32 x 32, 1.5 MiB instead of 5.4, 6.5 ms
        instead of 6.9. The sum runs in another order than one 3D kernel's: about 1e-6 relative to the output.
        """
        B, C, T, H, W = x.shape
        context, kernel_t = self.context_frames, self.kernel_size[0]
        if self.stride[0] != 1 or kernel_t != context + 1:  # not a plain causal conv: the padded-buffer path
            return self._conv_forward(self._padded(x, cache), self.weight, self.bias)
        x = x.contiguous(memory_format=torch.channels_last_3d)  # (B, C, T, H, W), channels-last: no copy if already
        previous = cache.get(self) if cache is not None else None  # (B, C, context, H, W) or None (zeros)

        # Tap k = context reads x's frames for every output frame: it starts the sum, with the bias.
        out = self._conv_tap(x, context, self.bias)  # (B, C_out, T, H', W')
        for k in range(context):  # output frame t reads sequence frame t + k: context frame, or x frame t + k - c
            from_context = min(T, context - k)  # output frames 0 .. from_context - 1 read context frames k ..
            if previous is not None:
                out[:, :, :from_context] += self._conv_tap(previous[:, :, k : k + from_context], k, None)
            if from_context < T:
                out[:, :, from_context:] += self._conv_tap(x[:, :, : T - from_context], k, None)
        if cache is not None and context:  # a conv with no temporal context carries nothing
            cache.push(self, _roll_context(previous, x, context))
        return out

    def _conv_tap(self, frames: torch.Tensor, k: int, bias: torch.Tensor | None) -> torch.Tensor:
        """Temporal tap k of the kernel over each of `frames` (B, C, n, H, W), channels-last -> (B, C_out, n, H', W')."""
        B, C, n, H, W = frames.shape
        frames_2d = frames.transpose(1, 2).reshape(B * n, C, H, W)  # a view for B = 1 (channels-last frames)
        # A channels-last weight too, or oneDNN takes its channels-first kernel and reorders the frames.
        weight = self.weight[:, :, k].contiguous(memory_format=torch.channels_last)
        out = torch.mkldnn_convolution(
            frames_2d, weight, bias, self.spatial_padding, self.stride[1:], self.dilation[1:], self.groups
        )  # (B * n, C_out, H', W')
        return out.view(B, n, *out.shape[1:]).transpose(1, 2)


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanResample.forward ("downsample3d")
def causal_time_downsample(x: torch.Tensor, conv: nn.Conv3d, cache: CausalCache | None) -> torch.Tensor:
    """Halve the frame count with `conv` (temporal kernel 3, stride 2, no padding), passing frame 0 through.

    Over a clip: (B, C, 1 + 2n, H, W) -> (B, C, 1 + n, H, W), output frame j >= 1 from input frames 2j-2, 2j-1, 2j.
    The first chunk must hold an odd number of frames and later chunks an even number (true for chunks cut at
    latent-frame boundaries); the cache carries each chunk's last frame, which starts the next window.
    """
    num_frames = x.shape[2]
    if is_first_chunk(cache):
        assert num_frames % 2 == 1, f"first chunk must hold 1 + 2n frames, got {num_frames}"
        out = x[:, :, :1] if num_frames == 1 else torch.cat([x[:, :, :1], conv(x)], dim=2)  # (B, C, 1 + n, H, W)
    else:
        assert num_frames % 2 == 0, f"later chunks must hold an even number of frames, got {num_frames}"
        out = conv(torch.cat([cache.get(conv), x], dim=2))  # (B, C, T / 2, H, W)
    if cache is not None:
        cache.push(conv, x[:, :, -1:].clone())
    return out


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanResample.forward ("upsample3d")
def causal_time_upsample(x: torch.Tensor, conv: CausalConv3d, cache: CausalCache | None) -> torch.Tensor:
    """Double every frame but frame 0 with `conv`, a causal conv from C to 2C channels (the two new frames' channels).

    Over a clip: (B, C, T, H, W) -> (B, C, 1 + 2(T - 1), H, W). Frame 0 passes through; frames 1.. go through
    `conv` as their own causal stream, with zeros before frame 1 (what Wan's "Rep" cache marker does).
    """
    head = None
    if is_first_chunk(cache):
        head, x = x[:, :, :1], x[:, :, 1:]
    B, C, T, H, W = x.shape
    if T > 0:
        x = conv(x, cache)  # (B, 2C, T, H, W)
        # Channel half i of frame t becomes frame 2t + i. einops: 'b (i c) t h w -> b c (t i) h w'
        x = x.view(B, 2, C, T, H, W).permute(0, 2, 3, 1, 4, 5)  # (B, C, T, 2, H, W)
        x = x.reshape(B, C, 2 * T, H, W)  # (B, C, 2T, H, W)
    return x if head is None else torch.cat([head, x], dim=2)


# ---- Wan 2.1 VAE layers built on them --------------------------------------------------------------------------


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanRMS_norm
class ChannelRMSNorm(nn.Module):
    """RMS norm over the channel axis (dim 1) with a learned per-channel gain `gamma`.

    Args:
        dim (`int`): Number of channels.
        num_spatial_dims (`int`, defaults to 3): Axes after the channels: 3 for (B, C, T, H, W), 2 for (B, C, H, W).
    """

    def __init__(self, dim: int, num_spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *([1] * num_spatial_dims)))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """`inplace=True` overwrites `x` (when autograd is off and x needs no upcast), saving one tensor of its size:
        for callers that own `x` and no longer need it."""
        # fp32 for half-precision inputs: the sum of squares over hundreds of channels overflows/underflows there.
        upcast = x.dtype in (torch.float16, torch.bfloat16)
        if inplace and not upcast and not torch.is_grad_enabled():
            normalized = x.div_(x.norm(dim=1, keepdim=True).clamp_min_(1e-12))  # F.normalize's arithmetic, in place
        else:
            normalized = F.normalize(x.float() if upcast else x, dim=1).to(x.dtype)
        return normalized.mul_(self.scale).mul_(self.gamma)  # in place: `normalized` is ours (same order as Wan)


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanResidualBlock
class ResidualBlock(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (1x1x1 conv) shortcut.

    Args:
        in_dim (`int`): Input channels.
        out_dim (`int`): Output channels.
        dropout (`float`, defaults to 0.0): Dropout before the second convolution.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_dim)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = ChannelRMSNorm(out_dim)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        shortcut = self.conv_shortcut(x)
        h = self.conv1(F.silu(self.norm1(x), inplace=True), cache)  # in place: the norm's output is ours
        h = F.silu(self.norm2(h, inplace=True), inplace=True)  # in place (inference): conv1's output is ours
        h = self.conv2(self.dropout(h), cache)
        return h.add_(shortcut)  # in place: the conv's output is ours


class _NearestUpsample2x(nn.Upsample):
    """2x nearest-exact upsampling of (N, C, H, W), computed in fp32 (as Wan does) and returned in the input dtype."""

    def __init__(self) -> None:
        super().__init__(scale_factor=(2.0, 2.0), mode="nearest-exact")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


def _per_frame(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D module to every frame: (B, C, T, H, W) -> (B, C', T, H', W')."""
    B, C, T, H, W = x.shape
    x = module(x.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W))  # (B*T, C', H', W')
    return x.view(B, T, *x.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, C', T, H', W')


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanResample
class Resample(nn.Module):
    """2x spatial resampling of every frame, optionally with 2x causal temporal resampling (frame 0 kept single).

    Args:
        dim (`int`): Input channels.
        mode (`str`): "downsample2d", "downsample3d" (also halves the frames), "upsample2d" or "upsample3d" (also
            doubles the frames). Downsampling keeps `dim` channels.
        upsample_out_dim (`int`, *optional*): Channels out of an upsampler; `None` is `dim // 2`, as in Wan 2.1 (Wan
            2.2's residual decoder keeps `dim`).
    """

    MODES = ("downsample2d", "downsample3d", "upsample2d", "upsample3d")

    def __init__(self, dim: int, mode: str, upsample_out_dim: int | None = None) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {self.MODES}, got {mode!r}.")
        self.mode = mode
        if mode.startswith("upsample"):
            out_dim = dim // 2 if upsample_out_dim is None else upsample_out_dim
            self.resample = nn.Sequential(_NearestUpsample2x(), nn.Conv2d(dim, out_dim, 3, padding=1))
        else:
            # Pad right/bottom only, so output pixel (i, j) covers input pixels 2i..2i+2 as in Wan.
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = causal_time_upsample(x, self.time_conv, cache)  # (B, C, T_up, H, W)
        x = _per_frame(self.resample, x)  # (B, C', T, 2H or H/2, 2W or W/2)
        if self.mode == "downsample3d":
            x = causal_time_downsample(x, self.time_conv, cache)  # (B, C, T_down, H, W)
        return x


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanAttentionBlock
class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame (no temporal mixing, so no cache).

    Calls `F.scaled_dot_product_attention` directly, as diffusers' Wan VAE does: one head of up to 384 channels is
    outside what the flash-style backends of `dispatch_attention_fn` accept.

    Args:
        dim (`int`): Channels.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim, num_spatial_dims=2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        identity = x
        B, C, T, H, W = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)  # (B*T, C, H, W)
        qkv = self.to_qkv(self.norm(x)).reshape(B * T, 1, 3 * C, H * W)  # (B*T, 1, 3C, S) with S = H*W
        q, k, v = qkv.permute(0, 1, 3, 2).contiguous().chunk(3, dim=-1)  # each (B*T, 1, S, C)
        x = F.scaled_dot_product_attention(q, k, v)  # (B*T, 1, S, C)
        x = x.squeeze(1).permute(0, 2, 1).reshape(B * T, C, H, W)  # (B*T, C, H, W)
        x = self.proj(x).view(B, T, C, H, W).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
        return x + identity


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanMidBlock
class MidBlock(nn.Module):
    """Residual block, attention, residual block, at the lowest resolution."""

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim, dropout), ResidualBlock(dim, dim, dropout)])
        self.attentions = nn.ModuleList([AttentionBlock(dim)])

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        x = self.attentions[0](x, cache)
        return self.resnets[1](x, cache)


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanUpBlock
class UpBlock(nn.Module):
    """`num_res_blocks + 1` residual blocks, then an optional `Resample` upsampler (mode `upsample_mode`)."""

    def __init__(
        self, in_dim: int, out_dim: int, num_res_blocks: int, dropout: float = 0.0, upsample_mode: str | None = None
    ) -> None:
        super().__init__()
        dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
        self.resnets = nn.ModuleList([ResidualBlock(i, o, dropout) for i, o in zip(dims[:-1], dims[1:])])
        self.upsamplers = None if upsample_mode is None else nn.ModuleList([Resample(out_dim, upsample_mode)])

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        return x if self.upsamplers is None else self.upsamplers[0](x, cache)


# ---- Wan 2.2's residual VAE blocks -------------------------------------------------------------------------------


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::AvgDown3D
def avg_down_3d(x: torch.Tensor, out_channels: int, factor_t: int, factor_s: int) -> torch.Tensor:
    """Parameter-free downsampling shortcut: fold each (factor_t, factor_s, factor_s) block into channels, then average
    consecutive groups of them down to `out_channels`. (B, C, T, H, W) -> (B, out_channels, T / f_t, H / f_s, W / f_s).

    A clip (or first chunk) of odd length gets zero frames before frame 0, so frame 0 is averaged with zeros, as the
    causal time downsampler passes it alone; later chunks hold an even number of frames.
    """
    pad_t = -x.shape[2] % factor_t
    if pad_t:
        x = F.pad(x, (0, 0, 0, 0, pad_t, 0))
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // factor_t, factor_t, H // factor_s, factor_s, W // factor_s, factor_s)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # (B, C, f_t, f_s, f_s, T', H', W')
    x = x.reshape(B, out_channels, -1, T // factor_t, H // factor_s, W // factor_s)  # (B, C_out, group, T', H', W')
    return x.mean(dim=2)


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::DupUp3D
def dup_up_3d(x: torch.Tensor, out_channels: int, factor_t: int, factor_s: int, first_chunk: bool) -> torch.Tensor:
    """Parameter-free upsampling shortcut, the counterpart of `avg_down_3d`: repeat every channel, then unfold the
    repeats into (factor_t, factor_s, factor_s) blocks: (B, C, T, H, W) -> (B, out_channels, T * f_t, H * f_s,
    W * f_s), less `factor_t - 1` frames at the start of the clip (`first_chunk`), where frame 0 is not doubled."""
    B, C, T, H, W = x.shape
    factor = factor_t * factor_s * factor_s
    x = x.repeat_interleave(out_channels * factor // C, dim=1)  # (B, C_out * factor, T, H, W)
    x = x.reshape(B, out_channels, factor_t, factor_s, factor_s, T, H, W)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C_out, T, f_t, H, f_s, W, f_s)
    x = x.reshape(B, out_channels, T * factor_t, H * factor_s, W * factor_s)
    return x[:, :, factor_t - 1 :] if first_chunk else x


def _check_shortcut_channels(in_dim: int, out_dim: int, factor: int, down: bool) -> None:
    fits = (in_dim * factor) % out_dim == 0 if down else (out_dim * factor) % in_dim == 0
    if not fits:
        raise ValueError(
            f"A residual {'down' if down else 'up'} block from {in_dim} to {out_dim} channels with resampling factor "
            f"{factor}: the shortcut needs {'in_dim * factor' if down else 'out_dim * factor'} divisible by "
            f"{'out_dim' if down else 'in_dim'}."
        )


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanResidualDownBlock
class ResidualDownBlock(nn.Module):
    """Wan 2.2's encoder level: `num_res_blocks` residual blocks and an optional downsampler, plus the parameter-free
    `avg_down_3d` shortcut from the level's input to its output.

    Args:
        in_dim (`int`), out_dim (`int`): Channels in and out.
        num_res_blocks (`int`): Residual blocks.
        dropout (`float`): Dropout inside the residual blocks.
        temporal_downsample (`bool`): Whether the downsampler also halves the frames.
        downsample (`bool`): Whether the level ends with a 2x downsampler (all levels but the last).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_res_blocks: int,
        dropout: float = 0.0,
        temporal_downsample: bool = False,
        downsample: bool = False,
    ) -> None:
        super().__init__()
        self.factor_t = 2 if temporal_downsample and downsample else 1
        self.factor_s = 2 if downsample else 1
        self.out_dim = out_dim
        _check_shortcut_channels(in_dim, out_dim, self.factor_t * self.factor_s**2, down=True)
        dims = [in_dim] + [out_dim] * num_res_blocks
        self.resnets = nn.ModuleList([ResidualBlock(i, o, dropout) for i, o in zip(dims[:-1], dims[1:])])
        mode = "downsample3d" if self.factor_t == 2 else "downsample2d"
        self.downsampler = Resample(out_dim, mode) if downsample else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        shortcut = avg_down_3d(x, self.out_dim, self.factor_t, self.factor_s)  # (B, C_out, T', H', W')
        for resnet in self.resnets:
            x = resnet(x, cache)
        if self.downsampler is not None:
            x = self.downsampler(x, cache)
        return x.add_(shortcut)  # in place: the block's output is ours


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::WanResidualUpBlock
class ResidualUpBlock(nn.Module):
    """Wan 2.2's decoder level: `num_res_blocks + 1` residual blocks and an optional upsampler keeping `out_dim`
    channels, plus (when upsampling) the parameter-free `dup_up_3d` shortcut from the level's input to its output.

    Args:
        in_dim (`int`), out_dim (`int`): Channels in and out.
        num_res_blocks (`int`): Residual blocks, less one.
        dropout (`float`): Dropout inside the residual blocks.
        temporal_upsample (`bool`): Whether the upsampler also doubles the frames (all but frame 0).
        upsample (`bool`): Whether the level ends with a 2x upsampler (all levels but the last).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_res_blocks: int,
        dropout: float = 0.0,
        temporal_upsample: bool = False,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.factor_t = 2 if temporal_upsample and upsample else 1
        self.out_dim = out_dim
        self.upsample = upsample
        if upsample:
            _check_shortcut_channels(in_dim, out_dim, self.factor_t * 4, down=False)
        dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
        self.resnets = nn.ModuleList([ResidualBlock(i, o, dropout) for i, o in zip(dims[:-1], dims[1:])])
        mode = "upsample3d" if self.factor_t == 2 else "upsample2d"
        self.upsampler = Resample(out_dim, mode, upsample_out_dim=out_dim) if upsample else None

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        first_chunk = is_first_chunk(cache)  # read before the layers run: the chunk's frames start at frame 0
        h = x
        for resnet in self.resnets:
            h = resnet(h, cache)
        if self.upsampler is None:
            return h
        h = self.upsampler(h, cache)  # (B, C_out, T_up, 2H, 2W)
        return h.add_(dup_up_3d(x, self.out_dim, self.factor_t, 2, first_chunk))  # in place: the output is ours
