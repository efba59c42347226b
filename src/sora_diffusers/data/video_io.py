"""uint8 video files for the data, training and evaluation code: the names they use for the one reader and the one
writer of `sora_diffusers.utils.export` (atomic writes, odd sizes padded, gif by extension)."""

from pathlib import Path

import numpy as np

from ..utils.export import DEFAULT_MP4_QUALITY, export_to_video, load_video_frames


__all__ = ["DEFAULT_MP4_QUALITY", "read_video", "write_video"]


def read_video(path: str | Path) -> np.ndarray:
    """Every frame of an mp4/gif as a `(T, H, W, 3)` uint8 array (`load_video_frames`)."""
    return load_video_frames(path)


def write_video(path: str | Path, frames: np.ndarray, fps: int, quality: int = DEFAULT_MP4_QUALITY) -> Path:
    """Write a `(T, H, W, 3)` uint8 video as H.264 mp4 or gif (by extension), atomically: `export_to_video`."""
    return Path(export_to_video(frames, path, fps=fps, quality=quality))
