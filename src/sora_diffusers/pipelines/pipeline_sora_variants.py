"""Thin task wrappers over `SoraPipeline`: each builds `conditions` and calls the one denoising loop."""

import inspect
import os
from typing import Any

import torch
from diffusers.utils import logging

from .conditioning import FrameCondition
from .inputs import _video_length, check_frames_type, is_clip_batch, load_frames
from .pipeline_output import SoraPipelineOutput
from .pipeline_sora import SoraPipeline
from .validation import check_int, check_number


logger = logging.get_logger(__name__)

EXTENSION_MODES = ("forward", "backward", "loop", "connect")


class SoraImageToVideoPipeline(SoraPipeline):
    """Animate an image: the image is the first frame of the video."""

    _hub_pipeline_tag = "image-to-video"

    def __call__(
        self,
        image: Any,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        *,
        image_strength: float = 1.0,
        **kwargs,
    ) -> SoraPipelineOutput | tuple:
        r"""
        Args:
            image: the first frame (PIL image, array, tensor or path), or a list of images, one per prompt (as in
                diffusers' image-to-video pipelines).
            prompt, negative_prompt: what happens next / what to steer away from (diffusers' I2V order).
            image_strength (`float`, defaults to 1.0): 1.0 keeps the image exactly as frame 0: the output's frame 0 is
                the image resized to `height` x `width` (`return_decoded_conditions=True` returns the model's
                rendering of it instead).
            **kwargs: any argument of `SoraPipeline.__call__` (`conditions` adds more frames; `strict_size`,
                `return_decoded_conditions`).
        """
        check_frames_type(image, "image")
        check_number("image_strength", image_strength, 0.0, 1.0)
        if isinstance(image, (str, os.PathLike)):
            image = load_frames(image, "image")  # here, so an unreadable file is reported as `image`
        if isinstance(image, (list, tuple)) and not is_clip_batch(image):
            image = [[frame] for frame in image]  # a batch of one-frame clips, not a clip
        conditions = [FrameCondition(image, 0, image_strength, name="image"), *(kwargs.pop("conditions", None) or [])]
        return super().__call__(prompt=prompt, negative_prompt=negative_prompt, conditions=conditions, **kwargs)


class SoraVideoExtensionPipeline(SoraPipeline):
    """Extend a clip forward or backward in time, loop it seamlessly, or connect it to a second clip.

    The returned video holds the original frames, exactly as given (resized to the output size), and the new ones in
    time order (for "loop", the clip followed by frames that lead back into its start);
    `return_decoded_conditions=True` returns the model's rendering of the given frames instead.
    """

    def __call__(
        self,
        video: Any,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        *,
        mode: str = "forward",
        video_end: Any = None,
        num_frames: int | None = None,
        **kwargs,
    ) -> SoraPipelineOutput | tuple:
        r"""
        Args:
            video: the clip to extend (list of PIL frames, array (T, H, W, 3), tensor (3, T, H, W), or a path).
            prompt, negative_prompt: what happens in the new frames / what to steer away from.
            mode (`str`): "forward" (clip at the start, new frames after), "backward" (new frames before the clip,
                which ends the video), "loop" (new frames after the clip that lead back into its first frames) or
                "connect" (`video` at the start, `video_end` at the end, new frames in between).
            video_end: the second clip, for "connect".
            num_frames (`int`): frames of the whole output, clips included; defaults to twice the clip, rounded to a
                valid length (1 + 4k). Other counts are generated at the next valid one and cut to `num_frames`,
                except for "loop", whose last frames must lead back into the clip: there the next valid count is used
                (the loop returns 4 + 1 frames fewer than it).
            **kwargs: any argument of `SoraPipeline.__call__` (`strict_size`, `return_decoded_conditions`, ...).
        """
        if mode not in EXTENSION_MODES:
            raise ValueError(f"`mode` must be one of {EXTENSION_MODES}, got {mode!r}.")
        if (mode == "connect") != (video_end is not None):
            raise ValueError("`video_end` is required for mode='connect' and only used there.")
        check_frames_type(video, "video")
        if video_end is not None:
            check_frames_type(video_end, "video_end")
        if num_frames is not None:
            check_int("num_frames", num_frames, 1)
        clip_length = _video_length(video)
        end_length = _video_length(video_end, "video_end") if video_end is not None else 0
        r_t = self.vae_scale_factor_temporal
        if num_frames is None:
            num_frames = (2 * clip_length + end_length - 1) // r_t * r_t + 1
        if num_frames <= clip_length + end_length + (r_t + 1 if mode == "loop" else 0):
            raise ValueError(
                f"`num_frames` ({num_frames}) must exceed the frames given ({clip_length + end_length}) so there is "
                "something to generate."
            )
        if mode == "loop" and not kwargs.get("strict_size", False):
            # the head copy must fill the last latent group of the generated video, so the loop cannot be cut shorter
            valid = self.generation_canvas(num_frames=num_frames).generation_num_frames
            if valid != num_frames:
                logger.info(f"A loop needs 1 + k*{r_t} frames: generating {valid}, not `num_frames`={num_frames}.")
            num_frames = valid
        conditions = {
            "forward": [FrameCondition(video, 0, name="video")],
            "backward": [FrameCondition(video, -clip_length, name="video")],
            # the clip's first latent group again at the end, so the last new frame leads into frame 0
            "loop": [FrameCondition(video, 0, name="video"), FrameCondition(_head(video, r_t), -r_t, name="video")],
            "connect": [
                FrameCondition(video, 0, name="video"),
                FrameCondition(video_end, -end_length, name="video_end"),
            ],
        }[mode] + (kwargs.pop("conditions", None) or [])
        output = super().__call__(
            prompt=prompt, negative_prompt=negative_prompt, num_frames=num_frames, conditions=conditions, **kwargs
        )
        if mode == "loop" and kwargs.get("output_type", "np") != "latent":
            # the last r_t frames repeat clip frames 1..r_t and the one before them stands for frame 0: drop all
            output = _drop_last_frames(output, r_t + 1)
        return output


def _head(video: Any, num: int) -> Any:
    """First `num` frames of frame 1 onwards of a clip (a whole latent group: frames 1 .. num), or of each clip."""
    if is_clip_batch(video):
        return [_head(clip, num) for clip in video]
    if isinstance(video, (str, os.PathLike)):
        video = load_frames(video, "video")
    if isinstance(video, torch.Tensor):
        return video[..., 1 : 1 + num, :, :]
    return video[1 : 1 + num]


def _drop_last_frames(output, num: int):
    frames = output.frames if isinstance(output, SoraPipelineOutput) else output[0]
    if isinstance(frames, list):
        frames = [video[:-num] for video in frames]
    elif frames.ndim == 5:  # np (B, T, H, W, 3) or pt (B, T, 3, H, W)
        frames = frames[:, :-num]
    return SoraPipelineOutput(frames=frames) if isinstance(output, SoraPipelineOutput) else (frames,)


class SoraVideoToVideoPipeline(SoraPipeline):
    """Edit a video (SDEdit): noise it to level `strength`, then denoise toward the prompt."""

    def __call__(
        self,
        video: Any,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        *,
        strength: float = 0.6,
        **kwargs,
    ) -> SoraPipelineOutput | tuple:
        r"""
        Args:
            video: the clip to edit (list of PIL frames, array (T, H, W, 3), tensor (3, T, H, W), or a path).
            prompt, negative_prompt: the edit / what to steer away from (diffusers' V2V order).
            strength (`float`, defaults to 0.6): noise level the video starts from (1.0 ignores it, 0.0 returns its
                VAE reconstruction).
            **kwargs: any argument of `SoraPipeline.__call__`.
        """
        return super().__call__(
            prompt=prompt, negative_prompt=negative_prompt, video=video, strength=strength, **kwargs
        )


def _show_passed_arguments(wrapper: type[SoraPipeline]) -> None:
    """Give `wrapper.__call__` the signature it takes: its own parameters, then those of `SoraPipeline.__call__` it
    passes on through `**kwargs` (keyword-only), so that `inspect.signature` (diffusers' pipeline tests, IDEs,
    `help()`) shows `height`, `guidance_scale`, `prompt_embeds`, the callbacks and the rest."""
    own = inspect.signature(wrapper.__call__)
    params = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    names = {p.name for p in params}
    passed = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(SoraPipeline.__call__).parameters.values()
        if p.name not in names and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]
    wrapper.__call__.__signature__ = own.replace(parameters=params + passed)


for _wrapper in (SoraImageToVideoPipeline, SoraVideoExtensionPipeline, SoraVideoToVideoPipeline):
    _show_passed_arguments(_wrapper)
