"""The pipeline's progress bars for encoding conditions and decoding: counted in frames, silenced like diffusers'."""

import io
import re

import torch

from sora_diffusers import FrameCondition

from .conftest import random_clip, seed


def bar_states(text: str, desc: str) -> list[tuple[int, int]]:
    """Every (n, total) a tqdm bar named `desc` printed."""
    return [(int(n), int(total)) for n, total in re.findall(rf"{desc}: *\d+%\|[^|]*\| (\d+)/(\d+) ", text)]


def run(pipe, **kwargs) -> torch.Tensor:
    return pipe("a red circle", num_inference_steps=2, generator=seed(0), output_type="pt", **kwargs).frames


def test_decode_bar_counts_frames_chunk_by_chunk(make_pipe):
    pipe = make_pipe()
    quiet = run(pipe)
    output = io.StringIO()
    pipe.set_progress_bar_config(file=output, mininterval=0)
    video = run(pipe, conditions=[FrameCondition(random_clip(5), 0)])

    decoding = bar_states(output.getvalue(), "Decoding")
    assert {total for _, total in decoding} == {9}  # frames, not latent frames or steps
    counts = [n for n, _ in decoding]
    assert counts[0] == 0 and counts[-1] == 9 and len(set(counts)) > 2  # advanced chunk by chunk, to the end
    assert counts == sorted(counts)
    assert bar_states(output.getvalue(), "Encoding conditions")[-1] == (5, 5)
    assert re.search(r"(frame/s|s/frame)\]", output.getvalue())
    assert video.shape == quiet.shape == (1, 9, 3, 32, 48)


@torch.no_grad()
def test_streamed_decode_equals_the_vae_decode(make_pipe):
    """`decode_latents` streams the VAE's chunks for the bar; the frames are `vae.decode`'s (the tiny VAE has no
    latent statistics, so the latents go in as they are)."""
    pipe = make_pipe()
    latents = torch.randn(2, pipe.vae.config.latent_channels, 3, 4, 6, generator=seed(3))
    torch.testing.assert_close(pipe.decode_latents(latents), pipe.vae.decode(latents).sample, atol=0, rtol=0)


def test_disabled_bars_print_nothing(make_pipe):
    pipe = make_pipe()
    output = io.StringIO()
    pipe.set_progress_bar_config(file=output, disable=True)
    run(pipe, conditions=[FrameCondition(random_clip(5), 0)])
    assert output.getvalue() == ""


def test_video_to_video_bar_counts_the_source_frames(make_pipe):
    pipe = make_pipe()
    output = io.StringIO()
    pipe.set_progress_bar_config(file=output, mininterval=0)
    run(pipe, video=random_clip(9)[None], strength=0.5)
    assert bar_states(output.getvalue(), "Encoding video")[-1] == (9, 9)
    assert bar_states(output.getvalue(), "Decoding")[-1] == (9, 9)
