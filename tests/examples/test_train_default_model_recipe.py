"""`examples/train_default_model.sh`, the recipe behind model_card.md, printed with `DRY_RUN=1`: every training
command it would run parses with its script's own argument parser, and `VAE_SPACE` / `VAE_CHANNELS` / `PROFILE` pick
the VAE layout and the DiT patch that keep the DiT at 576 tokens per 33 x 256 x 256 clip."""

import os
import shlex
import subprocess

import pytest

from ..conftest import REPO_ROOT, load_script


SCRIPT = REPO_ROOT / "examples" / "train_default_model.sh"
PARSERS = {
    "examples/train_vae.py": load_script("examples/train_vae.py").parse_args,
    "examples/train_text_to_video.py": load_script("examples/train_text_to_video.py").parse_args,
}


def recipe(tmp_path, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "DRY_RUN": "1", "RUNS": str(tmp_path / "runs"), **env}
    return subprocess.run(["bash", str(SCRIPT)], env=environ, capture_output=True, text=True, timeout=60)


def commands(tmp_path, **env) -> list[list[str]]:
    done = recipe(tmp_path, **env)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    return [shlex.split(line) for line in done.stdout.splitlines()]


def parsed(command: list[str]):
    assert command[0] == "python", command
    return PARSERS[command[1]](command[2:])


@pytest.mark.parametrize(
    "env, dim_mult, temporal, patch",
    [
        ({}, [1, 2, 4, 4], [0, 1, 1], [1, 2, 2]),  # the shipped v1.6 layout: 16x space, 16 channels
        ({"VAE_SPACE": "8"}, [1, 2, 4], [1, 1], [1, 4, 4]),
        ({"VAE_SPACE": "8", "DIT_PATCH": "1 2 2"}, [1, 2, 4], [1, 1], [1, 2, 2]),
        ({"PROFILE": "gpu"}, [1, 2, 4], [1, 1], [1, 2, 2]),
    ],
)
def test_every_training_command_parses_with_the_layout_asked_for(tmp_path, env, dim_mult, temporal, patch):
    lines = commands(tmp_path, **env)
    scripts = [line[1] for line in lines]
    assert scripts == ["examples/train_vae.py"] * 2 + ["examples/train_text_to_video.py"] * 7 + [
        "examples/train_vae.py"
    ] * 2 + ["examples/export_default_model.py", "benchmarks/eval_default_model.py"]
    vae_phases = [parsed(line) for line in lines[:2]]
    for args in vae_phases:
        assert (args.dim_mult, args.temporal_downsample, args.latent_channels) == (dim_mult, temporal, 16)
        assert args.output_dir == str(tmp_path / "runs" / "vae") and args.resume_from_checkpoint == "latest"
    assert [args.num_frames for args in vae_phases] == [[9], [17, 33]]
    dit_phases = [parsed(line) for line in lines[2:9]]
    assert {tuple(args.patch_size) for args in dit_phases} == {tuple(patch)}
    assert all(args.vae == str(tmp_path / "runs" / "vae") for args in dit_phases)
    # each phase resumes the one before, up to the last phase's step count
    steps = [args.max_train_steps for args in dit_phases]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    for args in (parsed(line) for line in lines[9:11]):
        assert args.train_decoder_only and args.pretrained_vae == str(tmp_path / "runs" / "vae")


def test_vae_channels_reaches_the_vae_and_nothing_else(tmp_path):
    lines = commands(tmp_path, VAE_CHANNELS="48", STAGES="vae dit")
    assert [parsed(line).latent_channels for line in lines[:2]] == [48, 48]
    assert len(lines) == 9 and all("--latent_channels" not in line for line in lines[2:])


def test_dit_image_prob_reaches_every_dit_phase_and_no_vae_command(tmp_path):
    default = commands(tmp_path, STAGES="vae dit decoder")
    assert [parsed(line).image_prob for line in default[2:9]] == [0.0] * 7
    lines = commands(tmp_path, DIT_IMAGE_PROB="0.1", STAGES="vae dit decoder")
    assert [parsed(line).image_prob for line in lines[2:9]] == [0.1] * 7
    vae_commands = lines[:2] + lines[9:]
    assert [parsed(line).image_prob for line in vae_commands] == [
        parsed(line).image_prob for line in default[:2] + default[9:]
    ]
    assert all("--image_prob" not in line for line in vae_commands)  # the VAE keeps its own default


def test_dit_size_reaches_every_dit_phase_and_no_vae_command(tmp_path):
    def sizes(dit_lines):
        return [(a.num_layers, a.num_attention_heads, a.attention_head_dim, a.ffn_dim) for a in map(parsed, dit_lines)]

    default = commands(tmp_path, STAGES="vae dit decoder")
    assert sizes(default[2:9]) == [(6, 4, 64, 1024)] * 7  # v1.6's DiT: 256 wide
    lines = commands(tmp_path, STAGES="vae dit decoder", DIT_HEADS="6", DIT_LAYERS="4")
    assert sizes(lines[2:9]) == [(4, 6, 64, 1536)] * 7
    assert lines[:2] + lines[9:] == default[:2] + default[9:]


def test_stages_pick_the_commands(tmp_path):
    lines = commands(tmp_path, STAGES="export eval")
    assert [line[1] for line in lines] == ["examples/export_default_model.py", "benchmarks/eval_default_model.py"]
    assert lines[0][2:] == [str(tmp_path / "runs" / "t2v"), "--vae", str(tmp_path / "runs" / "vae_dec")]


@pytest.mark.parametrize(
    "env, message",
    [
        ({"VAE_SPACE": "12"}, "VAE_SPACE must be 16 or 8, got '12'"),
        ({"PROFILE": "tpu"}, "PROFILE must be cpu or gpu, got 'tpu'"),
        ({"STAGES": "vae train"}, "unknown stage 'train' (vae, dit, decoder, export, eval)"),
        ({"DIT_HEADS": "0"}, "DIT_HEADS must be a positive integer, got '0'"),
        ({"DIT_LAYERS": "6 --x"}, "DIT_LAYERS must be a positive integer, got '6 --x'"),
    ],
)
def test_bad_settings_stop_with_a_message(tmp_path, env, message):
    done = recipe(tmp_path, **env)
    assert done.returncode == 2 and message in done.stderr
