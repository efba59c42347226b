import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from sora_diffusers.models.autoencoder_spacetime import SpacetimeVAE
from sora_diffusers.utils import export
from sora_diffusers.utils.export import (
    export_to_image,
    export_to_video,
    frames_to_uint8,
    load_metadata,
    load_video_frames,
)

from .conftest import ffmpeg_children, is_running, perturb_
from .models.test_autoencoder_spacetime import TINY_VAE_CONFIG


T, H, W = 5, 32, 48
# mean |difference| in 0-255 levels that lossy H.264 / 256-colour gif may add to smooth test content
MAX_MEAN_ERROR = 12


def _solid_red(num_frames=T, height=H, width=W) -> np.ndarray:
    video = np.zeros((num_frames, height, width, 3), dtype=np.float32)  # (T, H, W, 3) in [0, 1]
    video[..., 0] = 1.0
    return video


def _moving_gradient(num_frames=T, height=H, width=W) -> np.ndarray:
    """A different, smooth frame at each time step (codecs and Pillow must keep every one)."""
    t, y, x = np.meshgrid(np.arange(num_frames), np.arange(height), np.arange(width), indexing="ij")
    red = (x + 4 * t) / (width + 4 * num_frames)
    green = y / height
    blue = np.full_like(red, 0.5)
    return np.stack([red, green, blue], axis=-1).astype(np.float32)  # (T, H, W, 3)


def _mean_error(decoded: np.ndarray, video: np.ndarray) -> float:
    return float(np.abs(decoded.astype(np.float32) - video * 255).mean())


def _listing(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# ---- writing and reading back ---------------------------------------------------------------------------------------


def test_mp4_solid_red_stays_red(tmp_path):
    path = export_to_video(_solid_red(), tmp_path / "red.mp4", fps=8)

    assert path == str(tmp_path / "red.mp4")
    decoded = load_video_frames(path)
    assert decoded.shape == (T, H, W, 3) and decoded.dtype == np.uint8
    red, green, blue = decoded.reshape(-1, 3).mean(axis=0)
    assert red > 240 and green < 15 and blue < 15, (red, green, blue)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_every_frame_and_its_content_survive(tmp_path, suffix):
    video = _moving_gradient()

    decoded = load_video_frames(export_to_video(video, tmp_path / f"video{suffix}"))

    assert decoded.shape == (T, H, W, 3)
    assert _mean_error(decoded, video) < MAX_MEAN_ERROR


def test_odd_size_mp4_is_padded_to_even(tmp_path):
    video = _moving_gradient(height=33, width=47)

    decoded = load_video_frames(export_to_video(video, tmp_path / "odd.mp4"))

    assert decoded.shape == (T, 34, 48, 3)
    assert _mean_error(decoded[:, :33, :47], video) < MAX_MEAN_ERROR


def test_all_input_forms_give_the_same_frames():
    video = _moving_gradient()
    expected = (video * 255).round().astype(np.uint8)
    as_tensor = torch.from_numpy(video)  # (T, H, W, 3)
    forms = {
        "np float": video,
        "np uint8": expected,
        "PIL list": [PIL.Image.fromarray(frame) for frame in expected],
        "torch (T, H, W, 3)": as_tensor,
        "torch (T, 3, H, W)": as_tensor.permute(0, 3, 1, 2),
    }
    for name, frames in forms.items():
        np.testing.assert_array_equal(frames_to_uint8(frames), expected, err_msg=name)


def test_out_of_range_floats_are_clipped():
    video = np.stack([np.full((2, 2, 3), -0.5), np.full((2, 2, 3), 1.5)])
    assert frames_to_uint8(video).reshape(2, -1)[:, 0].tolist() == [0, 255]


@pytest.mark.parametrize("bad", [np.zeros((H, W, 3)), np.zeros((1, T, H, W, 3)), np.zeros((T, H, W, 3), np.int64)])
def test_frames_that_are_not_one_video_are_rejected(bad):
    with pytest.raises(ValueError):
        frames_to_uint8(bad)


def test_unknown_extension_is_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="extension"):
        export_to_video(_solid_red(), tmp_path / "video.avi")
    assert _listing(tmp_path) == []


# ---- provenance metadata --------------------------------------------------------------------------------------------

# characters that ffmpeg's metadata dump escapes (=;#\ and newlines), a quote and a non-ASCII one
METADATA = {"prompt": 'a red circle; x = 1 # "quoted" \\ back\nslash ✓', "seed": 7, "model": "tiny"}


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_videos_carry_the_metadata(tmp_path, suffix):
    path = export_to_video(_moving_gradient(), tmp_path / f"video{suffix}", metadata=METADATA)

    assert load_metadata(path) == METADATA
    assert len(load_video_frames(path)) == T


def test_png_image_with_metadata(tmp_path):
    image = _moving_gradient()[0]  # (H, W, 3)

    path = export_to_image(image, tmp_path / "frame.png", metadata=METADATA)

    assert load_metadata(path) == METADATA
    with PIL.Image.open(path) as png:
        np.testing.assert_array_equal(np.asarray(png), frames_to_uint8(image[None])[0])


def test_no_metadata_reads_as_empty(tmp_path):
    assert load_metadata(export_to_video(_solid_red(), tmp_path / "red.mp4")) == {}


# ---- atomic replacement ---------------------------------------------------------------------------------------------


def _broken_writer(video, path, fps, quality, comment):
    """Starts the file, then fails like a full disk."""
    path.write_bytes(b"half a video")
    raise OSError("No space left on device")


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"video{suffix}"
    target.write_bytes(b"the previous video")
    monkeypatch.setitem(export._VIDEO_WRITERS, suffix, _broken_writer)

    with pytest.raises(OSError, match="No space"):
        export_to_video(_solid_red(), target)

    assert target.read_bytes() == b"the previous video"
    assert _listing(tmp_path) == [target.name]


def test_ffmpeg_dying_midway_is_an_oserror_and_leaves_no_file(tmp_path):
    """ffmpeg is killed once it has started the file: the export says so, names the file, and nothing is left."""
    target = tmp_path / "video.mp4"
    target.write_bytes(b"the previous video")
    on_disk_when_failing = []

    def frames_while_ffmpeg_dies():
        yield _solid_red(2)
        on_disk_when_failing.extend(_wait_for_a_file(tmp_path, count=2))
        (encoder,) = ffmpeg_children(os.getpid())
        os.kill(encoder, signal.SIGKILL)
        for _ in range(50):  # more than a pipe's buffer: the write meets the closed pipe
            yield _solid_red(8)

    with pytest.raises(OSError, match=r"ffmpeg could not write video\.mp4 \(exit status -9\)"):
        export_to_video(frames_while_ffmpeg_dies(), target)

    assert len(on_disk_when_failing) == 2, on_disk_when_failing
    assert target.read_bytes() == b"the previous video"
    assert _listing(tmp_path) == [target.name] and ffmpeg_children(os.getpid()) == []


_KILLED_EXPORT = """
import os, sys, time
import numpy as np
from sora_diffusers.utils.export import export_to_video

def frames():  # a long video, streamed: the export is still running when the test kills this process
    for index in range(100_000):
        if index == 1:  # ffmpeg is running; a forked process (a data loader's worker) inherits our end of its pipe
            holder = os.fork()
            if holder == 0:
                time.sleep(60)
                os._exit(0)
            print(holder, flush=True)
        yield np.full((4, 64, 64, 3), index % 256, dtype=np.uint8)
        time.sleep(0.01)

export_to_video(frames(), sys.argv[1], c2pa=False)
"""


def test_a_killed_export_leaves_no_ffmpeg_and_its_temporary_goes_with_the_next_export(tmp_path):
    """SIGKILL mid-export: ffmpeg ends with its parent, even though another process still holds its input pipe
    open (so it never reads the end of its input), and the next export to the file removes the partial one."""
    target = tmp_path / "long.mp4"
    env = {**os.environ, "PYTHONPATH": str(Path(export.__file__).parents[2])}
    child = subprocess.Popen([sys.executable, "-c", _KILLED_EXPORT, str(target)], stdout=subprocess.PIPE, env=env)
    holder = None
    try:
        holder = int(child.stdout.readline())
        (encoder,) = ffmpeg_children(child.pid)
        assert len(_wait_for_a_file(tmp_path)) == 1  # ffmpeg has started the temporary file
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 5
        while is_running(encoder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(encoder), "ffmpeg outlived the process that was exporting"
    finally:
        child.kill()
        child.wait()
        if holder:
            os.kill(holder, signal.SIGKILL)
    (partial,) = _listing(tmp_path)
    assert re.fullmatch(rf"\.long\.mp4\.tmp-{child.pid}-[0-9a-f]{{8}}\.mp4", partial), partial

    export_to_video(_solid_red(), target, c2pa=False)
    assert _listing(tmp_path) == ["long.mp4"] and len(load_video_frames(target)) == T


def _wait_for_a_file(directory, timeout_s: float = 10.0, count: int = 1) -> list[str]:
    """ffmpeg runs in its own process and creates its output a moment after the first frames arrive."""
    deadline = time.monotonic() + timeout_s
    while len(_listing(directory)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return _listing(directory)


def test_successful_write_replaces_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "video.mp4"
    target.write_bytes(b"the previous video")

    export_to_video(_solid_red(), target)

    assert len(load_video_frames(target)) == T
    assert _listing(tmp_path) == ["video.mp4"]


# ---- streaming: an iterator of chunks -------------------------------------------------------------------------------


def _chunks(video: np.ndarray, sizes: list[int]):
    """`video` cut into consecutive chunks of `sizes` frames, as a generator."""
    starts = np.cumsum([0, *sizes])
    assert starts[-1] == len(video)
    return (video[a:b] for a, b in zip(starts[:-1], starts[1:]))


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_streamed_chunks_give_the_same_frames_as_the_whole_video(tmp_path, suffix):
    video = _moving_gradient(num_frames=20)  # more than one conversion block for the whole video
    as_torch = (torch.from_numpy(chunk).permute(0, 3, 1, 2) for chunk in _chunks(video, [1, 4, 4, 11]))

    whole = load_video_frames(export_to_video(video, tmp_path / f"whole{suffix}"))
    streamed = load_video_frames(export_to_video(_chunks(video, [3, 1, 16]), tmp_path / f"streamed{suffix}"))
    streamed_torch = load_video_frames(export_to_video(as_torch, tmp_path / f"torch{suffix}"))

    assert whole.shape == (20, H, W, 3)
    np.testing.assert_array_equal(streamed, whole)
    np.testing.assert_array_equal(streamed_torch, whole)


def test_whole_videos_are_converted_in_blocks_to_the_same_uint8():
    video = _moving_gradient(num_frames=37)
    blocks = list(export._uint8_chunks(video))
    assert [len(block) for block in blocks] == [16, 16, 5]
    np.testing.assert_array_equal(np.concatenate(blocks), frames_to_uint8(video))


def test_streamed_vae_decode_writes_the_same_mp4_as_decode(tmp_path):
    torch.manual_seed(0)
    vae = perturb_(SpacetimeVAE(**TINY_VAE_CONFIG)).eval()
    z = torch.randn(1, 4, 3, 4, 6)  # -> (1, 3, 9, 32, 48)
    with torch.no_grad():
        video = vae.decode(z).sample
        stream = ((chunk[0].transpose(0, 1) + 1) / 2 for chunk in vae.decode_frames(z))  # (t, 3, H, W) in [0, 1]
        export_to_video(stream, tmp_path / "streamed.mp4")
    export_to_video((video[0].transpose(0, 1) + 1) / 2, tmp_path / "decoded.mp4")

    streamed, decoded = load_video_frames(tmp_path / "streamed.mp4"), load_video_frames(tmp_path / "decoded.mp4")
    assert decoded.shape == (9, 32, 48, 3) and decoded.std() > 5  # not a flat video
    np.testing.assert_array_equal(streamed, decoded)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_iterator_raising_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path, suffix):
    target = tmp_path / f"video{suffix}"
    target.write_bytes(b"the previous video")
    on_disk_when_failing = []

    def decode_then_crash():
        yield from _chunks(_moving_gradient(num_frames=4), [2, 2])
        if suffix == ".mp4":  # ffmpeg has started the temporary file: the failure is really midway
            on_disk_when_failing.extend(_wait_for_a_file(tmp_path, count=2))
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        export_to_video(decode_then_crash(), target)

    if suffix == ".mp4":
        assert len(on_disk_when_failing) == 2, on_disk_when_failing
    assert target.read_bytes() == b"the previous video"
    assert _listing(tmp_path) == [target.name]


def test_chunks_of_another_frame_size_are_rejected_and_nothing_is_left(tmp_path):
    chunks = iter([_solid_red(2), _solid_red(2, height=H + 2)])
    with pytest.raises(ValueError, match=r"chunk 1 is \(34, 48\), the first was \(32, 48\)"):
        export_to_video(chunks, tmp_path / "video.mp4")
    assert _listing(tmp_path) == []


def test_raw_decoder_chunks_are_rejected_with_the_conversion(tmp_path):
    decoder_chunks = iter([torch.zeros(1, 3, 2, H, W)])  # (B, C, t, H, W) in [-1, 1]
    with pytest.raises(ValueError, match=r"Chunk 0 of `frames`: .*`\(chunk\[0\]\.transpose\(0, 1\) \+ 1\) / 2"):
        export_to_video(decoder_chunks, tmp_path / "video.mp4")
    assert _listing(tmp_path) == []


def test_an_empty_iterator_is_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        export_to_video(iter([]), tmp_path / "video.mp4")
    assert _listing(tmp_path) == []
