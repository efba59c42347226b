"""Bad input to the pipelines, as an adversarial user gives it: every argument checked for type, finiteness and range
before model work (the error names the argument, the value and what is allowed), size limits and the memory estimate,
images of every PIL mode, NaN and infinity stopped during denoising and after decoding, and model folders that are
broken or name modules to import."""

import math
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from sora_diffusers import (
    FrameCondition,
    SoraImageToVideoPipeline,
    SoraPipeline,
    SoraVideoExtensionPipeline,
    SoraVideoToVideoPipeline,
)
from sora_diffusers.pipelines import validation
from sora_diffusers.pipelines.inputs import exact_size_processor, frames_to_tensor, image_to_rgb, open_image

from ..bad_files import (
    copy_model,
    corrupt_tail,
    edit_json,
    pickle_weights,
    truncate,
    write_png16,
    write_png_bomb,
)
from .conftest import HEIGHT, TEXT_DIM, WIDTH, random_clip, seed, tiny_text_encoder


STEPS = 2
CLIP_1, CLIP_9 = random_clip(1), random_clip(9)  # (3, T, H, W) in [-1, 1]
IMAGE = CLIP_1[:, 0]  # (3, H, W)
NAN_IMAGE = torch.full((3, HEIGHT, WIDTH), math.nan)
FRAMES = [PIL.Image.new("RGB", (WIDTH, HEIGHT), (200, 30, 30))] * 5  # a 5-frame clip


def run(pipe, **kwargs):
    kwargs = {"num_inference_steps": STEPS, "generator": seed(0), "output_type": "pt", **kwargs}
    if "prompt_embeds" not in kwargs:
        kwargs.setdefault("prompt", "a red circle")
    return pipe(**kwargs).frames


# ---- arguments: each refused with its name, the value and what is allowed, before any model work --------------------

T2V, I2V, EXT, V2V = SoraPipeline, SoraImageToVideoPipeline, SoraVideoExtensionPipeline, SoraVideoToVideoPipeline
TYPE_ERRORS = {
    "guidance_scale str": (T2V, dict(guidance_scale="5"), r"`guidance_scale` must be a number, got str '5'"),
    "guidance_scale None": (T2V, dict(guidance_scale=None), r"`guidance_scale` must be a number, got NoneType"),
    "guidance_scale bool": (T2V, dict(guidance_scale=True), r"`guidance_scale` must be a number, got bool"),
    "num_frames str": (T2V, dict(num_frames="abc"), r"`num_frames` must be an int, got str 'abc'"),
    "num_frames float": (T2V, dict(num_frames=5.0), r"`num_frames` must be an int, got float 5\.0"),
    "width float": (T2V, dict(width=48.0), r"`width` must be an int, got float 48\.0"),
    "height bool": (T2V, dict(height=True), r"`height` must be an int, got bool"),
    "steps float": (T2V, dict(num_inference_steps=2.0), r"`num_inference_steps` must be an int, got float"),
    "videos per prompt str": (T2V, dict(num_videos_per_prompt="1"), r"`num_videos_per_prompt` must be an int"),
    "strength str": (T2V, dict(video=CLIP_9, strength="0.5"), r"`strength` must be a number, got str"),
    "max_sequence_length str": (T2V, dict(max_sequence_length="8"), r"`max_sequence_length` must be an int"),
    "negative_prompt int": (T2V, dict(negative_prompt=5), r"`negative_prompt` must be a string or a list of strings"),
    "latents list": (T2V, dict(latents=[0.0]), r"`latents` must be a float torch\.Tensor, got list"),
    "prompt_embeds int": (
        T2V,
        dict(prompt_embeds=torch.zeros(1, 4, 16, dtype=torch.long), guidance_scale=1.0),
        r"`prompt_embeds` must be a float torch\.Tensor",
    ),
    "generator int": (T2V, dict(generator=0), r"`generator` must be a torch\.Generator or a list of them, got int"),
    "conditions not a list": (T2V, dict(conditions=FrameCondition(IMAGE)), r"`conditions` must be a list"),
    "condition frame_index float": (
        T2V,
        dict(conditions=[FrameCondition(IMAGE, 0.5)]),
        r"`conditions\[0\]\.frame_index` must be an int, got float 0\.5",
    ),
    "condition frames None": (T2V, dict(conditions=[FrameCondition(None)]), r"`conditions\[0\]\.frames` must be an"),
    "condition frames dict": (T2V, dict(conditions=[FrameCondition({"a": 1})]), r"`conditions\[0\]\.frames` must be"),
    "condition int64 array": (
        T2V,
        dict(conditions=[FrameCondition(np.zeros((HEIGHT, WIDTH, 3), dtype=np.int64))]),
        r"`conditions\[0\]\.frames` array must be uint8, uint16 or float, got dtype int64",
    ),
    "condition mixed list": (
        T2V,
        dict(conditions=[FrameCondition([FRAMES[0], np.zeros((HEIGHT, WIDTH, 3), np.float32)])]),
        r"`conditions\[0\]\.frames` mixes \['Image', 'ndarray'\]",
    ),
    "image None": (
        I2V,
        dict(image=None),
        r"`image` must be an image \(PIL image, .*\) or an image or video file path, got NoneType",
    ),
    "image number": (I2V, dict(image=3), r"`image` must be an image .*got int"),
    "image_strength str": (I2V, dict(image=IMAGE, image_strength="1"), r"`image_strength` must be a number"),
    "video None": (EXT, dict(video=None), r"`video` must be an image .*got NoneType"),
    "extension num_frames str": (EXT, dict(video=FRAMES, num_frames="abc"), r"`num_frames` must be an int, got str"),
    "video_end number": (EXT, dict(video=FRAMES, video_end=5, mode="connect"), r"`video_end` must be an image"),
    "edit video None list": (V2V, dict(video=[None]), r"`video` must be .*got a list holding NoneType"),
}
VALUE_ERRORS = {
    "guidance_scale inf": (
        T2V,
        dict(guidance_scale=math.inf),
        r"`guidance_scale` must be a finite number in \[0, 100\], got inf",
    ),
    "guidance_scale -inf": (T2V, dict(guidance_scale=-math.inf), r"`guidance_scale` must be a finite number"),
    "guidance_scale nan": (T2V, dict(guidance_scale=math.nan), r"`guidance_scale` must be a finite number .*got nan"),
    "guidance_scale 1e308": (T2V, dict(guidance_scale=1e308), r"`guidance_scale` must be in \[0, 100\], got 1e\+308"),
    "guidance_scale 100.5": (T2V, dict(guidance_scale=100.5), r"`guidance_scale` must be in \[0, 100\], got 100\.5"),
    "guidance_scale negative": (T2V, dict(guidance_scale=-1), r"`guidance_scale` must be in \[0, 100\], got -1\.0"),
    "height 0": (T2V, dict(height=0), r"`height` must be a positive int, got 0"),
    "width 0": (T2V, dict(width=0), r"`width` must be a positive int, got 0"),
    "num_frames above the limit": (T2V, dict(num_frames=400_001), r"`num_frames` must be at most 2049, got 400001"),
    "pixels above the limit": (
        T2V,
        dict(height=65536, width=65536),
        r"`height` x `width` = 65536 x 65536 = 4294967296 pixels per frame is more than 67108864",
    ),
    "steps 0": (T2V, dict(num_inference_steps=0), r"`num_inference_steps` must be a positive int, got 0"),
    "steps above the limit": (T2V, dict(num_inference_steps=1001), r"`num_inference_steps` must be at most 1000"),
    "videos per prompt 0": (T2V, dict(num_videos_per_prompt=0), r"`num_videos_per_prompt` must be a positive int"),
    "max_sequence_length 0": (
        T2V,
        dict(max_sequence_length=0),
        r"`max_sequence_length` must be an int from 1 to 512, got 0",
    ),
    "max_sequence_length past the positions": (
        T2V,
        dict(max_sequence_length=513),
        r"`max_sequence_length` must be an int from 1 to 512, got 513",
    ),
    "strength nan": (T2V, dict(video=CLIP_9, strength=math.nan), r"`strength` must be a finite number in \[0, 1\]"),
    "condition strength inf": (
        T2V,
        dict(conditions=[FrameCondition(IMAGE, 0, math.inf)]),
        r"`conditions\[0\]\.strength` must be a finite number in \[0, 1\], got inf",
    ),
    "latents nan": (T2V, dict(latents=torch.full((1, 4, 3, 4, 6), math.nan)), r"`latents` holds NaN or infinite"),
    "prompt_embeds nan": (
        T2V,
        dict(prompt_embeds=torch.full((1, 4, 16), math.nan), guidance_scale=1.0),
        r"`prompt_embeds` holds NaN or infinite values",
    ),
    "negative_prompt_embeds inf": (
        T2V,
        dict(prompt_embeds=torch.zeros(1, 4, 16), negative_prompt_embeds=torch.full((1, 4, 16), math.inf)),
        r"`negative_prompt_embeds` holds NaN or infinite values",
    ),
    "prompt_embeds of another width": (
        T2V,
        dict(prompt_embeds=torch.zeros(1, 4, TEXT_DIM + 3), guidance_scale=1.0),
        rf"`prompt_embeds` are {TEXT_DIM + 3} wide, but the transformer takes text {TEXT_DIM} wide "
        r"\(`transformer.config.text_dim`\)",
    ),
    "negative_prompt_embeds of another width": (
        T2V,
        dict(prompt_embeds=torch.zeros(1, 4, TEXT_DIM), negative_prompt_embeds=torch.zeros(1, 4, 2 * TEXT_DIM)),
        rf"`negative_prompt_embeds` are {2 * TEXT_DIM} wide, but the transformer takes text {TEXT_DIM} wide",
    ),
    "prompt_embeds 2-D": (
        T2V,
        dict(prompt_embeds=torch.zeros(4, 16), guidance_scale=1.0),
        r"`prompt_embeds` must be \(batch, tokens, channels\), got shape \(4, 16\)",
    ),
    "condition nan tensor": (
        T2V,
        dict(conditions=[FrameCondition(NAN_IMAGE)]),
        r"`conditions\[0\]\.frames` holds 4608 NaN or infinite values; float tensors of frames must hold finite values "
        r"in \[-1, 1\]",
    ),
    "condition inf array": (
        T2V,
        dict(conditions=[FrameCondition(np.full((HEIGHT, WIDTH, 3), np.inf, np.float32))]),
        r"`conditions\[0\]\.frames` holds 4608 NaN or infinite values; float arrays",
    ),
    "condition tensor in 0..255": (
        T2V,
        dict(conditions=[FrameCondition(IMAGE * 127.5 + 127.5)]),
        r"`conditions\[0\]\.frames` holds values from .* to .*; float tensors of frames must be in \[-1, 1\] "
        r"\(uint8 tensors in 0\.\.255 also pass\)",
    ),
    "condition array in 0..255": (
        T2V,
        dict(conditions=[FrameCondition(np.full((HEIGHT, WIDTH, 3), 255.0))]),
        r"`conditions\[0\]\.frames` holds values from 255 to 255; float arrays of frames must be in \[0, 1\]",
    ),
    "condition array in -1..1": (
        T2V,
        dict(conditions=[FrameCondition(np.full((HEIGHT, WIDTH, 3), -0.5, np.float32))]),
        r"`conditions\[0\]\.frames` holds values from -0\.5 to -0\.5; float arrays of frames must be in \[0, 1\]",
    ),
    "condition RGBA array": (
        T2V,
        dict(conditions=[FrameCondition(np.zeros((HEIGHT, WIDTH, 4), np.uint8))]),
        r"`conditions\[0\]\.frames` array must be \(H, W, 3\) or \(T, H, W, 3\) RGB, got shape \(32, 48, 4\)",
    ),
    "condition empty list": (
        T2V,
        dict(conditions=[FrameCondition([])]),
        r"`conditions\[0\]\.frames` is an empty list",
    ),
    "image nan": (I2V, dict(image=NAN_IMAGE), r"`image` holds 4608 NaN or infinite values"),
    "image_strength nan": (I2V, dict(image=IMAGE, image_strength=math.nan), r"`image_strength` must be a finite"),
    "image_strength 1.5": (I2V, dict(image=IMAGE, image_strength=1.5), r"`image_strength` must be in \[0, 1\]"),
    "video nan": (EXT, dict(video=CLIP_9.clone().fill_(math.nan)), r"`video` holds .* NaN or infinite values"),
    "video_end inf": (
        EXT,
        dict(video=CLIP_9, video_end=CLIP_9.clone().fill_(math.inf), mode="connect", num_frames=25),
        r"`video_end` holds .* NaN or infinite values",
    ),
    "edit video nan": (V2V, dict(video=CLIP_9.clone().fill_(math.nan)), r"`video` holds .* NaN or infinite values"),
}


@pytest.mark.parametrize("case", list(TYPE_ERRORS))
def test_wrong_types_are_type_errors_naming_the_argument(make_pipe, forbid_model_work, case):
    pipeline_class, kwargs, match = TYPE_ERRORS[case]
    with pytest.raises(TypeError, match=match):
        run(make_pipe(pipeline_class), **kwargs)


@pytest.mark.parametrize("case", list(VALUE_ERRORS))
def test_bad_values_are_value_errors_naming_the_argument(make_pipe, forbid_model_work, case):
    pipeline_class, kwargs, match = VALUE_ERRORS[case]
    with pytest.raises(ValueError, match=match):
        run(make_pipe(pipeline_class), **kwargs)


def test_a_text_encoder_of_another_width_is_refused_before_it_runs(make_pipe, forbid_model_work, components):
    """A text encoder from another model (a folder saved without its own, filled from a package) is named, with both
    widths, before the prompts are encoded; the transformer alone would refuse the text only at its first step."""
    wide = tiny_text_encoder(components["tokenizer"].vocab_size, hidden_size=2 * TEXT_DIM)
    wide.register_forward_pre_hook(lambda *_: pytest.fail("the text encoder ran before the mismatch was refused"))
    pipe = make_pipe(text_encoder=wide)
    message = (
        rf"`text_encoder` \(BertModel\) gives hidden states {2 * TEXT_DIM} wide, but the transformer takes text "
        rf"{TEXT_DIM} wide"
    )
    with pytest.raises(ValueError, match=message):
        run(pipe)
    with pytest.raises(ValueError, match=message):  # guidance encodes the negative prompt with it
        run(pipe, prompt_embeds=torch.zeros(1, 4, TEXT_DIM), guidance_scale=5.0)


def test_text_embeddings_of_the_right_width_run_whatever_the_text_encoder(make_pipe, components):
    wide = tiny_text_encoder(components["tokenizer"].vocab_size, hidden_size=2 * TEXT_DIM)
    embeds = torch.randn(1, 4, TEXT_DIM, generator=seed(1))
    frames = run(make_pipe(text_encoder=wide), prompt_embeds=embeds, negative_prompt_embeds=embeds)
    assert frames.shape == (1, 9, 3, HEIGHT, WIDTH)
    assert torch.isfinite(frames).all()


@pytest.mark.parametrize("name", ["default_height", "default_width", "default_num_frames"])
def test_pipeline_defaults_must_be_positive_ints(components, name):
    with pytest.raises(ValueError, match=rf"`{name}` must be a positive int, got 0"):
        SoraPipeline(**components, **{name: 0})


def test_numpy_numbers_pass_as_ints_and_floats(make_pipe):
    frames = run(make_pipe(), height=np.int64(HEIGHT), num_frames=np.int32(5), guidance_scale=np.float32(3.0))
    assert frames.shape == (1, 5, 3, HEIGHT, WIDTH) and bool(torch.isfinite(frames).all())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: validation.check_int("n", 7, 1, 5), r"`n` must be an int from 1 to 5, got 7"),
        (lambda: validation.check_int("n", -1, 0), r"`n` must be an int >= 0, got -1"),
        (lambda: validation.check_int("n", 9, None, 5), r"`n` must be an int <= 5, got 9"),
        (lambda: validation.check_number("x", -0.5, 0.0), r"`x` must be >= 0, got -0\.5"),
        (lambda: validation.check_number("x", math.inf), r"`x` must be a finite number, got inf"),
        (lambda: validation.check_number("x", 2.0, None, 1.0), r"`x` must be <= 1, got 2\.0"),
    ],
)
def test_number_checks_name_value_and_range(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_number_checks_return_plain_python_numbers():
    assert validation.check_int("n", np.int16(3), 1) == 3 and type(validation.check_int("n", np.int16(3))) is int
    assert validation.check_number("x", np.float16(0.5), 0, 1) == 0.5
    assert validation.check_number("x", 2, 0, 5) == 2.0


# ---- size: limits that can be raised, and the memory estimate ------------------------------------------------------


def test_the_limits_are_module_constants_read_at_each_call(make_pipe, forbid_model_work, monkeypatch):
    monkeypatch.setattr(validation, "MAX_GUIDANCE_SCALE", 2.0)
    with pytest.raises(ValueError, match=r"`guidance_scale` must be in \[0, 2\], got 3\.0"):
        run(make_pipe(), guidance_scale=3.0)
    monkeypatch.setattr(validation, "MAX_NUM_FRAMES", 4)
    with pytest.raises(ValueError, match=r"`num_frames` must be at most 4, got 5 .*validation\.MAX_NUM_FRAMES"):
        run(make_pipe(), num_frames=5)
    monkeypatch.setattr(validation, "MAX_PIXELS", HEIGHT * WIDTH - 1)
    with pytest.raises(ValueError, match=rf"= {HEIGHT * WIDTH} pixels per frame is more than {HEIGHT * WIDTH - 1}"):
        run(make_pipe(), num_frames=1)


def test_lifted_limits_still_refuse_what_memory_cannot_hold(make_pipe, forbid_model_work, monkeypatch):
    for name in ("MAX_NUM_FRAMES", "MAX_PIXELS"):
        monkeypatch.setattr(validation, name, None)
    # 65536 x 65536 x 400001 frames: exabytes of latents on any machine; refused before anything is allocated
    with pytest.raises(ValueError) as error:
        run(make_pipe(), height=65536, width=65536, num_frames=400_001)
    message = str(error.value)
    assert message.startswith(
        "`num_frames`=400001 at `height` x `width` = 65536 x 65536 for 1 video(s) needs at least"
    )
    assert "(latents " in message and "transformer activations " in message and "decoded frames " in message
    assert "GiB is available on cpu" in message


# the fixture pipeline's default request: 9 frames of 32x48 (latents (1, 4, 3, 4, 6)), guidance on, float32
DEFAULT_ESTIMATE = validation.estimate_memory(
    (1, 4, 3, HEIGHT // 8, WIDTH // 8), (1, 2, 2), 2 * 12, 48, True, 4, (1, 3, 9, HEIGHT, WIDTH)
)


def test_a_request_above_the_available_memory_is_refused_with_the_estimate(make_pipe, forbid_model_work, monkeypatch):
    monkeypatch.setattr(validation, "available_memory", lambda device: sum(DEFAULT_ESTIMATE.values()) - 1)
    with pytest.raises(ValueError, match=r"needs at least .* GiB of memory \(latents .* GiB, transformer activations"):
        run(make_pipe())


def test_a_request_that_fits_the_available_memory_runs(make_pipe, monkeypatch):
    monkeypatch.setattr(validation, "available_memory", lambda device: sum(DEFAULT_ESTIMATE.values()))
    assert run(make_pipe()).shape == (1, 9, 3, HEIGHT, WIDTH)


def test_the_memory_check_can_be_switched_off(make_pipe, monkeypatch):
    monkeypatch.setattr(validation, "available_memory", lambda device: 1)
    with pytest.raises(ValueError, match="needs at least"):
        run(make_pipe(), num_frames=1)
    monkeypatch.setattr(validation, "CHECK_AVAILABLE_MEMORY", False)
    assert run(make_pipe(), num_frames=1).shape == (1, 1, 3, HEIGHT, WIDTH)


def test_estimate_memory_counts_latents_tokens_and_frames():
    latent_shape, video_shape = (2, 4, 3, 4, 6), (2, 3, 9, 32, 48)
    parts = validation.estimate_memory(latent_shape, (1, 2, 2), 24, 48, True, 2, video_shape)
    num_tokens = 3 * 4 * 6 // 4
    assert parts == {
        "latents": 4 * (2 * 4 * 3 * 4 * 6) * 4,  # four float32 copies
        "transformer activations": 2 * 2 * num_tokens * (4 * 24 + 48) * 2,  # guidance doubles the batch
        "decoded frames": 2 * (2 * 3 * 9 * 32 * 48) * 4,
    }
    without = validation.estimate_memory(latent_shape, (1, 2, 2), 24, 48, False, 2, None)
    assert "decoded frames" not in without
    assert without["transformer activations"] == parts["transformer activations"] // 2


def test_available_memory_on_the_cpu_with_and_without_psutil(monkeypatch):
    with_psutil = validation.available_memory("cpu")
    monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError
    from_meminfo = validation.available_memory("cpu")
    assert with_psutil > 0 and from_meminfo > 0
    assert abs(with_psutil - from_meminfo) < 0.25 * with_psutil  # both read MemAvailable, moments apart
    assert validation.available_memory("meta") is None


def test_on_a_gpu_the_free_memory_counts_torch_cache_and_the_frames_must_fit_the_cpu(monkeypatch):
    """Without a GPU: torch.cuda's memory figures stubbed, to check what `available_memory` adds and what
    `check_memory` compares (the GPU holds every part, the CPU the returned frames)."""
    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: 2 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 1 * gib)
    assert validation.available_memory("cuda:0") == 4 * gib  # 3 free + 1 reserved by torch but unused
    parts = {"latents": gib, "transformer activations": gib, "decoded frames": 2 * gib}
    validation.check_memory(parts, "cuda:0", "this request")  # 4 GiB: fits the GPU
    cpu = validation.available_memory
    monkeypatch.setattr(
        validation, "available_memory", lambda d: gib // 2 if torch.device(d).type == "cpu" else cpu(d)
    )
    with pytest.raises(
        ValueError, match=r"this request needs at least 1 GiB of memory .* but 0\.5 GiB is available on cpu"
    ):
        validation.check_memory(parts, "cuda:0", "this request")  # the 1 GiB of float32 frames returned


# ---- NaN and infinity while generating: stopped with the step, never a black video ---------------------------------


def test_nan_latents_stop_denoising_at_the_step_that_made_them(make_pipe, record_transformer):
    def poison(pipe, i, t, kwargs):
        return {"latents": kwargs["latents"].fill_(math.nan)} if i == 1 else {}

    with pytest.raises(FloatingPointError, match=r"Denoising step 2 of 4 \(timestep [\d.]+\) gave NaN or infinite"):
        run(make_pipe(), num_inference_steps=4, callback_on_step_end=poison)
    assert len(record_transformer.calls) == 2  # stopped after the second step, not run to the end


def test_a_vae_that_decodes_nan_returns_no_video(make_pipe, fresh_components):
    with torch.no_grad():
        next(fresh_components["vae"].decoder.parameters()).fill_(math.nan)
    pipe = make_pipe(vae=fresh_components["vae"])
    with pytest.raises(FloatingPointError, match=r"The VAE decoded NaN or infinite pixels, so no video is returned"):
        run(pipe)
    assert run(pipe, output_type="latent").shape == (1, 4, 3, 4, 6)  # the latents themselves are fine


# ---- images of every mode, 16-bit files, decompression bombs -------------------------------------------------------


def _rgb(image: PIL.Image.Image) -> np.ndarray:
    return np.asarray(image_to_rgb(image, "image")).astype(int)


def test_16_bit_grayscale_png_is_scaled_not_saturated(tmp_path):
    levels = np.linspace(0, 65535, HEIGHT * WIDTH).reshape(HEIGHT, WIDTH).astype(np.uint16)
    image = open_image(write_png16(tmp_path / "gray16.png", levels))
    assert PIL.Image.open(tmp_path / "gray16.png").mode == "I;16" and image.mode == "RGB"
    expected = np.round(levels / 257).astype(int)
    assert np.array_equal(np.asarray(image)[..., 0], expected) and np.array_equal(np.asarray(image)[..., 2], expected)
    assert abs(np.asarray(image).mean() - 127.5) < 1  # PIL's own convert("RGB") gives 254.4: saturated


def test_48_bit_rgb_png_keeps_its_colours(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 65536, (HEIGHT, WIDTH, 3)).astype(np.uint16)
    image = open_image(write_png16(tmp_path / "rgb48.png", pixels))
    assert np.abs(np.asarray(image).astype(int) - pixels / 257).max() <= 1


def test_16_bit_pixels_through_the_pipeline_input(tmp_path):
    """A 16-bit file, a uint16 array and a uint16 tensor give the frames their 8-bit versions give."""
    rng = np.random.default_rng(0)
    pixels8 = rng.integers(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    pixels16 = pixels8.astype(np.uint16) * 257  # exactly the same levels
    write_png16(tmp_path / "rgb48.png", pixels16)
    reference = frames_to_tensor(pixels8, exact_size_processor(), HEIGHT, WIDTH)
    for frames in (
        str(tmp_path / "rgb48.png"),
        pixels16,
        torch.from_numpy(pixels16.astype(np.int32)).to(torch.uint16),
    ):
        if isinstance(frames, torch.Tensor):
            frames = frames.permute(2, 0, 1)  # (3, H, W)
        tensor = frames_to_tensor(frames, exact_size_processor(), HEIGHT, WIDTH, name="image")
        torch.testing.assert_close(tensor, reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "image, expected",
    [
        (PIL.Image.new("RGBA", (2, 2), (255, 0, 0, 128)), (255, 127, 127)),  # half red over white
        (PIL.Image.new("RGBA", (2, 2), (0, 0, 0, 0)), (255, 255, 255)),  # transparent: white, not black
        (PIL.Image.new("LA", (2, 2), (0, 255)), (0, 0, 0)),  # opaque black
        (PIL.Image.new("LA", (2, 2), (0, 0)), (255, 255, 255)),
        (PIL.Image.new("L", (2, 2), 100), (100, 100, 100)),
        (PIL.Image.new("1", (2, 2), 1), (255, 255, 255)),
        (PIL.Image.new("CMYK", (2, 2), (0, 255, 255, 0)), (255, 0, 0)),
        (PIL.Image.new("HSV", (2, 2), (0, 255, 255)), (255, 0, 0)),
        (PIL.Image.new("I;16B", (2, 2), 65535), (255, 255, 255)),
        (PIL.Image.new("I", (2, 2), 32896), (128, 128, 128)),  # 16-bit data in a 32-bit mode: 32896 / 257
    ],
    ids=["RGBA-half", "RGBA-clear", "LA-opaque", "LA-clear", "L", "1", "CMYK", "HSV", "I;16B", "I"],
)
def test_every_mode_converts_to_rgb(image, expected):
    assert (_rgb(image) == expected).all(axis=-1).all(), _rgb(image)[0, 0]


def test_palette_transparency_is_composited():
    image = PIL.Image.new("P", (2, 2), 0)
    image.putpalette([0, 0, 255] * 256)  # every index blue
    image.info["transparency"] = 0
    assert (_rgb(image) == (255, 255, 255)).all()
    del image.info["transparency"]
    assert (_rgb(image) == (0, 0, 255)).all()


@pytest.mark.parametrize(
    "image, match",
    [
        (PIL.Image.new("F", (2, 2), 0.5), r"`image`: 32-bit float images \(mode 'F'\) have no fixed range"),
        (
            PIL.Image.new("I", (2, 2), 70000),
            r"`image`: a mode 'I' image with values from 70000 to 70000 is not a 16-bit",
        ),
    ],
)
def test_modes_without_a_fixed_range_are_refused_by_name(image, match):
    with pytest.raises(ValueError, match=match):
        image_to_rgb(image, "image")


def test_float_frames_within_the_tolerance_are_clipped():
    slightly = torch.full((3, HEIGHT, WIDTH), 1.005)
    assert frames_to_tensor(slightly, exact_size_processor(), HEIGHT, WIDTH).max() == 1.0
    array = np.full((HEIGHT, WIDTH, 3), -0.004, np.float32)
    assert frames_to_tensor(array, exact_size_processor(), HEIGHT, WIDTH).min() == -1.0


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["warning-size", "error-size"])
def test_decompression_bombs_are_refused_naming_the_file(make_pipe, forbid_model_work, tmp_path, side):
    path = write_png_bomb(tmp_path / "bomb.png", side)
    with pytest.raises(ValueError, match=r"decompression bomb; raise `PIL\.Image\.MAX_IMAGE_PIXELS`"):
        open_image(path)
    with pytest.raises(ValueError, match=r"`image`: cannot read '.*bomb\.png': Image size \(\d+ pixels\) exceeds"):
        run(make_pipe(SoraImageToVideoPipeline), image=path)
    with pytest.raises(ValueError, match=r"`conditions\[0\]\.frames`: cannot read '.*bomb\.png'.*decompression bomb"):
        run(make_pipe(), conditions=[FrameCondition(path)])


# ---- model folders --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(components, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny_pipeline")
    SoraPipeline(**components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9).save_pretrained(path)
    return str(path)


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """An importable module `sora_marker_module` that creates a file when imported (its code ran)."""
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "imported"
    (site / "sora_marker_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nSystem = type('System', (), {{}})\n\ndef get_model_path():\n    return ''\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield marker
    sys.modules.pop("sora_marker_module", None)


def _without_text_components(folder):
    edit_json(folder / "model_index.json", text_encoder=[None, None], tokenizer=[None, None])


BROKEN_FOLDERS = {
    "truncated model_index.json": (
        lambda folder: truncate(folder / "model_index.json", 200),
        r"model_index\.json is not valid JSON: ",
    ),
    "model_index.json not an object": (
        lambda folder: (folder / "model_index.json").write_text("[1, 2]"),
        r"model_index\.json must hold a JSON object, got list",
    ),
    "os.system": (
        lambda folder: edit_json(folder / "model_index.json", scheduler=["os", "system"]),
        r"model_index\.json: component `scheduler` is \['os', 'system'\], but components load only from diffusers, "
        r"transformers, sora_diffusers: loading does not import or use a module a model folder names",
    ),
    "a module with side effects": (
        lambda folder: edit_json(folder / "model_index.json", vae=["sora_marker_module", "System"]),
        r"component `vae` is \['sora_marker_module', 'System'\], but components load only from",
    ),
    "a custom pipeline class": (
        lambda folder: edit_json(folder / "model_index.json", _class_name=["sora_marker_module", "System"]),
        r"`_class_name` is \['sora_marker_module', 'System'\], which asks to run a custom pipeline's code",
    ),
    "a text encoder package with side effects": (
        lambda folder: (
            _without_text_components(folder),
            edit_json(folder / "model_index.json", text_encoder_package="sora-marker-module"),
        ),
        r"`text_encoder_package` is 'sora-marker-module', and importing it would run its code",
    ),
    "a component entry that is not a pair": (
        lambda folder: edit_json(folder / "model_index.json", transformer="DiTVideoTransformer3D"),
        r"component `transformer` must be \[library, class\] or \[null, null\], got 'DiTVideoTransformer3D'",
    ),
    "a pickled text encoder": (
        lambda folder: pickle_weights(folder / "text_encoder"),
        r"`text_encoder` in .* ships only pickled weights \(pytorch_model\.bin\), which can run code when loaded",
    ),
    "a config with more layers than its weights": (
        lambda folder: edit_json(folder / "transformer" / "config.json", num_layers=3),
        r"`transformer` in .*: config\.json does not match diffusion_pytorch_model\.safetensors: \d+ weights the "
        r"config needs are not in the file \(blocks\.2\.",
    ),
    "a config with another width than its weights": (
        lambda folder: edit_json(folder / "transformer" / "config.json", ffn_dim=64),
        r"config\.json does not match .*: \d+ weights have another shape \(blocks\.0\.ffn\.net\.0\.proj\.bias: \(64,\) "
        r"by the config, \(48,\) in the file\)",
    ),
    "an invalid config": (
        lambda folder: edit_json(folder / "transformer" / "config.json", patch_size=[1, 0, 2]),
        r"`patch_size` must be three positive ints \(p_t, p_h, p_w\), got \[1, 0, 2\]",
    ),
    "an invalid default size": (
        lambda folder: edit_json(folder / "model_index.json", default_height=-3),
        r"`default_height` must be a positive int, got -3",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_FOLDERS))
def test_broken_model_folders_are_clear_errors_and_import_nothing(saved_model, tmp_path, marker_module, case):
    break_folder, match = BROKEN_FOLDERS[case]
    folder = copy_model(saved_model, tmp_path / "model")
    break_folder(folder)
    with pytest.raises(ValueError, match=match):
        SoraPipeline.from_pretrained(folder)
    assert not marker_module.exists() and "sora_marker_module" not in sys.modules


def test_what_the_caller_passes_or_allows_still_loads(saved_model, tmp_path, components, marker_module):
    folder = copy_model(saved_model, tmp_path / "model")
    reference = SoraPipeline.from_pretrained(folder).text_encoder.embeddings.word_embeddings.weight
    # text components passed in: the package the folder names is not needed, so not imported, and no error
    _without_text_components(folder)
    edit_json(folder / "model_index.json", text_encoder_package="sora-marker-module")
    pipe = SoraPipeline.from_pretrained(folder, tokenizer=components["tokenizer"], text_encoder=None)
    assert pipe.tokenizer is components["tokenizer"] and pipe.text_encoder is None
    assert not marker_module.exists()
    # pickled weights, when the caller says so
    folder = copy_model(saved_model, tmp_path / "pickled")
    pickle_weights(folder / "text_encoder")
    with_pickle = SoraPipeline.from_pretrained(folder, use_safetensors=None)  # diffusers' default
    assert torch.equal(with_pickle.text_encoder.embeddings.word_embeddings.weight, reference)


def test_a_truncated_safetensors_file_is_an_error_naming_it(saved_model, tmp_path):
    folder = copy_model(saved_model, tmp_path / "model")
    truncate(folder / "transformer" / "diffusion_pytorch_model.safetensors", 100)
    with pytest.raises(
        OSError, match=r"Unable to load weights from checkpoint file .*transformer/diffusion_pytorch_model"
    ):
        SoraPipeline.from_pretrained(folder)


@pytest.mark.parametrize("output_type", ["pt", "latent"])
def test_corrupted_weights_that_still_parse_stop_at_the_first_step(saved_model, tmp_path, output_type):
    folder = copy_model(saved_model, tmp_path / "model")
    corrupt_tail(folder / "transformer" / "diffusion_pytorch_model.safetensors")  # the last weights become NaN
    pipe = SoraPipeline.from_pretrained(folder)  # loads: the file's header and sizes are intact
    pipe.set_progress_bar_config(disable=True)
    assert not all(bool(torch.isfinite(p).all()) for p in pipe.transformer.parameters())
    with pytest.raises(FloatingPointError, match=r"Denoising step 1 of 2 .* weights may be corrupt"):
        run(pipe, output_type=output_type)
