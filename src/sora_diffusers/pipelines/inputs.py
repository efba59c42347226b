"""Reading and checking what users pass as images, clips and prompts, before any model work."""

import functools
import os
import warnings
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import load_video
from diffusers.video_processor import VideoProcessor

from .validation import check_frame_values


VIDEO_FILE_EXTENSIONS = (".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv")
# What the frames of an image, clip or video may be given as (besides lists of these).
FRAME_TYPES = (PIL.Image.Image, np.ndarray, torch.Tensor, str, os.PathLike)
FRAMES_DESCRIPTION = (
    "an image (PIL image, np.ndarray (H, W, 3), torch.Tensor (3, H, W)), a clip (list of images, np.ndarray "
    "(T, H, W, 3), torch.Tensor (3, T, H, W) or (B, 3, T, H, W)), a list of clips (one per prompt) or an image or "
    "video file path"
)
# PIL modes of 16-bit pixels (PNG and TIFF grayscale), scaled to 8 bits by 1/257 instead of being clipped at 255.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


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


def is_clip_batch(frames: Any) -> bool:
    """A list of clips, one per prompt (as diffusers' `VideoProcessor` takes them): every item a list of images, an
    array (T, H, W, 3) or a tensor (3, T, H, W)."""

    def is_clip(item: Any) -> bool:
        return isinstance(item, (list, tuple)) or (isinstance(item, (np.ndarray, torch.Tensor)) and item.ndim == 4)

    return isinstance(frames, (list, tuple)) and bool(frames) and all(is_clip(item) for item in frames)


def check_frames_type(frames: Any, name: str) -> None:
    """Refuse, by name, what cannot be an image, a clip, a list of clips or a file path (`None`, a number, ...)."""
    if is_clip_batch(frames):
        for i, clip in enumerate(frames):
            if is_clip_batch(clip):
                raise TypeError(f"`{name}[{i}]` must be one clip, got a list of clips.")
            check_frames_type(clip, f"{name}[{i}]")
        return
    items = frames if isinstance(frames, (list, tuple)) else [frames]
    if isinstance(frames, (list, tuple)) and not frames:
        raise ValueError(f"`{name}` is an empty list; give at least one frame.")
    for item in items:
        if not isinstance(item, FRAME_TYPES) or (item is not frames and isinstance(item, (str, os.PathLike))):
            got = type(item).__name__ if item is frames else f"a list holding {type(item).__name__}"
            raise TypeError(f"`{name}` must be {FRAMES_DESCRIPTION}, got {got}.")


def image_to_rgb(image: PIL.Image.Image, name: str | None = None) -> PIL.Image.Image:
    """A PIL image of any mode as RGB: 16-bit pixels scaled to 8 bits (1/257, not clipped at 255), transparency
    composited over white; grayscale, palette, CMYK, YCbCr, LAB and HSV converted by PIL.

    Raises:
        ValueError: starting with `name` when given, for a mode with no fixed range (32-bit float "F", 32-bit
            integers beyond 16 bits).
    """
    mode = image.mode
    prefix = f"`{name}`: " if name else ""
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)  # (H, W); numpy reads the byte order of I;16B
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"{prefix}a mode {mode!r} image with values from {values.min()} to {values.max()} is not a 16-bit "
                "image; give 8- or 16-bit images (or a numpy float array in [0, 1])."
            )
        gray = np.round(values / 257).astype(np.uint8)
        return PIL.Image.fromarray(gray).convert("RGB")
    if mode == "F":
        raise ValueError(
            f"{prefix}32-bit float images (mode 'F') have no fixed range; give an 8- or 16-bit image, or a numpy "
            "float array (H, W, 3) in [0, 1]."
        )
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return PIL.Image.alpha_composite(PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ValueError(f"{prefix}cannot convert a mode {mode!r} image to RGB: {error}") from error


def open_image(path: str | os.PathLike) -> PIL.Image.Image:
    """An image file as an RGB PIL image (`image_to_rgb`), read now (not lazily) and closed.

    Raises:
        ValueError: the file cannot be read, is an image PIL takes for a decompression bomb (more pixels than
            `PIL.Image.MAX_IMAGE_PIXELS`), or has a mode `image_to_rgb` refuses.
    """
    with warnings.catch_warnings():
        # PIL warns above MAX_IMAGE_PIXELS and raises above twice that: both are refused, before decoding
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        try:
            with PIL.Image.open(path) as image:
                image.load()
                return image_to_rgb(image).copy()
        except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
            raise ValueError(
                f"{error} Refused as a possible decompression bomb; raise `PIL.Image.MAX_IMAGE_PIXELS` to read it."
            ) from error


def load_frames(path: str | os.PathLike, name: str) -> PIL.Image.Image | list[PIL.Image.Image]:
    """An image file -> PIL image, a video file -> list of PIL frames; unreadable -> ValueError naming argument `name`."""
    path = str(path)
    try:
        return load_video(path) if path.lower().endswith(VIDEO_FILE_EXTENSIONS) else open_image(path)
    except Exception as error:
        raise ValueError(f"`{name}`: cannot read {path!r}: {error}") from error


def _video_length(video: Any, name: str = "video") -> int:
    """Frame count of a clip given as a list, array, tensor (3, T, H, W)/(B, 3, T, H, W) or path (of the first clip
    of a list of clips); 1 for an image."""
    if isinstance(video, (str, os.PathLike)):
        path = str(video)
        if not os.path.isfile(path):
            raise ValueError(f"`{name}`: cannot read {path!r} (no such file).")
        return len(load_frames(path, name)) if path.lower().endswith(VIDEO_FILE_EXTENSIONS) else 1
    if is_clip_batch(video):
        return _video_length(video[0], f"{name}[0]")
    if isinstance(video, (list, tuple)):
        return len(video)
    if isinstance(video, np.ndarray):
        return video.shape[0] if video.ndim == 4 else 1
    if isinstance(video, torch.Tensor):
        return video.shape[-3] if video.ndim >= 4 else 1
    return 1


def frames_to_tensor(frames: Any, video_processor, height: int, width: int, name: str = "frames") -> torch.Tensor:
    """Any image, clip or file path -> (B, 3, T, height, width) in [-1, 1], resized by `video_processor`.

    PIL images of any mode (16-bit scaled to 8 bits, transparency over white: `image_to_rgb`); numpy arrays
    (H, W, 3) / (T, H, W, 3) as floats in [0, 1], uint8 or uint16; tensors (3, H, W) / (3, T, H, W) /
    (B, 3, T, H, W) as floats in [-1, 1], uint8 or uint16; lists of images; image or video file paths.

    Raises:
        TypeError: naming `name`, for anything else (`None`, a number, an int64 array, ...).
        ValueError: naming `name`, for float pixels that are NaN, infinite or outside their range by more than
            `validation.FRAME_VALUE_TOLERANCE`, arrays that are not RGB, and unreadable files.
    """
    check_frames_type(frames, name)
    if is_clip_batch(frames):
        clips = [frames_to_tensor(c, video_processor, height, width, f"{name}[{i}]") for i, c in enumerate(frames)]
        lengths = [clip.shape[2] for clip in clips]
        if len(set(lengths)) > 1:
            raise ValueError(f"`{name}` holds clips of {lengths} frames; the clips of a batch must be equally long.")
        return torch.cat(clips)
    if isinstance(frames, (str, os.PathLike)):
        frames = load_frames(frames, name)
    # integer pixels -> the float ranges below (diffusers' video processor takes numpy floats in [0, 1] as they are);
    # float pixels: finite and in their range; RGB: gif frames and user images may be palette, grey, RGBA or 16-bit
    if isinstance(frames, (list, tuple)):
        frames = [_normalise_frame(frame, name) for frame in frames]
        if len({type(frame) for frame in frames}) > 1:
            raise TypeError(f"`{name}` mixes {sorted({type(f).__name__ for f in frames})}; give frames of one type.")
        if isinstance(frames[0], torch.Tensor):  # (3, H, W) frames in [-1, 1]: one (3, T, H, W) clip, resized below
            shapes = sorted({tuple(frame.shape) for frame in frames})
            if len(shapes) > 1 or len(shapes[0]) != 3 or shapes[0][0] != 3:
                raise ValueError(f"`{name}`: a list of tensors must hold (3, H, W) frames of one size, got {shapes}.")
            frames = torch.stack(frames, dim=1)
    else:
        frames = _normalise_frame(frames, name)
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
    raise TypeError(f"`{name}` must be {FRAMES_DESCRIPTION}, got {type(frames).__name__}.")


def _normalise_frame(frames: Any, name: str) -> Any:
    """One image or clip (not a list): RGB PIL, numpy float32 in [0, 1] (H, W, 3) / (T, H, W, 3), or a float tensor in
    [-1, 1]. Integer pixels are scaled (uint8 and uint16), float pixels checked (`check_frame_values`)."""
    if isinstance(frames, PIL.Image.Image):
        return image_to_rgb(frames, name)
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4) or frames.shape[-1] != 3:
            raise ValueError(
                f"`{name}` array must be (H, W, 3) or (T, H, W, 3) RGB, got shape {frames.shape} (convert grayscale "
                "or RGBA arrays to RGB, or pass a PIL image)."
            )
        if frames.dtype in (np.uint8, np.uint16):
            return frames.astype(np.float32) / np.iinfo(frames.dtype).max
        if not np.issubdtype(frames.dtype, np.floating):
            raise TypeError(f"`{name}` array must be uint8, uint16 or float, got dtype {frames.dtype}.")
        check_frame_values(frames, name, 0.0, 1.0, "uint8 arrays in 0..255 and uint16 arrays in 0..65535 also pass")
        return np.clip(frames, 0.0, 1.0).astype(np.float32)
    if isinstance(frames, torch.Tensor):
        if frames.dtype in (torch.uint8, torch.uint16):
            # 127.5 / 32767.5: 0 -> -1, the maximum -> 1
            return frames.to(torch.float32) / (255.0 if frames.dtype == torch.uint8 else 65535.0) * 2.0 - 1.0
        if not frames.is_floating_point():
            raise TypeError(f"`{name}` tensor must be uint8, uint16 or float, got dtype {frames.dtype}.")
        check_frame_values(frames, name, -1.0, 1.0, "uint8 tensors in 0..255 also pass")
        return frames
    raise TypeError(f"`{name}` must be {FRAMES_DESCRIPTION}, got {type(frames).__name__}.")
