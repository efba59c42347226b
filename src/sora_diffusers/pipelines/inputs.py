"""Reading and checking what users pass as images, clips and prompts, before any model work."""

import functools
import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import load_image, load_video
from diffusers.video_processor import VideoProcessor


VIDEO_FILE_EXTENSIONS = (".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv")


@functools.cache
def exact_size_processor() -> VideoProcessor:
    """diffusers' `VideoProcessor` resizing to exactly the size asked: with the VAE's `vae_scale_factor` it rounds
    the size down to a multiple of it, and conditions are resized to the requested frame, whatever its size."""
    return VideoProcessor(vae_scale_factor=1)


def _num_prompts(prompt: str | list[str] | None, prompt_embeds: torch.Tensor | None) -> int:
    if prompt is None:
        return prompt_embeds.shape[0]
    return 1 if isinstance(prompt, str) else len(prompt)


def _check_clip_batch(frames: torch.Tensor | None, num_prompts: int, name: str) -> None:
    """A conditioning image/clip or source video is shared by all prompts (batch 1) or given once per prompt."""
    if frames is not None and frames.shape[0] not in (1, num_prompts):
        raise ValueError(
            f"`{name}` holds a batch of {frames.shape[0]} clips for {num_prompts} prompts; give one clip for all "
            "prompts or one per prompt."
        )


def load_frames(path: str | os.PathLike, name: str) -> PIL.Image.Image | list[PIL.Image.Image]:
    """An image file -> PIL image, a video file -> list of PIL frames; unreadable -> ValueError naming argument `name`."""
    path = str(path)
    try:
        return load_video(path) if path.lower().endswith(VIDEO_FILE_EXTENSIONS) else load_image(path)
    except Exception as error:
        raise ValueError(f"`{name}`: cannot read {path!r}: {error}") from error


def _video_length(video: Any, name: str = "video") -> int:
    """Frame count of a clip given as a list, array, tensor (3, T, H, W)/(B, 3, T, H, W) or path; 1 for an image."""
    if isinstance(video, (str, os.PathLike)):
        path = str(video)
        if not os.path.isfile(path):
            raise ValueError(f"`{name}`: cannot read {path!r} (no such file).")
        return len(load_frames(path, name)) if path.lower().endswith(VIDEO_FILE_EXTENSIONS) else 1
    if isinstance(video, (list, tuple)):
        return len(video)
    if isinstance(video, np.ndarray):
        return video.shape[0] if video.ndim == 4 else 1
    if isinstance(video, torch.Tensor):
        return video.shape[-3] if video.ndim >= 4 else 1
    return 1


def frames_to_tensor(frames: Any, video_processor, height: int, width: int, name: str = "frames") -> torch.Tensor:
    """Any image, clip or file path -> (B, 3, T, height, width) in [-1, 1], resized by `video_processor`.

    PIL images; numpy arrays (H, W, 3) / (T, H, W, 3) as floats in [0, 1] or uint8; tensors (3, H, W) /
    (3, T, H, W) / (B, 3, T, H, W) as floats in [-1, 1] or uint8; lists of images; image or video file paths.
    """
    if isinstance(frames, (str, os.PathLike)):
        frames = load_frames(frames, name)
    # uint8 pixels -> the float ranges below (diffusers' video processor takes numpy floats in [0, 1] as they are)
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8:
        frames = frames.astype(np.float32) / 255.0
    elif isinstance(frames, (list, tuple)) and any(isinstance(f, np.ndarray) and f.dtype == np.uint8 for f in frames):
        frames = [f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f for f in frames]
    elif isinstance(frames, torch.Tensor) and frames.dtype == torch.uint8:
        frames = frames.float() / 127.5 - 1.0
    # RGB: gif frames and user images may be palette, grey or RGBA, which the video processor keeps as they are
    if isinstance(frames, PIL.Image.Image):
        frames = frames.convert("RGB")
    elif isinstance(frames, (list, tuple)) and all(isinstance(f, PIL.Image.Image) for f in frames):
        frames = [f.convert("RGB") for f in frames]
    if isinstance(frames, PIL.Image.Image) or (isinstance(frames, np.ndarray) and frames.ndim == 3):
        return video_processor.preprocess(frames, height, width).unsqueeze(2)  # (1, 3, 1, H, W)
    if isinstance(frames, torch.Tensor):
        if frames.ndim == 3:  # (3, H, W) image
            frames = frames[:, None]
        if frames.ndim == 4:  # (3, T, H, W) clip
            frames = frames[None]
        if frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(
                f"`{name}` tensor must be (3, H, W), (3, T, H, W) or (B, 3, T, H, W), got {tuple(frames.shape)}."
            )
        B, C, T, H, W = frames.shape
        flat = frames.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)  # (B*T, 3, H, W)
        flat = torch.nn.functional.interpolate(flat.float(), size=(height, width), mode="bilinear", antialias=True)
        return flat.reshape(B, T, C, height, width).permute(0, 2, 1, 3, 4).clamp(-1, 1)
    if isinstance(frames, (list, tuple)) or (isinstance(frames, np.ndarray) and frames.ndim == 4):
        return video_processor.preprocess_video(frames, height, width)  # (B, 3, T, H, W)
    raise TypeError(f"`{name}` must be an image, a clip or a file path, got {type(frames).__name__}.")
