"""Reading and checking what users pass as images, clips and prompts, before any model work."""

import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import load_image, load_video


VIDEO_FILE_EXTENSIONS = (".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv")


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
