"""Reading and writing uint8 videos (mp4 through imageio-ffmpeg, gif through Pillow). Imports imageio lazily."""

from pathlib import Path

import numpy as np


# imageio-ffmpeg's 0-10 quality scale; 8 keeps small, saturated shapes close to their colours after yuv420 encoding.
DEFAULT_MP4_QUALITY = 8
GIF_SUFFIXES = (".gif",)


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """(H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA -> (H, W, 3) uint8."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3]).astype(np.uint8, copy=False)


def read_video(path: str | Path) -> np.ndarray:
    """Read every frame of an mp4/gif (or any format imageio knows) as a `(T, H, W, 3)` uint8 array."""
    import imageio.v2 as imageio

    with imageio.get_reader(str(path)) as reader:
        frames = [_to_rgb(frame) for frame in reader]
    if not frames:
        raise ValueError(f"{path} holds no frames")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: int, quality: int = DEFAULT_MP4_QUALITY) -> Path:
    """Write a `(T, H, W, 3)` uint8 video as H.264 mp4 (yuv420p, so width and height must be even) or as a gif."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    if path.suffix.lower() in GIF_SUFFIXES:
        imageio.mimwrite(path, list(frames), duration=1000 / fps, loop=0)
        return path
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"mp4 (yuv420p) needs an even width and height, got {width}x{height}")
    # macro_block_size=1: keep the exact size instead of letting imageio resize to multiples of 16.
    with imageio.get_writer(
        path,
        fps=fps,
        codec="libx264",
        quality=quality,
        pixelformat="yuv420p",
        macro_block_size=1,
        ffmpeg_log_level="error",
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
