"""The thin task pipelines: image-to-video, extension (forward, backward, loop, connect) and video-to-video.

Frames given at strength 1 come back as given: the output holds their input pixels (`as_shown`), and every other frame
is the same as with `return_decoded_conditions=True`, which returns the model's rendering of the given frames too.

What "the conditioning frames are in the model's rendering" means with a causal VAE (4x time: latent 0 = pixel
frame 0, latent j = pixel frames 4j-3 .. 4j) and tiny random weights, which reconstruct nothing (a clip and its round
trip differ by ~0.9):

- A clip at frame 0 (I2V, forward, loop, the first clip of connect): its latents are the clip's own encoding, and the
  causal decoder gives pixel frames 0 .. 4k from latents 0 .. k alone, so those output frames equal
  `vae.decode(vae.encode(clip))` up to float rounding (1e-5). The same frames of an unconditioned run with the same
  seed are ~0.5 away, so the tolerance discriminates.
- A clip placed later (backward, the head copy of loop, the second clip of connect) covers whole latent groups (see
  `conditioning.align_condition`); its pixels decode after generated latents, which the causal decoder sees, so a
  stand-alone round trip is not a reference (measured: 0.77 max abs, as far as an unconditioned run). What must match
  exactly is the latent grid: those latent frames equal the VAE encoding of the clip's aligned frames at their place in
  the video, after a still copy of their first frame (whose latents are dropped), and the pixels are the decode of that
  grid.
"""

import inspect
import logging
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.utils import export_to_video

from sora_diffusers import (
    FrameCondition,
    SoraImageToVideoPipeline,
    SoraPipeline,
    SoraVideoExtensionPipeline,
    SoraVideoToVideoPipeline,
)

from .conftest import HEIGHT, WIDTH, as_shown, random_clip, seed


STEPS = 2
EXACT = 1e-5  # float rounding between two runs of the same VAE computation
FAR = 0.1  # far more than rounding: what an unconditioned or different frame is away


def run(pipe, *args, **kwargs):
    kwargs = {"num_inference_steps": STEPS, "generator": seed(0), "output_type": "pt", **kwargs}
    return pipe(*args, **kwargs).frames


@torch.no_grad()
def encode(vae, clip: torch.Tensor) -> torch.Tensor:
    """(3, T, H, W) -> latents (1, C, T', H', W') (posterior mode; the tiny VAE has no latent normalisation)."""
    return vae.encode(clip[None]).latent_dist.mode()


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Latents (1, C, T', H', W') -> frames (T, 3, H, W) in [0, 1], as `output_type="pt"` shows them."""
    return (vae.decode(latents).sample[0].permute(1, 0, 2, 3) / 2 + 0.5).clamp(0, 1)


def round_trip(vae, clip: torch.Tensor) -> torch.Tensor:
    return decode(vae, encode(vae, clip))


def encode_mid_video(vae, frames: torch.Tensor, latent_index: int) -> torch.Tensor:
    """Latents of whole groups of 4 frames placed at latent frame `latent_index` >= 1: encoded after
    1 + 4 * (latent_index - 1) still copies of their first frame, the frames before them in the output."""
    lead = frames[:, :1].expand(-1, 1 + 4 * (latent_index - 1), -1, -1)
    return encode(vae, torch.cat([lead, frames], dim=1))[:, :, latent_index:]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def run_both(pipe, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The first video of a run as returned (given frames as given) and as decoded (`return_decoded_conditions`)."""
    return run(pipe, *args, **kwargs)[0], run(pipe, *args, return_decoded_conditions=True, **kwargs)[0]


@pytest.fixture
def clip():
    return random_clip(9, seed_value=1)  # (3, 9, H, W)


# ---- image-to-video -------------------------------------------------------------------------------------------------


def test_image_to_video_keeps_the_image_as_frame_0(make_pipe, components, clip):
    image = clip[:, 0]  # (3, H, W)
    kept, frames = run_both(make_pipe(SoraImageToVideoPipeline), image, "a red circle")  # (9, 3, H, W)
    assert kept.shape == frames.shape == (9, 3, HEIGHT, WIDTH)
    assert torch.equal(kept[0], as_shown(image[:, None])[0])  # the input pixels
    assert torch.equal(kept[1:], frames[1:])  # only the given frame is replaced
    reference = round_trip(components["vae"], image[:, None])[0]
    assert max_diff(frames[0], reference) < EXACT  # decoded: the VAE's round trip ...
    assert max_diff(frames[0], kept[0]) > FAR  # ... which the tiny random VAE renders far from the input
    unconditioned = run(make_pipe(), "a red circle")[0]
    assert max_diff(unconditioned[0], reference) > FAR  # same seed, no image: frame 0 is elsewhere
    assert max_diff(frames[1:], unconditioned[1:]) > FAR  # the image steers the generated frames
    assert min(max_diff(frames[t], frames[0]) for t in range(1, 9)) > FAR  # not a still image


def test_the_given_image_keeps_its_values_in_every_output_type(make_pipe):
    """A uint8 image of the output size comes back as its own uint8 values (pil), or as them / 255 (np, pt); one of
    another size as the pipeline resized it, after the same quantisation. Latents are the same either way."""
    pipe = make_pipe(SoraImageToVideoPipeline)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    pil = run(pipe, image, "x", output_type="pil")[0]
    assert np.array_equal(np.asarray(pil[0]), image)
    np_frames = run(pipe, image, "x", output_type="np")[0]
    np.testing.assert_allclose(np_frames[0], image / 255.0, atol=1e-6, rtol=0)  # float32 rounding of u8 / 255
    pt = run(pipe, image, "x", output_type="pt")[0]
    assert torch.equal(pt[0], torch.from_numpy(np_frames[0]).permute(2, 0, 1))
    decoded = run(pipe, image, "x", output_type="pil", return_decoded_conditions=True)[0]
    assert np.abs(np.asarray(decoded[0]).astype(int) - image).mean() > 10  # the random VAE's rendering
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(pil[1:], decoded[1:]))
    latents = run(pipe, image, "x", output_type="latent")
    assert torch.equal(latents, run(pipe, image, "x", output_type="latent", return_decoded_conditions=True))

    small = PIL.Image.fromarray(image[:20, :30])  # resized to 32x48 by the pipeline
    expected = pipe.video_processor.postprocess(pipe.preprocess_frames(small, HEIGHT, WIDTH)[:, :, 0], "pil")[0]
    assert np.array_equal(np.asarray(run(pipe, small, "x", output_type="pil")[0][0]), np.asarray(expected))


def test_a_list_of_images_is_one_image_per_prompt(make_pipe):
    """As in diffusers' image-to-video pipelines: `image=[a, b]` with two prompts starts video i from image i (a batch
    of one-frame clips, the same as the (2, 3, 1, H, W) tensor), not a two-frame clip for both."""
    pipe = make_pipe(SoraImageToVideoPipeline)
    images = [random_clip(1, 1)[:, 0], random_clip(1, 2)[:, 0]]  # (3, H, W) each
    batch = run(pipe, images, ["x", "x"])
    assert batch.shape == (2, 9, 3, HEIGHT, WIDTH)
    assert torch.equal(batch, run(pipe, torch.stack(images)[:, :, None], ["x", "x"]))
    for video, image in zip(batch, images):
        assert torch.equal(video[0], as_shown(image[:, None])[0])
    with pytest.raises(ValueError, match="`image` holds a batch of 2 clips for 3 prompts"):
        pipe(images, ["x", "x", "x"])


def test_frames_given_below_strength_1_are_the_models(make_pipe, clip):
    kept, decoded = run_both(make_pipe(SoraImageToVideoPipeline), clip[:, 0], "x", image_strength=0.5)
    assert torch.equal(kept, decoded)
    kept, decoded = run_both(
        make_pipe(), prompt="x", conditions=[FrameCondition(clip, 0, strength=0.9), FrameCondition(clip[:, :1], 0)]
    )
    assert torch.equal(kept[0], as_shown(clip[:, :1])[0])  # the exact image given last wins frame 0
    assert torch.equal(kept[1:], decoded[1:])


def test_image_to_video_from_pil_path_and_negative_prompt(make_pipe, clip, tmp_path):
    pipe = make_pipe(SoraImageToVideoPipeline)
    image = pipe.video_processor.postprocess(clip[:, 0][None], output_type="pil")[0]  # (W, H) = (48, 32)
    image.save(tmp_path / "frame.png")
    from_pil = run(pipe, image, "a red circle", "blurry", num_frames=5)
    from_path = run(pipe, str(tmp_path / "frame.png"), "a red circle", negative_prompt="blurry", num_frames=5)
    assert from_pil.shape == (1, 5, 3, HEIGHT, WIDTH)
    assert torch.equal(from_pil, from_path)  # third positional argument is the negative prompt, as in diffusers


def test_image_strength_below_one_lets_the_model_revise_frame_0(make_pipe, components, clip):
    image = clip[:, 0]
    reference = round_trip(components["vae"], image[:, None])[0]
    # 8 steps: frame 0 is released at the first sigma <= 0.5 and revised over the steps after it (with 4 steps of
    # this scheduler that is only the last, tiny one)
    revised = run(make_pipe(SoraImageToVideoPipeline), image, "x", image_strength=0.5, num_inference_steps=8)[0]
    assert max_diff(revised[0], reference) > FAR


def test_image_to_video_rejects_an_unreadable_image_before_model_work(make_pipe, forbid_model_work, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"no image")
    for path in (tmp_path / "broken.png", tmp_path / "missing.png"):
        with pytest.raises(ValueError, match=r"`image`: cannot read '.*\.png'"):
            make_pipe(SoraImageToVideoPipeline)(str(path), "x")


def test_from_pipe_shares_components_and_config(make_pipe, clip):
    base = make_pipe()
    i2v = SoraImageToVideoPipeline.from_pipe(base)
    assert type(i2v) is SoraImageToVideoPipeline
    for name, component in base.components.items():
        assert i2v.components[name] is component
    assert (i2v.config.default_height, i2v.config.default_width, i2v.config.default_num_frames) == (HEIGHT, WIDTH, 9)
    i2v.set_progress_bar_config(disable=True)
    image = clip[:, 0]
    assert torch.equal(run(i2v, image, "x"), run(make_pipe(SoraImageToVideoPipeline), image, "x"))
    assert type(SoraPipeline.from_pipe(i2v)) is SoraPipeline


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_from_pipe_keeps_dtypes_and_logs_no_cast_warning(fresh_components, tmp_path):
    """diffusers' `from_pipe` ends with `.to(dtype=...)`; a cast that changes nothing must not run: it logged a
    "should be kept in float32" warning per model, and cast the float32-kept modules of a bf16 pipeline down."""
    pipe = SoraPipeline(**fresh_components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)
    pipe.save_pretrained(tmp_path)
    bf16 = SoraPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16)
    kept = {n: p.dtype for n, p in bf16.transformer.named_parameters() if "time_embedder" in n.split(".")}
    assert kept and set(kept.values()) == {torch.float32}
    assert bf16.transformer.proj_out.weight.dtype == torch.bfloat16

    records = _Records()
    diffusers_logger = logging.getLogger("diffusers")
    diffusers_logger.addHandler(records)
    try:
        i2v = SoraImageToVideoPipeline.from_pipe(bf16, dtype=torch.bfloat16)
        SoraImageToVideoPipeline.from_pipe(pipe)
    finally:
        diffusers_logger.removeHandler(records)
    assert not [m for m in records.messages if "kept in float32" in m], records.messages
    assert {n: p.dtype for n, p in i2v.transformer.named_parameters() if n in kept} == kept
    assert i2v.transformer.proj_out.weight.dtype == torch.bfloat16

    # a cast that changes something still runs, with diffusers' semantics (everything cast, kept modules included)
    pipe.to(torch.bfloat16)
    assert pipe.transformer.condition_embedder.time_embedder.linear_1.weight.dtype == torch.bfloat16


# ---- extension ------------------------------------------------------------------------------------------------------


def test_extend_forward(make_pipe, components, clip):
    """21 frames: the 9-frame clip at frames 0..8 (latents 0..2), new frames 9..20 (latents 3..5)."""
    kept, frames = run_both(make_pipe(SoraVideoExtensionPipeline), clip, "x", mode="forward", num_frames=21)
    assert kept.shape == frames.shape == (21, 3, HEIGHT, WIDTH)
    assert torch.equal(kept[:9], as_shown(clip)) and torch.equal(kept[9:], frames[9:])
    reference = round_trip(components["vae"], clip)
    assert max_diff(frames[:9], reference) < EXACT
    assert max_diff(frames[:9], kept[:9]) > FAR
    unconditioned = run(make_pipe(), "x", num_frames=21)[0]
    assert max_diff(unconditioned[:9], reference) > FAR
    assert (frames[9:18] - reference).abs().mean() > FAR / 2  # the new frames are not a replay of the clip


def test_extend_forward_default_length_is_about_twice_the_clip(make_pipe, clip):
    frames = run(make_pipe(SoraVideoExtensionPipeline), clip, "x")
    assert frames.shape == (1, 17, 3, HEIGHT, WIDTH)  # (2 * 9 - 1) // 4 * 4 + 1


def test_extend_backward(make_pipe, components, clip):
    """21 frames with the clip at the end (frame_index -9 = 12). Pixel 12 is not on a latent group boundary, so clip
    frame 0 is generated and clip frames 1..8 become latents 4, 5 (pixels 13..20). Checked: those latent frames equal
    the clip's frames 1..8 encoded after 13 copies of frame 1 (pixels 0..12); latents 0..3 are generated; the pixel
    output is the decode of that latent grid (the causal decoder sees the generated past, see the module docstring)."""
    vae, pipe = components["vae"], make_pipe(SoraVideoExtensionPipeline)
    latents = run(pipe, clip, "x", mode="backward", num_frames=21, output_type="latent")[0]
    assert latents.shape == (4, 6, HEIGHT // 8, WIDTH // 8)
    expected = encode_mid_video(vae, clip[:, 1:9], 4)[0]  # (C, 2, H', W')
    assert max_diff(latents[:, 4:], expected) < EXACT
    t2v_latents = run(make_pipe(), "x", num_frames=21, output_type="latent")[0]
    assert max_diff(t2v_latents[:, 4:], expected) > FAR
    assert max_diff(latents[:, :4], t2v_latents[:, :4]) > FAR  # the clip steers the generated frames before it

    kept, frames = run_both(pipe, clip, "x", mode="backward", num_frames=21)
    assert kept.shape == frames.shape == (21, 3, HEIGHT, WIDTH)
    assert max_diff(frames, decode(vae, latents[None])) < EXACT
    # returned as given: all 9 clip frames at 12..20, clip frame 0 (left to the model as conditioning) included
    assert torch.equal(kept[12:], as_shown(clip)) and torch.equal(kept[:12], frames[:12])
    assert max_diff(frames[12:], kept[12:]) > FAR


def test_extend_loop(make_pipe, components, clip):
    """Loop in 21 frames: the clip at 0..8 (latents 0..2), new frames, and clip frames 1..4 again as the last latent
    group (pixels 17..20, latent 5). The output drops those 4 frames and frame 16 (which stands for frame 0), leaving
    16 frames that lead back into frame 0."""
    vae, pipe = components["vae"], make_pipe(SoraVideoExtensionPipeline)
    kept, frames = run_both(pipe, clip, "x", mode="loop", num_frames=21)
    assert kept.shape == frames.shape == (16, 3, HEIGHT, WIDTH)
    assert max_diff(frames[:9], round_trip(vae, clip)) < EXACT
    assert torch.equal(kept[:9], as_shown(clip)) and torch.equal(kept[9:], frames[9:])

    latents = run(pipe, clip, "x", mode="loop", num_frames=21, output_type="latent")[0]
    assert latents.shape[1] == 6  # latents keep the whole grid
    assert max_diff(latents[:, 5:], encode_mid_video(vae, clip[:, 1:5], 5)[0]) < EXACT
    assert max_diff(latents[:, :3], encode(vae, clip)[0]) < EXACT
    (np_frames,) = pipe(
        clip, "x", mode="loop", num_frames=21, num_inference_steps=1, output_type="np", return_dict=False
    )
    assert np_frames.shape == (1, 16, HEIGHT, WIDTH, 3)


def test_extend_connect(make_pipe, components, clip):
    """Connect in 25 frames: `video` at 0..8 (latents 0..2), `video_end` at the end (-9 = 16; frames 1..8 of it become
    latents 5, 6 = pixels 17..24), new frames in between (latents 3, 4)."""
    vae, pipe = components["vae"], make_pipe(SoraVideoExtensionPipeline)
    end = random_clip(9, seed_value=2)
    kept, frames = run_both(pipe, clip, "x", mode="connect", video_end=end, num_frames=25)
    assert kept.shape == frames.shape == (25, 3, HEIGHT, WIDTH)
    assert max_diff(frames[:9], round_trip(vae, clip)) < EXACT
    assert torch.equal(kept[:9], as_shown(clip)) and torch.equal(kept[16:], as_shown(end))  # both clips as given
    assert torch.equal(kept[9:16], frames[9:16])
    assert max_diff(frames[:9], kept[:9]) > FAR and max_diff(frames[16:], kept[16:]) > FAR

    latents = run(pipe, clip, "x", mode="connect", video_end=end, num_frames=25, output_type="latent")[0]
    assert latents.shape[1] == 7
    assert max_diff(latents[:, 5:], encode_mid_video(vae, end[:, 1:9], 5)[0]) < EXACT
    # the end clip, not the start clip
    assert max_diff(latents[:, 5:], encode_mid_video(vae, clip[:, 1:9], 5)[0]) > FAR
    assert max_diff(frames, decode(vae, latents[None])) < EXACT


def test_extend_to_a_length_the_vae_cannot_make(make_pipe, clip, caplog):
    """18 frames: 21 are generated and the first 18 returned. Backward puts the clip on the last of the 18 (frame 9
    on), not of the 21; the loop cannot be cut, so it runs on 21 frames and says so."""
    pipe = make_pipe(SoraVideoExtensionPipeline)
    forward = run(pipe, clip, "x", mode="forward", num_frames=18)[0]
    assert forward.shape == (18, 3, HEIGHT, WIDTH) and torch.equal(forward[:9], as_shown(clip))
    backward = run(pipe, clip, "x", mode="backward", num_frames=18)[0]
    assert backward.shape == (18, 3, HEIGHT, WIDTH) and torch.equal(backward[9:], as_shown(clip))
    with caplog.at_level(logging.INFO, logger="sora_diffusers"):
        loop = run(pipe, clip, "x", mode="loop", num_frames=18)
    assert torch.equal(loop, run(pipe, clip, "x", mode="loop", num_frames=21))
    assert "A loop needs 1 + k*4 frames: generating 21, not `num_frames`=18." in caplog.messages
    with pytest.raises(ValueError, match=r"`num_frames` must be 1 \+ k\*4 .*got 18"):
        run(pipe, clip, "x", mode="loop", num_frames=18, strict_size=True)


def test_variants_take_any_size(make_pipe, clip):
    """40x56 (multiples of 16 are 48x64): every variant returns that size, given frames as given."""
    kwargs = dict(height=40, width=56)
    resized = make_pipe().preprocess_frames(clip, 40, 56)[0]  # (3, 9, 40, 56)
    frames = run(make_pipe(SoraImageToVideoPipeline), clip[:, 0], "x", num_frames=5, **kwargs)[0]
    assert frames.shape == (5, 3, 40, 56) and torch.equal(frames[0], as_shown(resized)[0])
    end = random_clip(9, seed_value=2)
    frames = run(make_pipe(SoraVideoExtensionPipeline), clip, "x", mode="connect", video_end=end, num_frames=22,
                 **kwargs)[0]  # fmt: skip
    assert frames.shape == (22, 3, 40, 56) and torch.equal(frames[:9], as_shown(resized))
    assert torch.equal(frames[13:], as_shown(make_pipe().preprocess_frames(end, 40, 56)[0]))
    frames = run(make_pipe(SoraVideoToVideoPipeline), clip[:, :7], "x", strength=0.5, num_inference_steps=4, **kwargs)
    assert frames.shape == (1, 7, 3, 40, 56) and torch.isfinite(frames).all()  # 7 frames: 9 generated
    with pytest.raises(ValueError, match=r"`height` must be a positive multiple of 16 .*got 40"):
        run(make_pipe(SoraImageToVideoPipeline), clip[:, 0], "x", strict_size=True, **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="sideways"), r"`mode` must be one of \('forward', 'backward', 'loop', 'connect'\), got 'sideways'"),
        (dict(mode="connect"), r"`video_end` is required for mode='connect'"),
        (dict(mode="forward", video_end="{clip}"), r"`video_end` is required for mode='connect' and only used there"),
        (dict(mode="forward", num_frames=9), r"`num_frames` \(9\) must exceed the frames given \(9\)"),
        (dict(mode="loop", num_frames=13), r"`num_frames` \(13\) must exceed"),  # loop needs room for the head copy
        (
            dict(mode="forward", num_frames=18, strict_size=True),
            r"`num_frames` must be 1 \+ k\*4 .*nearest valid: 17 or 21",
        ),
        (dict(video="{tmp}/missing.mp4"), r"`video`: cannot read '.*missing\.mp4' \(no such file\)"),
        (dict(mode="connect", video_end="{tmp}/missing.mp4"), r"`video_end`: cannot read '.*missing\.mp4'"),
        (dict(video="{tmp}/broken.mp4"), r"`video`: cannot read '.*broken\.mp4'"),
    ],
)
def test_extension_rejects_bad_input_before_model_work(make_pipe, forbid_model_work, clip, tmp_path, kwargs, match):
    (tmp_path / "broken.mp4").write_bytes(b"no video")
    values = {"clip": clip, "tmp": tmp_path}
    kwargs = {k: (values["clip"] if v == "{clip}" else v.format(**values)) if isinstance(v, str) else v
              for k, v in kwargs.items()}  # fmt: skip
    video = kwargs.pop("video", clip)
    with pytest.raises(ValueError, match=match):
        make_pipe(SoraVideoExtensionPipeline)(video, "x", **kwargs)


# ---- video-to-video -------------------------------------------------------------------------------------------------


def test_video_to_video_strength_0_returns_the_reconstruction(make_pipe, components, clip, record_transformer):
    frames = run(make_pipe(SoraVideoToVideoPipeline), clip, "x", strength=0.0)[0]
    assert frames.shape == (9, 3, HEIGHT, WIDTH)
    assert max_diff(frames, round_trip(components["vae"], clip)) < EXACT
    assert record_transformer.calls == []  # no denoising step at all


def test_video_to_video_strength_1_ignores_the_video(make_pipe, clip):
    edited = run(make_pipe(SoraVideoToVideoPipeline), clip, "x", strength=1.0)
    assert torch.equal(edited, run(make_pipe(), "x"))  # starts from pure noise: text-to-video with the same seed


@pytest.mark.parametrize(
    "scheduler",
    [
        None,
        FlowMatchEulerDiscreteScheduler(shift=3.0),
        UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    ],
    ids=["sora", "flow_match_euler", "unipc"],
)
def test_video_to_video_half_strength(make_pipe, components, clip, record_transformer, scheduler):
    """strength 0.5 of 4 steps: 2 steps run, starting from the video noised to the third sigma of the schedule."""
    overrides = {} if scheduler is None else {"scheduler": scheduler}
    pipe = make_pipe(SoraVideoToVideoPipeline, **overrides)
    frames = run(pipe, clip, "x", strength=0.5, num_inference_steps=4)
    assert frames.shape == (1, 9, 3, HEIGHT, WIDTH) and torch.isfinite(frames).all()
    assert len(record_transformer.calls) == 2
    first_timestep = record_transformer.calls[0][0][1]  # (2,): conditional and unconditional
    torch.testing.assert_close(first_timestep.float(), pipe.scheduler.timesteps[2].float().expand(2))
    reference = round_trip(components["vae"], clip)
    assert max_diff(frames[0], reference) > FAR  # edited ...
    assert (frames[0] - reference).abs().mean() < (run(make_pipe(), "x")[0] - reference).abs().mean()  # ... less
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        assert torch.equal(
            frames, run(make_pipe(SoraVideoToVideoPipeline), clip, "x", strength=0.5, num_inference_steps=4)
        )


def test_video_to_video_from_a_file(make_pipe, clip, tmp_path):
    path = export_to_video(list(((clip.permute(1, 2, 3, 0) + 1) / 2).numpy()), str(tmp_path / "clip.mp4"), fps=8)
    frames = run(make_pipe(SoraVideoToVideoPipeline), path, "x", strength=0.5, num_inference_steps=2)
    assert frames.shape == (1, 9, 3, HEIGHT, WIDTH)  # num_frames read from the file


def test_a_list_of_clips_is_a_batch_as_diffusers_takes_it(make_pipe):
    """One clip per prompt as a list of frame lists (diffusers' `VideoProcessor` form), of arrays (T, H, W, 3) or of
    tensors (3, T, H, W): the same (B, 3, T, H, W) batch as the stacked tensor, and each prompt edits its own clip."""
    pipe = make_pipe(SoraVideoToVideoPipeline)
    clips = [random_clip(9, 1), random_clip(9, 2)]
    stacked = pipe.preprocess_frames(torch.stack(clips), HEIGHT, WIDTH)
    assert stacked.shape == (2, 3, 9, HEIGHT, WIDTH)
    pils = [pipe.video_processor.postprocess(c.permute(1, 0, 2, 3), output_type="pil") for c in clips]
    arrays = [np.stack([np.asarray(frame) for frame in clip]) for clip in pils]  # uint8 (T, H, W, 3)
    assert torch.equal(pipe.preprocess_frames(pils, HEIGHT, WIDTH), pipe.preprocess_frames(arrays, HEIGHT, WIDTH))
    assert torch.equal(pipe.preprocess_frames(clips, HEIGHT, WIDTH), stacked)
    with warnings.catch_warnings():  # frames as a list of (3, H, W) tensors: the clip's tensor, without diffusers'
        warnings.simplefilter("error")  # deprecated [-1, 1] tensor path
        frames = list(clips[0].unbind(1))
        assert torch.equal(
            pipe.preprocess_frames(frames, HEIGHT, WIDTH), pipe.preprocess_frames(clips[0], HEIGHT, WIDTH)
        )
    with pytest.raises(ValueError, match=r"a list of tensors must hold \(3, H, W\) frames of one size"):
        pipe.preprocess_frames([frames[0], frames[1][:, :16]], HEIGHT, WIDTH)

    batch = run(pipe, clips, ["x", "x"], strength=0.5, num_inference_steps=2)
    assert batch.shape == (2, 9, 3, HEIGHT, WIDTH) and max_diff(batch[0], batch[1]) > 0.01
    assert torch.equal(batch, run(pipe, torch.stack(clips), ["x", "x"], strength=0.5, num_inference_steps=2))
    short = [random_clip(5, 1), random_clip(5, 2)]
    extend = make_pipe(SoraVideoExtensionPipeline)
    for mode in ("forward", "loop"):  # the loop's end condition is each clip's own head
        extended = run(extend, short, ["x", "x"], mode=mode, num_frames=13)
        assert extended.shape[0] == 2
        assert torch.equal(extended, run(extend, torch.stack(short), ["x", "x"], mode=mode, num_frames=13))
    with pytest.raises(ValueError, match=r"`video` holds clips of \[9, 5\] frames"):
        pipe(pils[:1] + [pils[1][:5]], ["x", "x"])
    with pytest.raises(TypeError, match=r"`video\[1\]` must be .*, got a list holding NoneType"):
        pipe([pils[0], [None] * 9], ["x", "x"])


def test_palette_gif_and_non_rgb_images_are_read_as_rgb(make_pipe, clip, tmp_path):
    """gif frames come back from diffusers' `load_video` as a mix of palette and RGB images, and a user's image may be
    grey or RGBA: all are converted to RGB (the video processor would keep their modes and fail or misread them)."""
    pipe = make_pipe(SoraVideoExtensionPipeline)
    rgb = pipe.video_processor.postprocess(clip.permute(1, 0, 2, 3), output_type="pil")  # 9 RGB frames
    palette = [frame.convert("P") for frame in rgb]
    palette[0].save(tmp_path / "clip.gif", save_all=True, append_images=palette[1:])
    from_gif = pipe.preprocess_frames(str(tmp_path / "clip.gif"), HEIGHT, WIDTH)
    assert from_gif.shape == (1, 3, 9, HEIGHT, WIDTH)
    expected = pipe.preprocess_frames([frame.convert("RGB") for frame in palette], HEIGHT, WIDTH)
    torch.testing.assert_close(from_gif, expected, atol=2 / 255, rtol=0)  # gif re-quantises the palette slightly
    assert run(pipe, str(tmp_path / "clip.gif"), "x", num_frames=13).shape == (1, 13, 3, HEIGHT, WIDTH)

    grey, rgba = rgb[0].convert("L"), rgb[0].convert("RGBA")
    torch.testing.assert_close(
        pipe.preprocess_frames(grey, HEIGHT, WIDTH), pipe.preprocess_frames(grey.convert("RGB"), HEIGHT, WIDTH)
    )
    assert pipe.preprocess_frames(rgba, HEIGHT, WIDTH).shape == (1, 3, 1, HEIGHT, WIDTH)


# ---- signatures -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, own",
    [
        (SoraImageToVideoPipeline, ["image", "prompt", "negative_prompt", "image_strength"]),
        (SoraVideoExtensionPipeline, ["video", "prompt", "negative_prompt", "mode", "video_end", "num_frames"]),
        (SoraVideoToVideoPipeline, ["video", "prompt", "negative_prompt", "strength"]),
    ],
)
def test_signature_shows_the_arguments_passed_on_to_the_loop(cls, own):
    """A wrapper's own parameters first, then every other parameter of `SoraPipeline.__call__` (keyword-only)."""
    shown = inspect.signature(cls.__call__).parameters
    base = [name for name in inspect.signature(SoraPipeline.__call__).parameters if name != "self"]
    assert list(shown)[1 : len(own) + 1] == own
    assert set(base) <= set(shown) and "kwargs" not in shown
    passed = [p for name, p in shown.items() if name not in own and name != "self"]
    assert passed and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in passed)
    base_defaults = inspect.signature(SoraPipeline.__call__).parameters
    assert all(shown[name].default == base_defaults[name].default for name in ("guidance_scale", "height", "latents"))
