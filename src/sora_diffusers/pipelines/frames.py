"""`SoraFramesMixin`: images and clips -> latents and back, for `SoraPipeline` (loading, resizing and cutting
conditions to the VAE's causal frame groups, encoding them, drawing the noise, decoding with a progress bar)."""

from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from .canvas import GenerationCanvas
from .conditioning import FrameCondition, GivenFrames, LatentCondition, align_condition, encode_clip, latent_stats
from .inputs import exact_size_processor, frames_to_tensor


class SoraFramesMixin:
    """What `SoraPipeline.__call__` does with pixels, through the pipeline's `vae`, `generation_canvas` and
    `progress_bar`."""

    def preprocess_frames(self, frames: Any, height: int, width: int, name: str = "frames") -> torch.Tensor:
        """Any image, clip or file path -> (B, 3, T, height, width) in [-1, 1] (formats: `inputs.frames_to_tensor`),
        resized to exactly `height` x `width`, whatever multiple the VAE needs."""
        return frames_to_tensor(frames, exact_size_processor(), height, width, name)

    def encode_video(self, video: torch.Tensor, generator=None, sample: bool = False) -> torch.Tensor:
        """(B, 3, T, H, W) pixels -> normalised latents (B, C, T', H', W') (posterior mode unless `sample`)."""
        return encode_clip(self.vae, video.to(device=self._execution_device), generator=generator, sample=sample)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> (B, 3, T, H, W) pixels in [-1, 1], with a progress bar counted in frames."""
        mean, std = latent_stats(self.vae, latents)
        latents = (latents * std + mean).to(self.vae.dtype)
        num_frames = 1 + (latents.shape[2] - 1) * self.vae_scale_factor_temporal
        with self._frames_progress_bar(num_frames, "Decoding") as progress_bar:
            if not hasattr(self.vae, "decode_frames"):  # diffusers' AutoencoderKLWan: one call, one update
                video = self.vae.decode(latents, return_dict=False)[0]
                progress_bar.update(video.shape[2])
                return video
            # The VAE's own temporal chunks (`enable_temporal_chunking`), streamed: the frames are `decode`'s exactly.
            chunk = self.vae.num_latent_frames_per_chunk or latents.shape[2]
            video, done = None, 0
            for frames in self.vae.decode_frames(latents, num_latent_frames=chunk):  # (B, 3, t, H, W) blocks
                if video is None:
                    video = frames.new_empty(*frames.shape[:2], num_frames, *frames.shape[3:])  # (B, 3, T, H, W)
                video[:, :, done : done + frames.shape[2]] = frames
                done += frames.shape[2]
                progress_bar.update(frames.shape[2])
            return video

    def _frames_progress_bar(self, total: int, desc: str):
        """`self.progress_bar` (so `set_progress_bar_config` applies, `disable=True` included), named and counted in
        frames."""
        config = getattr(self, "_progress_bar_config", {})
        self._progress_bar_config = {"desc": desc, "unit": "frame", **config}  # the user's settings win
        try:
            return self.progress_bar(total=total)
        finally:
            self._progress_bar_config = config

    def _encode_conditions(
        self, prepared: list[tuple], conditions: list[FrameCondition], batch_size: int
    ) -> list[LatentCondition]:
        """`encode_condition` on every clip from `_prepare_condition`, with a progress bar counted in frames."""
        if not prepared:
            return []
        encoded = []
        with self._frames_progress_bar(sum(clip.shape[2] for clip, *_ in prepared), "Encoding conditions") as bar:
            for (clip, latent_index, video_start, *_), condition in zip(prepared, conditions):
                encoded.append(self.encode_condition(clip, latent_index, video_start, condition.strength, batch_size))
                bar.update(clip.shape[2])
        return encoded

    def prepare_condition(
        self, condition: FrameCondition, num_frames: int, height: int, width: int, index: int = 0
    ) -> tuple[torch.Tensor, int, bool]:
        """Load a `FrameCondition` and cut it to the VAE's causal frame groups (no model work, so it fails early).

        Returns:
            the pixels to encode (B_c, 3, T_c, H, W) at the generation size (`generation_canvas`; `height` x `width`
            when the model takes it directly), the latent frame they start at, and whether they start the video (see
            `align_condition`).
        """
        canvas = self.generation_canvas(height, width, num_frames)
        return self._prepare_condition(condition, canvas, index)[:3]

    def _prepare_condition(
        self, condition: FrameCondition, canvas: GenerationCanvas, index: int
    ) -> tuple[torch.Tensor, int, bool, GivenFrames]:
        """`prepare_condition`, plus the condition's pixels at the requested size and the output frame they start at
        (what the output shows for a strength-1 condition)."""
        frames = self.preprocess_frames(
            condition.frames, canvas.height, canvas.width, name=condition.display_name(index)
        )
        # a negative index counts from the end of the requested video, whose last frame the clip then ends on (the
        # frames generated past it to reach a valid count are dropped)
        start = condition.frame_index + canvas.num_frames if condition.frame_index < 0 else condition.frame_index
        try:
            if not 0 <= start < canvas.num_frames:
                raise ValueError(
                    f"`frame_index` {condition.frame_index} is outside the output video of {canvas.num_frames} "
                    f"frames (allowed: {-canvas.num_frames} .. {canvas.num_frames - 1})."
                )
            first, used, latent_index, video_start = align_condition(
                start, frames.shape[2], canvas.generation_num_frames, self.vae_scale_factor_temporal
            )
        except ValueError as error:
            resolved = condition.frame_index < 0 <= start
            where = f" (`frame_index` {condition.frame_index} is frame {start})" if resolved else ""
            raise ValueError(f"`{condition.name or f'conditions[{index}]'}`{where}: {error}") from error
        clip = canvas.pad_space(frames[:, :, first : first + used])
        return clip, latent_index, video_start, GivenFrames(frames, start, condition.strength)

    def encode_condition(
        self, clip: torch.Tensor, latent_index: int, video_start: bool, strength: float, batch_size: int
    ) -> LatentCondition:
        """Pixels from `prepare_condition` -> `LatentCondition` for a batch of `batch_size` videos."""
        clip = clip.to(device=self._execution_device)
        latents = encode_clip(self.vae, clip, 0 if video_start else latent_index, self.vae_scale_factor_temporal)
        return LatentCondition(
            latents.repeat_interleave(batch_size // latents.shape[0], dim=0), latent_index, strength
        )

    def prepare_latents(self, shape, dtype, device, generator, latents: torch.Tensor | None = None) -> torch.Tensor:
        """The starting noise of `shape` (B, C, T', H', W'), drawn from `generator` (one per video, or one for all),
        or the `latents` given, which must have that shape."""
        if latents is not None:
            if tuple(latents.shape) != tuple(shape):
                raise ValueError(f"`latents` must have shape {tuple(shape)}, got {tuple(latents.shape)}.")
            return latents.to(device=device, dtype=dtype)
        if isinstance(generator, list) and len(generator) != shape[0]:
            raise ValueError(f"Got {len(generator)} generators for a batch of {shape[0]} videos; give one per video.")
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
