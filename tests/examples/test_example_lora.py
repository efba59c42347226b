"""The worked LoRA example shipped in `examples/assets/lora/zigzag` (trained by `examples/train_example_lora.sh`):
small, in diffusers' format, made for the embedded model; it loads, changes what the model draws, and the README's
command line that uses it parses. Seconds: 2 steps of 5 frames at 64x64."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open

from sora_diffusers import SoraPipeline
from sora_diffusers.cli import build_parser, main
from sora_diffusers.utils.export import load_video_frames


REPO = Path(__file__).resolve().parents[2]
LORA_DIR = REPO / "examples" / "assets" / "lora" / "zigzag"
LORA_FILE = LORA_DIR / "pytorch_lora_weights.safetensors"
PROMPT = "a red circle zig-zags to the right on a black background"
SMALL = {"num_inference_steps": 2, "num_frames": 5, "height": 64, "width": 64, "output_type": "np"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_file_is_small_and_a_rank_32_attention_and_ffn_lora():
    assert LORA_FILE.stat().st_size < 3 * 1024 * 1024
    with safe_open(LORA_FILE, "pt") as weights:
        keys = list(weights.keys())
        config = json.loads(weights.metadata()["lora_adapter_metadata"])
        rank = weights.get_tensor("transformer.blocks.0.attn1.to_q.lora_A.weight").shape[0]
        dtypes = {weights.get_tensor(key).dtype for key in keys}
    assert rank == config["transformer.r"] == 32 and config["transformer.lora_alpha"] == 32
    targets = {"to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"}  # self- and cross-attention, FFN
    assert set(config["transformer.target_modules"]) == targets
    assert dtypes == {torch.float16}  # stored in half precision; loaded into the float32 model as float32
    assert len(keys) == 6 * (2 * 4 + 2) * 2  # 6 blocks x ((self, cross) x (q, k, v, out) + 2 FFN linears) x (A, B)
    card = ModelCard.load(LORA_DIR / "README.md")  # written by the script's card stage, with its figures
    assert card.data.library_name == "diffusers" and "lora" in card.data.tags
    assert "bash examples/train_example_lora.sh" in card.text
    zigzag_row = (
        r"\| held-out zig-zag prompts: zig-zag the prompted way, base / with the LoRA \| ([\d.]+) / ([\d.]+) \|"
    )
    row = re.search(zigzag_row, card.text)
    assert row is not None and float(row[2]) > float(row[1])  # the card records what the LoRA adds


@pytest.fixture(scope="module")
def pipe():
    pipe = SoraPipeline.from_default_model()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _video(pipe: SoraPipeline) -> np.ndarray:
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), **SMALL).frames[0]


def test_loads_into_the_embedded_model_and_changes_the_video(pipe):
    base = _video(pipe)
    pipe.load_lora_weights(LORA_DIR, adapter_name="zigzag")
    try:
        assert pipe.get_list_adapters() == {"transformer": ["zigzag"]}
        with_lora = _video(pipe)
        pipe.set_adapters(["zigzag"], adapter_weights=[0.0])
        np.testing.assert_allclose(_video(pipe), base, atol=1e-6)  # scale 0: the base model
    finally:
        pipe.unload_lora_weights()
    # Mean change in [0, 1] levels: 0.005 at this tiny size and 2 steps, against 4e-6 from the float16 storage alone.
    assert np.abs(with_lora - base).mean() > 1e-3
    np.testing.assert_array_equal(_video(pipe), base)  # unloaded: exactly the base again


def _readme_command(document: str) -> list[str]:
    lines = [
        line for line in (REPO / document).read_text().splitlines() if "--lora examples/assets/lora/zigzag" in line
    ]
    assert lines, f"{document} shows no command with the example LoRA"
    return shlex.split(lines[0].split("#")[0])


@pytest.mark.parametrize("document", ["README.md", "examples/README.md"])
def test_the_readme_command_parses(document):
    command = _readme_command(document)
    assert command[:2] == ["sora-diffusers", "generate"]
    args = build_parser().parse_args(command[1:])
    path, scale = args.lora[0]
    assert (REPO / path).resolve() == LORA_FILE.resolve() and scale == 1.0
    assert "zig-zag" in args.prompt


def test_the_command_line_runs_it(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the README's path is relative to the repository root
    small = ["--steps", "2", "--num-frames", "5", "--height", "64", "--width", "64", "--seed", "0"]
    outputs = {"base": [], "lora": ["--lora", str(LORA_FILE.relative_to(REPO))]}
    frames = {}
    for name, options in outputs.items():
        output = tmp_path / f"{name}.mp4"
        assert main(["generate", PROMPT, "-o", str(output), *small, *options]) == 0
        frames[name] = load_video_frames(output).astype(np.float32)
    # In 0..255 levels: 1.2 at this tiny size and 2 steps; the same frames encode and decode to the same levels.
    assert np.abs(frames["lora"] - frames["base"]).mean() > 0.3
