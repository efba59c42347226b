"""One conditioning mechanism for every task: clean latent frames placed on the latent time axis.

A `FrameCondition` is an image or clip placed at a pixel frame index with a strength. `SoraPipeline.encode_condition`
turns it into latent frames aligned with the causal VAE's grouping (latent 0 = pixel frame 0 alone, latent j >= 1 =
pixel frames 4j-3 .. 4j for 4x temporal compression); a clip placed later is encoded at its place
(`with_lead_frames`). `encode_clip` is that recipe, the one place where both the pipeline and training
(`training.conditioning_sampler`, `training.caches`) turn pixels into the latents a model is conditioned on.
`build_condition` merges all of them into one `(cond_latents, cond_sigma)` pair: the denoising loop keeps each
conditioned latent frame at noise level `cond_sigma` (0 = exactly clean) and lets every other frame be generated. Text-to-video is no condition; image-to-video one image at frame 0; extension a clip at the start (forward)
or the end (backward); a loop or a connection clips at both ends.
"""

from dataclasses import dataclass
from typing import Any

import torch

from ..training.flow_matching import add_noise


@dataclass
class FrameCondition:
    """An image or clip that the generated video must contain.

    Args:
        frames: an image (PIL, `np.ndarray` (H, W, 3), `torch.Tensor` (3, H, W)), a clip (list of PIL images,
            `np.ndarray` (T, H, W, 3), `torch.Tensor` (3, T, H, W) or (B, 3, T, H, W) in [-1, 1]) or a path to an
            image or video file.
        frame_index: pixel frame of the output where the clip starts; negative counts from the end (-1 = last frame).
        strength: 1.0 keeps the frames exactly; lower values let the model revise them (they start from noise level
            1 - strength instead of 0).
        name (`str`, *optional*): what error messages call these frames; defaults to `conditions[i].frames` (the
            task pipelines set `image`, `video` or `video_end`).
    """

    frames: Any
    frame_index: int = 0
    strength: float = 1.0
    name: str | None = None

    def display_name(self, index: int) -> str:
        """What errors call these frames: `name` (`image`, `video`, ...) or `conditions[index].frames`."""
        return self.name or f"conditions[{index}].frames"


@dataclass
class LatentCondition:
    """A `FrameCondition` after encoding: `latents` (B, C, T_c, H', W') placed at latent frame `latent_index`."""

    latents: torch.Tensor
    latent_index: int
    strength: float = 1.0


def num_latent_frames(num_frames: int, temporal_ratio: int) -> int:
    """Pixel frames 1 + k * r -> latent frames 1 + k (causal VAE: frame 0 is encoded alone)."""
    return (num_frames - 1) // temporal_ratio + 1


def nearest_valid_num_frames(num_frames: int, temporal_ratio: int) -> tuple[int, int]:
    """The valid frame counts (1 + k * r) just below and above `num_frames`."""
    lower = max(1, (num_frames - 1) // temporal_ratio * temporal_ratio + 1)
    return lower, lower + temporal_ratio


def with_lead_frames(clip: torch.Tensor, latent_index: int, temporal_ratio: int) -> torch.Tensor:
    """A clip that starts mid-video at latent frame `latent_index` >= 1, put where it stands for the VAE to encode.

    (B, C, T, H, W) -> (B, C, L + T, H, W), L = 1 + (latent_index - 1) * r: the frames before the clip are a still copy
    of its first frame. Encode the result and drop its first `latent_index` latents: what remains covers exactly the
    clip's groups of r frames. A causal VAE's latents of the same frames depend on how far into a video they are (with
    the shipped VAE, a one-frame lead put the first latent 0.47 of its variance away from the whole video's encoding,
    a lead to the clip's place 0.06), so the clip is encoded at its place rather than after a single frame.
    """
    if latent_index < 1:
        raise ValueError(f"`latent_index` must be >= 1 for a clip after frame 0, got {latent_index}.")
    lead = clip[:, :, :1].expand(-1, -1, 1 + (latent_index - 1) * temporal_ratio, -1, -1)
    return torch.cat([lead, clip], dim=2)


def latent_stats(vae, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel `latents_mean` and `latents_std` from the VAE's config, shaped (1, C, 1, 1, 1) in the dtype and on
    the device of `latents`; zeros and ones for a VAE without them (a `SpacetimeVAE` or an `AutoencoderKLWan`)."""
    C = latents.shape[1]
    mean = getattr(vae.config, "latents_mean", None) or [0.0] * C
    std = getattr(vae.config, "latents_std", None) or [1.0] * C
    view = (1, C, 1, 1, 1)
    as_tensor = lambda v: torch.tensor(v, device=latents.device, dtype=latents.dtype).view(view)  # noqa: E731
    return as_tensor(mean), as_tensor(std)


def encode_clip(
    vae,
    clip: torch.Tensor,
    latent_index: int = 0,
    temporal_ratio: int | None = None,
    generator: torch.Generator | None = None,
    sample: bool = False,
) -> torch.Tensor:
    """
    Pixels of a clip placed at latent frame `latent_index` of a video -> its normalised latents, float32.

    The one recipe for conditioning latents: the pipeline encodes its `FrameCondition`s with it and training encodes
    its clips and their conditioning tails with it, so a model trains on exactly the latents it is given at inference.
    A clip at the start (`latent_index` 0) is encoded as a video of its own; a clip placed later is encoded at its
    place, after a still copy of its first frame (`with_lead_frames`) whose latents are dropped.

    Args:
        vae: a `SpacetimeVAE` or diffusers' `AutoencoderKLWan`; `clip` is cast to its dtype, not moved.
        clip (`torch.Tensor` of shape `(B, 3, T, H, W)`): pixels in [-1, 1]; T = 1 + k * r at the start, k * r later.
        latent_index (`int`): the latent frame the clip starts at.
        temporal_ratio (`int`, *optional*): the VAE's temporal compression r; needed when `latent_index` >= 1.
        generator (`torch.Generator`, *optional*): for `sample`.
        sample (`bool`): a posterior sample instead of its mode.

    Returns:
        `torch.Tensor` of shape `(B, C, T_c, H', W')`: `(z - latents_mean) / latents_std`, T_c latent frames of the
        clip.
    """
    if latent_index:
        if temporal_ratio is None:
            raise ValueError(f"`temporal_ratio` is needed to encode a clip at `latent_index` {latent_index}.")
        clip = with_lead_frames(clip, latent_index, temporal_ratio)
    posterior = vae.encode(clip.to(dtype=vae.dtype)).latent_dist
    latents = posterior.sample(generator) if sample else posterior.mode()
    mean, std = latent_stats(vae, latents)
    return ((latents - mean) / std).float()[:, :, latent_index:]


def align_condition(
    frame_index: int, clip_length: int, num_frames: int, temporal_ratio: int
) -> tuple[int, int, int, bool]:
    """Which pixel frames of a clip become conditioning, and where they land in latent time.

    A clip at frame 0 is encoded like a video of its own (its first 1 + k * r frames). A clip placed later starts at
    the first latent group boundary (pixel 1 + j * r) at or after its frame index and keeps whole groups of r frames;
    frames before that boundary or past the last whole group are left for the model to generate.

    Returns:
        (first clip frame used, number of clip frames used, latent index, whether it is encoded as a video start)

    Raises:
        ValueError: the clip is empty, the frame index lies outside the output, or no whole latent frame of the clip
            fits.
    """
    if clip_length < 1:
        raise ValueError(f"A condition needs at least one frame, got a clip of {clip_length}.")
    start = frame_index + num_frames if frame_index < 0 else frame_index
    if not 0 <= start < num_frames:
        raise ValueError(
            f"`frame_index` {frame_index} is outside the output video of {num_frames} frames "
            f"(allowed: {-num_frames} .. {num_frames - 1})."
        )
    available = min(clip_length, num_frames - start)
    if start == 0:
        used = (available - 1) // temporal_ratio * temporal_ratio + 1
        return 0, used, 0, True
    boundary = start + (-(start - 1)) % temporal_ratio  # first pixel frame 1 + j*r >= start
    skip = boundary - start
    used = (available - skip) // temporal_ratio * temporal_ratio
    if used <= 0:
        raise ValueError(
            f"A condition at `frame_index` {frame_index} with {clip_length} frames covers no whole latent frame: "
            f"clips after frame 0 need {temporal_ratio} frames starting at a frame 1 + k*{temporal_ratio} "
            f"(here frame {boundary}) inside the {num_frames}-frame output."
        )
    return skip, used, (boundary - 1) // temporal_ratio + 1, False


@dataclass
class GivenFrames:
    """The pixels of a `FrameCondition` as the output shows them: `frames` (B_c, 3, T_c, H, W) in [-1, 1] at the
    requested size, from output frame `frame_index` (>= 0) on, given at `strength`."""

    frames: torch.Tensor
    frame_index: int
    strength: float = 1.0


def keep_given_frames(video: torch.Tensor, given: list[GivenFrames]) -> torch.Tensor:
    """Put the input pixels of frames given at strength 1 into the decoded video, in place of their VAE round trip.

    Every frame of a strength-1 clip that falls inside the video is replaced, the frames that `align_condition` left
    to the model included (a clip that starts or ends between latent groups): they are frames the user gave. Frames
    given at a lower strength keep what the model made of them. Later conditions win where clips overlap, as in
    `build_condition`.

    Args:
        video: (B, 3, T, H, W) decoded pixels in [-1, 1], cropped to the requested size.
        given: the conditions in the order they were passed.

    Returns:
        the video with the given pixels (cast to its dtype) at their frames; `video` itself if nothing is replaced.
    """
    if not any(item.strength == 1.0 for item in given):
        return video
    B, _, T, H, W = video.shape
    kept = video.clone()
    for item in given:
        span = min(item.frames.shape[2], T - item.frame_index)
        if span <= 0:
            continue
        end = item.frame_index + span
        if item.strength == 1.0:
            if item.frames.shape[-2:] != (H, W):
                raise ValueError(f"Given frames of {tuple(item.frames.shape[-2:])} do not fit a video of {(H, W)}.")
            pixels = item.frames[:, :, :span].to(device=video.device, dtype=video.dtype)
            kept[:, :, item.frame_index : end] = pixels.repeat_interleave(B // pixels.shape[0], dim=0)
        else:  # a later, weaker condition over an earlier exact one: the model's frames
            kept[:, :, item.frame_index : end] = video[:, :, item.frame_index : end]
    return kept


def build_condition(
    latent_shape: tuple[int, ...], conditions: list[LatentCondition], device=None, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge encoded conditions into the latent grid.

    Args:
        latent_shape: (B, C, T', H', W') of the latents being generated.
        conditions: encoded conditions; later ones overwrite earlier ones where they overlap.

    Returns:
        cond_latents (B, C, T', H', W'): clean conditioning latents, zeros where nothing is given.
        cond_sigma (T',): noise level each latent frame is held at; 0 = kept clean, 1 = unconditioned (generated).
    """
    B, C, T_, H_, W_ = latent_shape
    cond_latents = torch.zeros(latent_shape, device=device, dtype=dtype)
    cond_sigma = torch.ones(T_, device=device, dtype=torch.float32)
    for cond in conditions:
        if not 0.0 <= cond.strength <= 1.0:
            raise ValueError(f"Condition `strength` must be in [0, 1], got {cond.strength}.")
        if cond.latents.shape[0] not in (1, B) or (cond.latents.shape[1], *cond.latents.shape[3:]) != (C, H_, W_):
            raise ValueError(
                f"Condition latents {tuple(cond.latents.shape)} do not fit latents {tuple(latent_shape)} "
                "(batch 1 or B, same channels, height and width)."
            )
        if not 0 <= cond.latent_index < T_:
            raise ValueError(f"Condition `latent_index` {cond.latent_index} is outside the {T_} latent frames.")
        end = min(T_, cond.latent_index + cond.latents.shape[2])
        span = end - cond.latent_index
        cond_latents[:, :, cond.latent_index : end] = cond.latents[:, :, :span].to(device=device, dtype=dtype)
        cond_sigma[cond.latent_index : end] = 1.0 - cond.strength
    return cond_latents, cond_sigma


def impose_condition(
    latents: torch.Tensor,
    cond_latents: torch.Tensor,
    cond_sigma: torch.Tensor,
    noise: torch.Tensor,
    sigma: float,
    per_frame_timesteps: bool,
    prev_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Put the conditioning frames back at their noise level before a model call.

    Frames whose `cond_sigma` is below the current `sigma` are replaced by `(1 - s) * cond + s * noise`, with `noise`
    fixed for the whole sampling run. With `per_frame_timesteps` (models trained that way) s = `cond_sigma`, so clean
    frames stay clean and the model is told each frame's level; otherwise (e.g. converted Wan 2.1) s = `sigma`, the
    level the model is told for every frame (re-noised replacement).

    A partial-strength frame (0 < `cond_sigma` < 1) is released when `sigma` reaches its level: on that step
    (`sigma <= cond_sigma < prev_sigma`) it starts from `(1 - sigma) * cond + sigma * noise`, its conditioning noised
    to the level it is generated from, as an SDEdit start. `prev_sigma` is the previous step's sigma; `None` (the first
    step) also releases frames whose level is above the first sigma (e.g. a video-to-video run starting below it).

    Returns:
        latents with the conditioning imposed, and the per-frame sigma (T',) the model should be told.
    """
    replace = cond_sigma < sigma  # (T',)
    upper = float("inf") if prev_sigma is None else prev_sigma
    release = (cond_sigma < 1) & (cond_sigma >= sigma) & (cond_sigma < upper)  # (T',)
    if not (replace.any() or release.any()):
        return latents, torch.full_like(cond_sigma, sigma)
    frame_sigma = torch.where(replace, cond_sigma, torch.full_like(cond_sigma, sigma))
    level = frame_sigma if per_frame_timesteps else torch.full_like(cond_sigma, sigma)
    s = level.view(1, 1, -1, 1, 1).to(latents.dtype)
    noised = add_noise(cond_latents, noise, s)
    latents = torch.where((replace | release).view(1, 1, -1, 1, 1), noised, latents)
    return latents, level
