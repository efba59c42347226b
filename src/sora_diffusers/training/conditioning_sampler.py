"""Random frame conditioning for training: which latent frames of a clip are given clean, and how to encode them.

A trained model serves text-to-video, image-to-video, forward/backward extension and connecting two clips with one
mechanism (clean latent frames at timestep 0, `pipelines/conditioning.py`). Training teaches it by drawing, per sample,
one of `CONDITION_MODES`:

    none        nothing given                           (text-to-video)
    image_head  latent 0 = pixel frame 0                (image-to-video)
    clip_head   latents 0 .. k-1, k >= 2                (forward extension)
    clip_tail   the last k latents, k >= 1              (backward extension)
    head_tail   a head and a tail, something in between (loops, connecting clips)

At least one latent frame is always left to generate. The clean latents must be the ones the pipeline makes at
inference (`SoraPipeline.encode_condition`): a head clip is encoded as the start of a video, so by causality it equals
the first latents of the whole clip's encoding; a tail clip starts mid-video at a latent group boundary and is encoded
at its place, after a still copy of its first frame whose latents are dropped (`tail_clip_start`,
`pipelines.conditioning.with_lead_frames`); `encode_clips` and `encode_tails` make them with the pipeline's own
`encode_clip`, and `conditioned_latents` draws a batch's masks and puts each sample's tail encoding in place.
"""

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..pipelines.conditioning import encode_clip


CONDITION_MODES = ("none", "image_head", "clip_head", "clip_tail", "head_tail")
DEFAULT_CONDITION_PROBS = {"none": 0.4, "image_head": 0.25, "clip_head": 0.2, "clip_tail": 0.1, "head_tail": 0.05}
# A mode that does not fit a short clip becomes the next simpler one (a 2-latent clip has room for no head+tail).
_FALLBACK = {"head_tail": "clip_tail", "clip_head": "image_head", "clip_tail": "none", "image_head": "none"}
_MIN_LATENT_FRAMES = {"none": 1, "image_head": 2, "clip_head": 3, "clip_tail": 2, "head_tail": 3}


def normalize_condition_probs(probs: Mapping[str, float] | Sequence[float] | None) -> np.ndarray:
    """Probabilities of `CONDITION_MODES` as an array summing to 1, from a dict (missing modes = 0) or a sequence of 5.

    Raises:
        ValueError: an unknown mode, a negative value, a sequence of the wrong length, or nothing positive.
    """
    if probs is None:
        probs = DEFAULT_CONDITION_PROBS
    if isinstance(probs, Mapping):
        unknown = set(probs) - set(CONDITION_MODES)
        if unknown:
            raise ValueError(f"unknown condition modes {sorted(unknown)}; choose from {CONDITION_MODES}")
        values = np.array([float(probs.get(mode, 0.0)) for mode in CONDITION_MODES])
    else:
        values = np.array([float(p) for p in probs])
        if values.shape != (len(CONDITION_MODES),):
            raise ValueError(f"give one probability per mode {CONDITION_MODES}, got {len(values)} values")
    if (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"condition probabilities must be >= 0 with a positive sum, got {values.tolist()}")
    return values / values.sum()


def feasible_mode(mode: str, num_latent_frames: int) -> str:
    """`mode`, or the simpler mode it falls back to when the clip has too few latent frames for it."""
    while num_latent_frames < _MIN_LATENT_FRAMES[mode]:
        mode = _FALLBACK[mode]
    return mode


def sample_condition_mask(
    num_latent_frames: int,
    rng: np.random.Generator,
    probs: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
    tail_length: int | None = None,
) -> tuple[str, torch.Tensor]:
    """
    Draw a conditioning mode and the latent frames it gives clean.

    Args:
        num_latent_frames (`int`): T' of the clip.
        rng (`np.random.Generator`): the random stream.
        probs: per-mode probabilities (see `normalize_condition_probs`); defaults to `DEFAULT_CONDITION_PROBS`.
        tail_length (`int`, *optional*): fix the tail's latent frames (for latents cached with one tail encoding);
            must be in [1, T' - 1]. A head+tail head then gets at most T' - 1 - tail_length frames, and falls back to a
            tail alone when no room is left.

    Returns:
        (mode, mask): the mode actually used (after fallbacks for short clips) and a bool tensor `(T',)`, True where
        the latent frame is given clean. At least one frame is False.
    """
    T = num_latent_frames
    if T < 1:
        raise ValueError(f"`num_latent_frames` must be >= 1, got {T}")
    if tail_length is not None and not 1 <= tail_length <= T - 1:
        raise ValueError(f"`tail_length` must be in [1, {T - 1}] for {T} latent frames, got {tail_length}")
    p = probs if isinstance(probs, np.ndarray) else normalize_condition_probs(probs)
    mode = feasible_mode(CONDITION_MODES[int(rng.choice(len(CONDITION_MODES), p=p))], T)
    if mode == "head_tail" and tail_length is not None and tail_length > T - 2:
        mode = "clip_tail"

    mask = torch.zeros(T, dtype=torch.bool)
    if mode == "image_head":
        mask[0] = True
    elif mode == "clip_head":
        mask[: int(rng.integers(2, T))] = True  # 2 .. T-1 frames
    elif mode == "clip_tail":
        mask[T - (tail_length or int(rng.integers(1, T))) :] = True  # 1 .. T-1 frames
    elif mode == "head_tail":
        tail = tail_length or int(rng.integers(1, T - 1))  # 1 .. T-2, leaving room for a head and a gap
        mask[: int(rng.integers(1, T - tail))] = True  # 1 .. T-1-tail frames
        mask[T - tail :] = True
    return mode, mask


def tail_length_of(mask: torch.Tensor) -> int:
    """Latent frames of the clean tail of a `(T',)` mask: the trailing True run, unless it is the head itself."""
    T = mask.shape[0]
    if not bool(mask[-1]):
        return 0
    false = (~mask).nonzero()
    return T - 1 - int(false[-1]) if len(false) else T


def tail_clip_start(num_latent_frames: int, tail_length: int, temporal_ratio: int) -> int:
    """First pixel frame of the clip whose `tail_length` latent frames end a video of `num_latent_frames`.

    Latent j >= 1 covers pixel frames (j - 1) * r + 1 .. j * r, so the last k latents start at 1 + (T' - k - 1) * r.
    """
    if not 1 <= tail_length <= num_latent_frames - 1:
        raise ValueError(f"`tail_length` must be in [1, {num_latent_frames - 1}], got {tail_length}")
    return 1 + (num_latent_frames - tail_length - 1) * temporal_ratio


@torch.no_grad()
def encode_clips(vae, video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> normalised posterior means (B, C, T', H', W'), float32; by causality a head clip's
    latents are the first ones of these."""
    return encode_clip(vae, video)


@torch.no_grad()
def encode_tails(vae, video: torch.Tensor, tail_length: int) -> torch.Tensor:
    """Latents of the clips that fill the last `tail_length` latent frames, encoded as the pipeline encodes a clip
    placed mid-video: (B, 3, T, H, W) -> (B, C, tail_length, H', W')."""
    ratio = vae.temporal_compression_ratio
    num_latent_frames = 1 + (video.shape[2] - 1) // ratio
    start = tail_clip_start(num_latent_frames, tail_length, ratio)
    return encode_clip(vae, video[:, :, start:], num_latent_frames - tail_length, ratio)


def condition_batch(
    x0: torch.Tensor, rng: np.random.Generator, probs: np.ndarray, tail_lengths: Sequence[int] | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Draw a conditioning mask per sample: (B, T') bool, and the tail length each sample needs (0 = none)."""
    masks = [
        sample_condition_mask(x0.shape[2], rng, probs, None if tail_lengths is None else tail_lengths[b] or None)[1]
        for b in range(x0.shape[0])
    ]
    tails = [tail_length_of(mask) for mask in masks]
    return torch.stack(masks).to(x0.device), tails  # (B, T'), B ints


def latents_with_tails(x0: torch.Tensor, tails: list[int], encode_tail) -> torch.Tensor:
    """Replace each sample's last `tails[b]` latent frames by its tail clip's own encoding (`encode_tail(b, k)`)."""
    if not any(tails):
        return x0
    x0 = x0.clone()
    for b, k in enumerate(tails):
        if k:
            x0[b, :, -k:] = encode_tail(b, k)
    return x0


def conditioned_latents(
    batch: dict, vae, rng: np.random.Generator, probs: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's clean latents (B, C, T', H', W') with each sample's tail replaced by its conditioning encoding,
    and the conditioning masks (B, T'): from a latent cache's batch (`latents`, `tail_latents`, `tail_length`), or
    encoded now from `video` with `vae`."""
    if "latents" in batch:
        x0 = batch["latents"]
        masks, tails = condition_batch(x0, rng, probs, list(batch["tail_length"]))
        return latents_with_tails(x0, tails, lambda b, k: batch["tail_latents"][b][:, -k:].to(x0)), masks
    video = batch["video"]
    x0 = encode_clips(vae, video)
    masks, tails = condition_batch(x0, rng, probs)
    return latents_with_tails(x0, tails, lambda b, k: encode_tails(vae, video[b : b + 1], k)[0]), masks


def captions_with_dropout(captions: list[str], rng: np.random.Generator, dropout: float) -> list[str]:
    """Each caption replaced by "" with probability `dropout`, so the model also learns the unconditional velocity
    that classifier-free guidance needs."""
    return ["" if rng.random() < dropout else caption for caption in captions]
