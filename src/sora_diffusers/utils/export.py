"""Writing generated videos and images to disk atomically, with provenance metadata, and reading videos back.

diffusers' `export_to_video` / `export_to_gif` are close, but we write our own for what they lack:
- atomic writes: a crash or an error never leaves a half-written file, and an existing file is replaced only on
  success (we write to a temporary file in the same directory, then `os.replace` it onto the target; see
  `sora_diffusers.utils.atomic`: the temporary of a killed run is removed by the next write to the same file);
- ffmpeg dies with the process that writes: it is fed frames through a pipe and, on Linux, asked to receive SIGKILL
  when its parent dies (`PR_SET_PDEATHSIG`), so a killed export leaves no encoder running;
- provenance metadata (prompt, seed, model) in the container: an mp4 `comment` tag, a gif comment, a png text chunk;
  and a signed C2PA manifest (see `sora_diffusers.utils.provenance`; local paths appear by name only);
- uint8 input (diffusers multiplies every array by 255) and tensors, and odd frame sizes (padded, not rescaled);
- gif chosen by the file extension;
- streaming: an iterator of frame chunks (e.g. from `SpacetimeVAE.decode_frames`) is written as it comes, so a long
  video never has to be in memory at once.
Reading frames needs nothing more than diffusers' `load_video`, so `load_video_frames` wraps it; `load_metadata`
reads the provenance back.
"""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.PngImagePlugin
import torch
from diffusers.utils import load_video

from .atomic import atomic_path, target_of
from .provenance import public_metadata, sign_file


VIDEO_SUFFIXES = (".mp4", ".gif")
IMAGE_SUFFIXES = (".png",)
# imageio-ffmpeg's 1-10 scale (8 = x264 crf 10): keeps small saturated shapes close to their colours after yuv420p.
DEFAULT_MP4_QUALITY = 8
# Frames converted to uint8 at a time from a whole float video: bounds the float temporaries of the conversion.
_FRAMES_PER_CONVERSION = 16
# Temporaries of the writers before 2026-12 (`.NAME.1a2b3c4d.tmp.mp4`, `.NAME.1a2b3c4d.signed.mp4`) name no process:
# the next write to their target removes them once they are this old (no write takes an hour between two frames).
_LEGACY_TEMP_AGE_S = 3600


def export_to_video(
    frames: Any,
    path: str | os.PathLike,
    fps: float = 16,
    quality: float = DEFAULT_MP4_QUALITY,
    metadata: dict[str, Any] | None = None,
    c2pa: bool = True,
    c2pa_cert: str | os.PathLike | None = None,
    c2pa_key: str | os.PathLike | None = None,
) -> str:
    r"""
    Write a video as H.264 mp4 (yuv420p, which every player opens) or as a looping gif, chosen by `path`'s extension.

    The file appears at `path` only once it is complete: it is written to a temporary file in the same directory and
    moved onto `path` with `os.replace`. If writing fails, or a streamed `frames` iterator raises midway, an existing
    file at `path` is left untouched and the temporary file is removed.

    Args:
        frames: One video: `np.ndarray` (T, H, W, 3) floats in [0, 1] or uint8, a list of PIL images, or
            `torch.Tensor` (T, 3, H, W) / (T, H, W, 3) floats in [0, 1] (the pipeline's `output_type="pt"` video is
            (T, 3, H, W)). Or an iterator (e.g. a generator; not a list, which is a list of frames) of consecutive
            chunks, each a short video in any of those forms, all of one frame size: each chunk is converted and
            sent to the mp4 encoder as it arrives and then dropped, so memory does not grow with the video's length
            (a gif still gathers its uint8 frames, as Pillow writes them all at the end). A VAE's output is in
            [-1, 1]; stream `SpacetimeVAE.decode_frames` (B=1 chunks of shape (1, 3, t, H, W)) as
            `((chunk[0].transpose(0, 1) + 1) / 2 for chunk in vae.decode_frames(z))`.
        path: where to write; ".mp4" or ".gif".
        fps (`float`, defaults to 16): frames per second.
        quality (`float`, defaults to 8): mp4 quality on imageio-ffmpeg's scale, 1 (smallest file) to 10 (best).
        metadata (`dict`, *optional*): provenance (prompt, seed, model, ...), stored as JSON in the mp4's `comment`
            tag or the gif's comment; absolute paths in it are stored by their last component only.
        c2pa (`bool`, defaults to `True`): embed a signed C2PA manifest (see `sora_diffusers.utils.provenance`):
            claim generator, a `c2pa.created` action of a trained algorithm, and the model, seed and prompt SHA-256
            from `metadata`. Without `c2pa-python` installed the file is written with a warning, unsigned.
        c2pa_cert (`str` or `os.PathLike`, *optional*), c2pa_key (`str` or `os.PathLike`, *optional*): a PEM
            certificate chain and its PEM private key to sign with; neither: a development certificate (warns).

    Returns:
        `str`: `path`.

    Notes:
        mp4 (yuv420p) needs an even width and height: an odd frame size gets one more row or column, a copy of the
        last one. gif stores 256 colours per frame, and Pillow merges consecutive identical frames into one longer
        frame (playback is unchanged, but reading the file back yields fewer frames).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"Cannot write a video to {str(path)!r}: the extension must be one of {VIDEO_SUFFIXES}.")
    if fps <= 0:
        raise ValueError(f"`fps` must be positive, got {fps}.")
    if not 1 <= quality <= 10:
        raise ValueError(f"`quality` must be from 1 (smallest file) to 10 (best), got {quality}.")
    chunks = _uint8_chunks(frames)
    first = next(chunks, None)  # converted before any file is created: bad input fails without touching `path`
    if first is None:
        raise ValueError("`frames` holds no frames: there is no video to write.")
    _check_signing_arguments(c2pa, c2pa_cert, c2pa_key)
    metadata = public_metadata(metadata)
    comment = json.dumps(metadata, ensure_ascii=False, sort_keys=True) if metadata else None
    with _atomic_path(path) as temporary:
        _VIDEO_WRITERS[suffix](chain([first], chunks), temporary, fps, quality, comment)
        if c2pa:
            sign_file(temporary, metadata, c2pa_cert, c2pa_key, title=path.name)
    return str(path)


def export_to_image(
    image: Any,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    c2pa: bool = True,
    c2pa_cert: str | os.PathLike | None = None,
    c2pa_key: str | os.PathLike | None = None,
) -> str:
    """Write one frame as a png, atomically like `export_to_video`; `metadata` goes into a "Comment" text chunk, and
    a signed C2PA manifest is embedded as `export_to_video` does (`c2pa`, `c2pa_cert`, `c2pa_key`).

    Args:
        image: a PIL image, `np.ndarray` (H, W, 3) or `torch.Tensor` (3, H, W) / (H, W, 3), floats in [0, 1] or uint8,
            or a one-frame video in any form `export_to_video` accepts.

    Returns:
        `str`: `path`.
    """
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"Cannot write an image to {str(path)!r}: the extension must be one of {IMAGE_SUFFIXES}.")
    if isinstance(image, PIL.Image.Image):
        image = [image]
    elif getattr(image, "ndim", None) == 3:
        image = image[None]  # one image -> a one-frame video
    video = frames_to_uint8(image)
    if video.shape[0] != 1:
        raise ValueError(f"An image is one frame, got {video.shape[0]}; write a video (.mp4, .gif) instead.")
    _check_signing_arguments(c2pa, c2pa_cert, c2pa_key)
    metadata = public_metadata(metadata)
    info = PIL.PngImagePlugin.PngInfo()
    if metadata:
        info.add_itxt("Comment", json.dumps(metadata, ensure_ascii=False, sort_keys=True))
    with _atomic_path(path) as temporary:
        PIL.Image.fromarray(video[0]).save(temporary, format="PNG", pnginfo=info)
        if c2pa:
            sign_file(temporary, metadata, c2pa_cert, c2pa_key, title=path.name)
    return str(path)


def _check_signing_arguments(c2pa: bool, cert: Any, key: Any) -> None:
    """Before any frame is encoded: a certificate without its key (or the reverse), or one with `c2pa=False`."""
    if (cert is None) != (key is None):
        raise ValueError(
            f"Pass both `c2pa_cert` and `c2pa_key`, or neither; got c2pa_cert={cert!r}, c2pa_key={key!r}."
        )
    if cert is not None and not c2pa:
        raise ValueError("`c2pa_cert` and `c2pa_key` sign a C2PA manifest, but `c2pa=False` writes none.")
    for name, file in (("c2pa_cert", cert), ("c2pa_key", key)):
        if file is not None and not Path(file).is_file():
            raise ValueError(f"`{name}`: no such file: {file}")


def load_video_frames(path: str | os.PathLike) -> np.ndarray:
    """Every frame of an mp4 or gif (or any video diffusers' `load_video` reads) as a (T, H, W, 3) uint8 array."""
    return np.stack([np.asarray(frame.convert("RGB")) for frame in load_video(str(path))])


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance `metadata` that `export_to_video` / `export_to_image` stored in a file ({} if there is none)."""
    path = Path(path)
    if path.suffix.lower() == ".mp4":
        comment = _mp4_comment(path)
    else:
        with PIL.Image.open(path) as image:
            comment = image.info.get("comment") or image.info.get("Comment")
    if isinstance(comment, bytes):
        comment = comment.decode()
    return json.loads(comment) if comment else {}


def _mp4_comment(path: Path) -> str | None:
    """The `comment` tag, from ffmpeg's metadata dump (lines `key=value`, with `=;#\\` and newlines backslash-escaped)."""
    import imageio_ffmpeg

    dump = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_die_with_parent(),
    ).stdout
    for line in dump.splitlines():
        if line.startswith("comment="):
            return re.sub(r"\\(.)", r"\1", line.removeprefix("comment="))
    return None


def frames_to_uint8(frames: Any) -> np.ndarray:
    """Any form `export_to_video` accepts -> (T, H, W, 3) uint8 (floats in [0, 1] are scaled, rounded and clipped)."""
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(f.convert("RGB") if isinstance(f, PIL.Image.Image) else f) for f in frames])
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)  # (T, 3, H, W) -> (T, H, W, 3)
        frames = frames.float().numpy() if frames.is_floating_point() else frames.numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"Expected one video of shape (T, H, W, 3) (or (T, 3, H, W) as a tensor), got {frames.shape}; for a "
            "pipeline output pass `output.frames[0]`."
        )
    if frames.dtype == np.uint8:
        return frames
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"Expected floats in [0, 1] or uint8 frames, got dtype {frames.dtype}.")
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def _uint8_chunks(frames: Any) -> Iterator[np.ndarray]:
    """`export_to_video`'s `frames` -> consecutive (t, H, W, 3) uint8 chunks of one frame size, converted lazily."""
    if isinstance(frames, Iterator):
        pieces = frames
    elif isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim == 4:
        step = _FRAMES_PER_CONVERSION
        pieces = (frames[start : start + step] for start in range(0, len(frames), step))
    else:
        pieces = iter([frames])
    size = None
    for index, piece in enumerate(pieces):
        try:
            piece = frames_to_uint8(piece)  # (t, H, W, 3)
        except ValueError as error:
            if pieces is not frames:
                raise
            raise ValueError(
                f"Chunk {index} of `frames`: {error} Chunks of `SpacetimeVAE.decode_frames`, (1, 3, t, H, W) in"
                " [-1, 1], convert as `(chunk[0].transpose(0, 1) + 1) / 2`."
            ) from error
        size = size or piece.shape[1:3]
        if piece.shape[1:3] != size:
            raise ValueError(
                f"Every chunk of a video must have one frame size: chunk {index} is {piece.shape[1:3]}, the first"
                f" was {size} (height, width)."
            )
        if len(piece):
            yield piece


# ---- writers: (t, H, W, 3) uint8 chunks -> file ---------------------------------------------------------------------


def _write_mp4(chunks: Iterator[np.ndarray], path: Path, fps: float, quality: float, comment: str | None) -> None:
    """H.264 through an ffmpeg process fed raw RGB frames on its stdin (imageio-ffmpeg's command line and binary).

    ffmpeg is started by this thread and ends before this function returns: on any error, Ctrl-C included, it is
    killed (it would otherwise finish the file after the caller removed the temporary). If this process dies
    (SIGKILL), ffmpeg receives SIGKILL too (Linux), and in any case reads the end of its input, as nothing else holds
    the pipe open: child processes do not inherit it (`close_fds`) and forked ones are covered by the signal.
    """
    import imageio_ffmpeg

    first = next(chunks)
    height, width = first.shape[1] + first.shape[1] % 2, first.shape[2] + first.shape[2] % 2  # yuv420p: even sizes
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}",
        "-pix_fmt", "rgb24", "-r", str(Fraction(fps).limit_denominator()), "-i", "-", "-an",
        "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", str(int((1 - quality / 10) * 51)), "-v", "error",
        # +faststart: the index (moov) before the media, in one non-fragmented file, which C2PA's BMFF hash covers
        "-movflags", "+faststart", *(["-metadata", f"comment={comment}"] if comment else []), str(path),
    ]  # fmt: skip
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg never blocks on a full stderr
        process = _popen_tied_to_parent(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for chunk in chain([first], chunks):
                process.stdin.write(np.ascontiguousarray(_pad_to_even(chunk)).data)
            process.stdin.close()
            status = process.wait()
        except BrokenPipeError:  # ffmpeg stopped reading: its own message says why
            status = _kill(process)
        except BaseException:
            _kill(process)
            raise
        if status != 0:
            log.seek(0)
            message = log.read().decode(errors="replace").strip()[-2000:]
            name = (target_of(path) or path).name  # the file asked for, not its temporary
            raise OSError(f"ffmpeg could not write {name} (exit status {status}): {message or 'no message'}")


def _kill(process: subprocess.Popen) -> int:
    process.kill()
    if process.stdin:
        try:
            process.stdin.close()
        except OSError:  # the pipe's buffer could not be flushed: ffmpeg is gone
            pass
    return process.wait()


def _popen_tied_to_parent(command: list[str], **kwargs) -> subprocess.Popen:
    """`subprocess.Popen(command)` of a process that receives SIGKILL when the thread that starts it ends, the whole
    process included (Linux `PR_SET_PDEATHSIG`; elsewhere a plain Popen). Stays in our process group, so a signal to
    the group (a terminal's Ctrl-C, a job manager's kill) reaches it too."""
    return subprocess.Popen(command, preexec_fn=_die_with_parent(), close_fds=True, **kwargs)


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel to SIGKILL the child when its parent dies, or `None` off Linux. Everything it
    calls is resolved here, before the fork: the child only makes two system calls."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _libc_prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    kill_signal, getppid, kill, getpid = signal.SIGKILL, os.getppid, os.kill, os.getpid

    def set_parent_death_signal() -> None:
        prctl(pr_set_pdeathsig, kill_signal)
        if getppid() != parent:  # the parent died before the prctl: no signal will come
            kill(getpid(), kill_signal)

    return set_parent_death_signal


def _libc_prctl():
    global _PRCTL
    if _PRCTL is False:
        try:
            import ctypes

            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
            _PRCTL.argtypes, _PRCTL.restype = [ctypes.c_int, ctypes.c_ulong], ctypes.c_int
        except (OSError, AttributeError):
            _PRCTL = None
    return _PRCTL


_PRCTL = False  # resolved on first use


def _write_gif(chunks: Iterator[np.ndarray], path: Path, fps: float, quality: float, comment: str | None) -> None:
    images = [PIL.Image.fromarray(frame) for chunk in chunks for frame in chunk]  # Pillow writes them all at the end
    extra = {"comment": comment} if comment else {}
    duration_ms = round(1000 / fps)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0, **extra)


_VIDEO_WRITERS: dict[str, Callable[[Iterator[np.ndarray], Path, float, float, str | None], None]] = {
    ".mp4": _write_mp4,
    ".gif": _write_gif,
}


def _pad_to_even(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) -> (T, H + H % 2, W + W % 2, 3), repeating the last row/column (yuv420p halves the chroma)."""
    _, height, width, _ = video.shape
    return np.pad(video, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


# ---- atomic replacement ---------------------------------------------------------------------------------------------


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """`atomic.atomic_path`, and the temporaries of this module's writers before 2026-12 that an hour has left alone.

    The temporary name keeps the extension (writers pick the format from it) and starts with a dot, so a directory
    listing hides it while it is written; the writer creates it with the user's umask, so the final file gets the
    same permissions as any other new file.
    """
    _remove_legacy_temps(path)
    with atomic_path(path) as temporary:
        yield temporary


def _remove_legacy_temps(path: Path) -> None:
    if not path.parent.is_dir():
        return
    legacy = re.compile(rf"^\.{re.escape(path.stem)}\.[0-9a-f]{{8}}\.(tmp|signed){re.escape(path.suffix)}$")
    old = time.time() - _LEGACY_TEMP_AGE_S
    with os.scandir(path.parent) as entries:
        for entry in entries:
            if legacy.match(entry.name) and entry.is_file() and entry.stat().st_mtime < old:
                Path(entry.path).unlink(missing_ok=True)
