"""The example training scripts end to end on a CPU (tiny models, 2-4 steps), their data bucketing, and the random
frame-conditioning sampler they train with.

Each script run goes through `main([...])` in this process: a tiny VAE (base_dim 8) on 32x32 shapes-world clips, then a
2-layer DiT (width 24) on its latents. Runs use one torch thread: on a busy 2-core machine two threads spin-wait on
each other and run several times slower.
"""

import json
import logging
import math
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sora_diffusers import DiTVideoTransformer3D, FrameCondition, SoraPipeline, SpacetimeVAE
from sora_diffusers.data import Bucket, make_buckets, read_video, write_dataset
from sora_diffusers.training import autoencoder, caches, conditioning_sampler, datasets
from sora_diffusers.training.buckets import BucketBatchSampler, nearest_bucket
from sora_diffusers.training.conditioning_sampler import (
    CONDITION_MODES,
    normalize_condition_probs,
    sample_condition_mask,
    tail_clip_start,
    tail_length_of,
)
from sora_diffusers.training.logging import plot_curve

from ..conftest import dead_pid, load_script
from ..hub import HubRecorder, add_to_hub_cache, use_hub_cache


train_vae = load_script("examples/train_vae.py")
train_text_to_video = load_script("examples/train_text_to_video.py")


COMMON_FLAGS = [
    "--resolution", "32", "--num_train_samples", "24", "--dataloader_num_workers", "0", "--torch_threads", "1",
    "--logging_steps", "1", "--checkpointing_steps", "2", "--validation_steps", "2", "--use_ema",
]  # fmt: skip
VAE_FLAGS = [
    "--num_frames", "5", "9", "--base_dim", "8", "--dim_mult", "1", "2", "2", "2", "--latent_channels", "4",
    "--num_validation_videos", "1", "--stats_num_samples", "3", "--image_prob", "0.5",
]  # fmt: skip
DIT_FLAGS = [
    "--num_frames", "9", "--aspect_ratios", "square", "--num_layers", "2", "--num_attention_heads", "2",
    "--attention_head_dim", "12", "--ffn_dim", "48", "--freq_dim", "32", "--validation_num_inference_steps", "2",
    "--validation_prompts", "a red circle moving to the right",
]  # fmt: skip


def run(main, argv: list[str]) -> dict:
    """`main(argv)`, then undo what a run leaves behind: accelerate's global state and torch's thread count."""
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A 3-step VAE run: checkpoint and validation at step 2, EMA, half of the batches images."""
    out = tmp_path_factory.mktemp("vae")
    result = run(train_vae.main, [*COMMON_FLAGS, *VAE_FLAGS, "--output_dir", str(out), "--max_train_steps", "3"])
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return out, result, records


@pytest.fixture(scope="module")
def dit_run(vae_run, tmp_path_factory):
    """A 3-step DiT run on the shapes world with gradient accumulation 2: checkpoint and validation at step 2, EMA;
    pushed to the Hub as "me/t2v" (what it sent is the fourth item)."""
    out = tmp_path_factory.mktemp("dit")
    argv = [*COMMON_FLAGS, *DIT_FLAGS, "--vae", str(vae_run[0]), "--output_dir", str(out), "--max_train_steps", "3"]
    push = ["--push_to_hub", "--hub_model_id", "me/t2v"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_hub_cache(monkeypatch, tmp_path_factory.mktemp("hub-cache"))
        hub = HubRecorder().install(monkeypatch)
        result = run(train_text_to_video.main, [*argv, "--gradient_accumulation_steps", "2", *push])
    return out, result, argv, hub


def _assert_readable_video(path: Path, width: int, height: int) -> None:
    frames = read_video(path)
    assert frames.ndim == 4 and frames.shape[1:] == (height, width, 3), frames.shape


def _assert_readable_png(path: Path) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.size[0] > 100 and image.size[1] > 100


# ---------------------------------------------------------------------------------------------------------------------
# train_vae.py
# ---------------------------------------------------------------------------------------------------------------------


def test_vae_run_writes_checkpoints_validation_and_model(vae_run):
    out, result, records = vae_run
    assert result["global_step"] == 3
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert any("val_psnr" in r for r in records) and all(math.isfinite(r.get("psnr", 0.0)) for r in records)
    assert (out / "checkpoint-2" / "model.safetensors").is_file()
    assert (out / "checkpoint-2" / "ema" / "diffusion_pytorch_model.safetensors").is_file()
    _assert_readable_png(out / "loss.png")
    frames = read_video(out / "validation" / "step-000002_0.mp4")
    sizes = {(b.height, 2 * b.width) for b in make_buckets(32, (5, 9))}  # original | reconstruction
    assert frames.shape[1:3] in sizes, frames.shape

    vae = SpacetimeVAE.from_pretrained(out)
    assert len(vae.config.latents_mean) == 4 and all(s > 0 for s in vae.config.latents_std)
    with torch.no_grad():
        recon = vae(torch.zeros(1, 3, 5, 32, 32)).sample
    assert recon.shape == (1, 3, 5, 32, 32) and torch.isfinite(recon).all()


def _forbid_unpickling(monkeypatch) -> None:
    """Make every way a resume could unpickle a file fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("resuming unpickled something")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (torch.serialization, "load")):
        monkeypatch.setattr(module, name, refuse)


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def vae_resumed(vae_run, tmp_path_factory):
    """vae_run's checkpoint-2 resumed to step 4 with unpickling forbidden, and the same 4 steps uninterrupted."""
    argv = [*COMMON_FLAGS, *VAE_FLAGS, "--max_train_steps", "4"]
    straight = tmp_path_factory.mktemp("vae_straight")
    run(train_vae.main, [*argv, "--output_dir", str(straight)])
    resumed = tmp_path_factory.mktemp("vae_resumed") / "vae"
    shutil.copytree(vae_run[0], resumed)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _forbid_unpickling(monkeypatch)
        result = run(train_vae.main, [*argv, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest"])
    return resumed, straight, result, argv


def test_vae_resume_unpickles_nothing_and_ends_bitwise_equal_to_an_uninterrupted_run(vae_run, vae_resumed):
    resumed, straight, result, _ = vae_resumed
    assert result["first_step"] == 2 and result["global_step"] == 4
    for checkpoint in (resumed / "checkpoint-2", resumed / "checkpoint-4"):
        files = {p.name for p in checkpoint.iterdir()}
        assert {"checkpoint.json", "model.safetensors", "optimizer.safetensors", "training_state.json"} <= files
        assert not [name for name in files if name.endswith((".pkl", ".bin", ".pt"))], files
    # the same data order, random draws, optimizer and EMA state: the same bits as the uninterrupted run
    model = "diffusion_pytorch_model.safetensors"
    assert _same_weights(resumed / model, straight / model)
    for name in ("model.safetensors", "optimizer.safetensors", f"ema/{model}"):
        assert _same_weights(resumed / "checkpoint-4" / name, straight / "checkpoint-4" / name), name
    again = {r["step"]: r["loss"] for r in map(json.loads, open(resumed / "metrics.jsonl")) if "loss" in r}
    first = {r["step"]: r["loss"] for r in map(json.loads, open(straight / "metrics.jsonl")) if "loss" in r}
    assert again == first and sorted(again) == [1, 2, 3, 4]


def test_vae_resume_passes_over_partial_temp_and_corrupt_checkpoints(vae_resumed, tmp_path, caplog):
    """A save killed mid-way (a temp folder), a checkpoint without its marker and one with a truncated safetensors:
    the run resumes from the last good one, names what it skipped, cleans up, and still ends on the same weights."""
    resumed, straight, _, argv = vae_resumed
    out = tmp_path / "vae"
    shutil.copytree(resumed, out)
    shutil.copytree(out / "checkpoint-4", out / "checkpoint-6")
    (out / "checkpoint-6" / "checkpoint.json").unlink()  # no marker: not written to the end
    killed = f".checkpoint-8.tmp-{dead_pid()}"
    shutil.copytree(out / "checkpoint-4", out / killed)  # a killed save
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated

    with caplog.at_level(logging.WARNING):
        result = run(train_vae.main, [*argv, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])

    assert result["first_step"] == 2 and result["global_step"] == 4
    assert "Skipping checkpoint-6: no checkpoint.json" in caplog.text
    assert "checkpoint-4 is corrupt: model.safetensors" in caplog.text
    assert f"Removed {killed}: a stopped run did not finish it" in caplog.text and not (out / killed).exists()
    assert (out / "checkpoint-4" / "checkpoint.json").is_file()  # written again, complete
    model = "diffusion_pytorch_model.safetensors"
    assert _same_weights(out / model, straight / model)


def test_resume_applies_a_new_learning_rate(vae_run, tmp_path):
    """torch restores the scheduler's saved peak lr; a --learning_rate given on resume must win."""
    resumed = tmp_path / "vae"
    shutil.copytree(vae_run[0], resumed)
    argv = [*COMMON_FLAGS, *VAE_FLAGS, "--output_dir", str(resumed), "--max_train_steps", "4"]
    run(train_vae.main, [*argv, "--resume_from_checkpoint", "latest", "--learning_rate", "1e-3"])
    lrs = {r["step"]: r["lr"] for r in map(json.loads, open(resumed / "metrics.jsonl")) if "loss" in r}
    first = {r["step"]: r["lr"] for r in vae_run[2] if "loss" in r}
    # the same 200-step warm-up (constant_with_warmup, the default), towards 1e-3 instead of the checkpoint's 2e-4
    assert first[2] == pytest.approx(2e-4 * 2 / 200) and first[3] == pytest.approx(2e-4 * 3 / 200)
    assert lrs[3] == pytest.approx(1e-3 * 3 / 200) and lrs[4] == pytest.approx(1e-3 * 4 / 200)


def test_vae_stop_at_step_checkpoints_without_a_final_model_and_resumes_with_other_data_flags(vae_run, tmp_path):
    """A curriculum: 3 steps on 5- and 9-frame clips, stopped; then the last step on 9-frame clips only."""
    out = tmp_path / "vae"
    argv = [*COMMON_FLAGS, *VAE_FLAGS, "--output_dir", str(out), "--max_train_steps", "4"]
    stopped = run(train_vae.main, [*argv, "--stop_at_step", "3"])
    assert stopped["stopped"] and stopped["global_step"] == 3
    assert (out / "checkpoint-3").is_dir() and not (out / "config.json").exists()
    records = {r["step"]: r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r}
    first = {r["step"]: r["loss"] for r in vae_run[2] if "loss" in r}
    assert sorted(records) == [1, 2, 3] and records[3] == pytest.approx(first[3], rel=1e-4)

    argv[argv.index("--num_frames") + 1 : argv.index("--num_frames") + 3] = ["9"]
    result = run(train_vae.main, [*argv, "--resume_from_checkpoint", "latest"])
    assert result["first_step"] == 3 and result["global_step"] == 4 and "stopped" not in result
    assert SpacetimeVAE.from_pretrained(out).config.latent_channels == 4


FINE_TUNE_FLAGS = [
    "--num_frames", "5", "9", "--num_validation_videos", "1", "--image_prob", "0.5", "--learning_rate", "1e-3",
]  # fmt: skip


def test_vae_decoder_fine_tune_keeps_the_encoder_and_its_latent_statistics(vae_run, tmp_path):
    """--train_decoder_only: the latent space a DiT was trained on stays bit-identical; the decoder learns."""
    pretrained = SpacetimeVAE.from_pretrained(vae_run[0])
    out = tmp_path / "decoder"
    argv = [*COMMON_FLAGS, *FINE_TUNE_FLAGS, "--output_dir", str(out), "--max_train_steps", "2"]
    run(train_vae.main, [*argv, "--pretrained_vae", str(vae_run[0]), "--train_decoder_only", "--gradient_weight", "1"])
    tuned = SpacetimeVAE.from_pretrained(out)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged and all(row["gradient"] > 0 for row in logged if "loss" in row)  # the edge term is trained on

    assert tuned.config.latents_mean == pretrained.config.latents_mean
    assert tuned.config.latents_std == pretrained.config.latents_std
    before, after = pretrained.state_dict(), tuned.state_dict()
    encoder_keys = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    decoder_keys = [k for k in before if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder_keys and len(encoder_keys) + len(decoder_keys) == len(before)
    assert all(torch.equal(before[k], after[k]) for k in encoder_keys)
    changed = sum(not torch.equal(before[k], after[k]) for k in decoder_keys)
    assert changed > len(decoder_keys) // 2, f"{changed} of {len(decoder_keys)} decoder tensors changed"
    clip = torch.rand(1, 3, 5, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(pretrained.encode(clip).latent_dist.mode(), tuned.encode(clip).latent_dist.mode())


def test_vae_fine_tune_from_a_pipeline_folder_trains_the_whole_vae(vae_run, tmp_path):
    pipeline_folder = tmp_path / "pipe"
    SpacetimeVAE.from_pretrained(vae_run[0]).save_pretrained(pipeline_folder / "vae")
    out = tmp_path / "whole"
    argv = [*COMMON_FLAGS, *FINE_TUNE_FLAGS, "--output_dir", str(out), "--max_train_steps", "2"]
    run(train_vae.main, [*argv, "--pretrained_vae", str(pipeline_folder)])
    before = SpacetimeVAE.from_pretrained(vae_run[0]).state_dict()
    after = SpacetimeVAE.from_pretrained(out).state_dict()
    assert not torch.equal(before["encoder.conv_in.weight"], after["encoder.conv_in.weight"])
    assert (
        SpacetimeVAE.from_pretrained(out).config.latents_std
        != SpacetimeVAE.from_pretrained(vae_run[0]).config.latents_std
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--train_decoder_only"], "--train_decoder_only needs --pretrained_vae"),
        (["--pretrained_vae", "x", "--base_dim", "8"], "--pretrained_vae fixes the architecture; drop --base_dim"),
        (["--pretrained_vae", "x", "--vae_config", "y"], "--pretrained_vae fixes the architecture; drop --vae_config"),
    ],
)
def test_vae_fine_tune_flags_are_checked(flags, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        train_vae.parse_args([*COMMON_FLAGS, "--output_dir", str(tmp_path), *flags])


def test_stop_at_step_beyond_max_train_steps_is_rejected(tmp_path):
    argv = [*COMMON_FLAGS, *VAE_FLAGS, "--output_dir", str(tmp_path), "--max_train_steps", "4", "--stop_at_step", "5"]
    with pytest.raises(ValueError, match=r"--stop_at_step must be in \[0, --max_train_steps=4\], got 5"):
        run(train_vae.main, argv)


# ---------------------------------------------------------------------------------------------------------------------
# train_text_to_video.py
# ---------------------------------------------------------------------------------------------------------------------


def test_dit_run_writes_checkpoints_validation_and_pipeline(dit_run):
    out, result, _, _ = dit_run
    assert result["global_step"] == 3 and math.isfinite(result["last_record"]["loss"])
    assert (out / "checkpoint-2" / "ema" / "diffusion_pytorch_model.safetensors").is_file()
    _assert_readable_png(out / "loss.png")
    for name in ("t2v_0", "i2v", "extend"):
        _assert_readable_video(out / "validation" / f"step-000002_{name}.mp4", 64 if name != "t2v_0" else 32, 32)

    pipe = SoraPipeline.from_pretrained(out)
    assert isinstance(pipe.transformer, DiTVideoTransformer3D)
    assert pipe.transformer.config.per_frame_timesteps is True
    assert (pipe.config.default_height, pipe.config.default_width, pipe.config.default_num_frames) == (32, 32, 9)
    pipe.set_progress_bar_config(disable=True)
    image = torch.zeros(3, 32, 32)
    video = pipe("a blue square", conditions=[FrameCondition(image, 0)], num_inference_steps=2, output_type="pt")
    assert video.frames.shape == (1, 9, 3, 32, 32) and torch.isfinite(video.frames).all()


def test_dit_run_pushes_a_complete_pipeline_repo(dit_run, offline_hub_cache):
    out, _, _, hub = dit_run
    commit = hub.only_commit("me/t2v")
    files = set(commit.files)
    _assert_no_training_state(files)
    index = commit.json("model_index.json")
    assert index["_class_name"] == "SoraPipeline" and (out / "checkpoint-2").is_dir()
    for name in ("transformer", "vae"):
        assert {f"{name}/config.json", f"{name}/diffusion_pytorch_model.safetensors"} <= files, name
    assert "scheduler/scheduler_config.json" in files
    local = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {f for f in local if not f.startswith(("checkpoint-", ".checkpoint-", "logs/"))}
    assert {"text_encoder/model.safetensors", "tokenizer/tokenizer_config.json"} <= files
    card = commit.card()
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "text-to-video"
    assert {"text-to-video", "sora_diffusers", "diffusers-training"} <= set(card.data.tags)
    assert 'SoraPipeline.from_pretrained("me/t2v")' in card.text

    # the repo as the Hub would serve it loads, with the weights the run saved
    add_to_hub_cache(offline_hub_cache, "me/t2v", commit.files)
    pushed = SoraPipeline.from_pretrained("me/t2v")
    saved = SoraPipeline.from_pretrained(out)
    for name, value in saved.transformer.state_dict().items():
        assert torch.equal(pushed.transformer.state_dict()[name], value), name


def test_dit_resume_continues_from_the_saved_step(dit_run, tmp_path):
    out, _, argv, _ = dit_run
    shutil.copytree(out, tmp_path / "dit")
    argv = [a if a != str(out) else str(tmp_path / "dit") for a in argv]
    argv[argv.index("--max_train_steps") + 1] = "4"
    resume = [*argv, "--gradient_accumulation_steps", "2", "--resume_from_checkpoint", "latest"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        _forbid_unpickling(monkeypatch)
        result = run(train_text_to_video.main, resume)
    assert result["first_step"] == 2 and result["global_step"] == 4
    assert (tmp_path / "dit" / "checkpoint-4" / "ema").is_dir()
    first = {r["step"]: r["loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "loss" in r}
    again = {r["step"]: r["loss"] for r in map(json.loads, open(tmp_path / "dit" / "metrics.jsonl")) if "loss" in r}
    assert sorted(again) == [1, 2, 3, 4] and again[3] == first[3]  # the very same step 3, to the bit


def test_dit_trains_from_a_cached_folder_of_videos(vae_run, tmp_path):
    data = write_dataset(tmp_path / "clips", 5, make_buckets(32, (9,), ("square", "portrait")), seed=3)
    cache = tmp_path / "cache"
    argv = [
        *COMMON_FLAGS, *DIT_FLAGS, "--vae", str(vae_run[0]), "--data_dir", str(data), "--cache_latents", str(cache),
        "--aspect_ratios", "square", "portrait", "--output_dir", str(tmp_path / "out"), "--max_train_steps", "2",
        "--validation_steps", "0", "--checkpointing_steps", "100", "--condition_probs", "0", "0", "0", "1", "1",
        "--cache_prompt_embeds",
    ]  # fmt: skip
    result = run(train_text_to_video.main, argv)
    assert math.isfinite(result["last_record"]["loss"])
    assert len(list(cache.glob("*.safetensors"))) == 5 and (cache / "info.json").is_file()
    captions = {json.loads(line)["text"] for line in open(data / "metadata.jsonl")}
    prompts = list((cache / "prompt_embeds").glob("*.safetensors"))
    assert 1 <= len(prompts) <= len(captions) + 1  # each caption seen (and "" of caption dropout) encoded once
    item = caches.CachedLatentDataset(cache, 5)[0]
    assert item["latents"].shape[:2] == (4, 3) and item["tail_length"] == 1 and item["caption"]
    _assert_readable_video(tmp_path / "out" / "validation" / "step-000002_extend.mp4", 64, 32)


def _without_architecture_flags(argv: list[str]) -> list[str]:
    flags = {f"--{key}" for key in train_text_to_video.TRANSFORMER_FLAGS}
    return [a for i, a in enumerate(argv) if a not in flags and (i == 0 or argv[i - 1] not in flags)]


def test_dit_trains_on_from_a_pretrained_transformer(dit_run, tmp_path):
    """--pretrained_transformer (a pipeline folder): the run starts from its weights, not a new model. With lr 0 the
    result is the pretrained transformer itself; with lr > 0 it moves away from it, same architecture."""
    out, _, argv, _ = dit_run
    argv = _without_architecture_flags([a for a in argv if a != str(out)])
    argv = [*argv, "--pretrained_transformer", str(out), "--validation_steps", "0", "--checkpointing_steps", "100"]
    argv[argv.index("--max_train_steps") + 1] = "2"
    argv.remove("--output_dir")
    before = DiTVideoTransformer3D.from_pretrained(out, subfolder="transformer")
    architecture = {k: v for k, v in before.config.items() if not k.startswith("_")}

    run(train_text_to_video.main, [*argv, "--output_dir", str(tmp_path / "lr0"), "--learning_rate", "0"])
    kept = DiTVideoTransformer3D.from_pretrained(tmp_path / "lr0", subfolder="transformer")
    assert {k: kept.config[k] for k in architecture} == architecture
    for key, value in before.state_dict().items():
        torch.testing.assert_close(kept.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)

    run(train_text_to_video.main, [*argv, "--output_dir", str(tmp_path / "lr"), "--learning_rate", "1e-2"])
    moved = DiTVideoTransformer3D.from_pretrained(tmp_path / "lr", subfolder="transformer")
    assert {k: moved.config[k] for k in architecture} == architecture
    changed = [k for k, v in before.state_dict().items() if not torch.allclose(moved.state_dict()[k], v, atol=1e-6)]
    assert len(changed) > len(before.state_dict()) // 2, f"{len(changed)} tensors changed"


def test_pretrained_transformer_that_does_not_fit_the_vae_is_refused(vae_run, tmp_path):
    other = DiTVideoTransformer3D(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, ffn_dim=48, num_layers=1, freq_dim=32,
        in_channels=8, out_channels=8, text_dim=384, per_frame_timesteps=True,
    )  # fmt: skip
    other.save_pretrained(tmp_path / "dit8")
    argv = _without_architecture_flags([*COMMON_FLAGS, *DIT_FLAGS, "--vae", str(vae_run[0])])
    argv += ["--output_dir", str(tmp_path / "out"), "--pretrained_transformer", str(tmp_path / "dit8")]
    message = r"does not fit --vae and --text_encoder: in_channels 8 \(needs 4\), out_channels 8 \(needs 4\)$"
    with pytest.raises(ValueError, match=message):
        run(train_text_to_video.main, argv)
    assert not (tmp_path / "out" / "checkpoint-1").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num_layers", "2"], "--pretrained_transformer fixes the architecture; drop --num_layers"),
        (["--transformer_config", "c.json", "--patch_size", "1", "2", "2"],
         "--pretrained_transformer fixes the architecture; drop --transformer_config, --patch_size"),
    ],
)  # fmt: skip
def test_pretrained_transformer_refuses_architecture_flags(flags, message, tmp_path):
    argv = [*COMMON_FLAGS, "--vae", "v", "--output_dir", str(tmp_path), "--pretrained_transformer", "p", *flags]
    with pytest.raises(ValueError, match=message):
        train_text_to_video.parse_args(argv)


def test_push_to_hub_fails_early_with_a_message(vae_run, tmp_path, hub_push):
    hub_push.refuse_status = 401  # not logged in
    argv = [*COMMON_FLAGS, *VAE_FLAGS, "--output_dir", str(tmp_path), "--push_to_hub", "--hub_model_id", "me/vae"]
    message = "--push_to_hub: cannot create the Hub repo 'me/vae' \\(HfHubHTTPError: Client error '401 Unauthorized'"
    with pytest.raises(SystemExit, match=message):
        run(train_vae.main, argv)
    assert not list(tmp_path.glob("checkpoint-*")) and hub_push.commits == []


def _assert_no_training_state(files: set[str]) -> None:
    """What `upload_to_hub` leaves out of a push: checkpoints (also half-written ones) and logs."""
    assert not [f for f in files if f.startswith(("checkpoint-", ".checkpoint-", "logs/"))], sorted(files)


def test_push_to_hub_uploads_the_model_with_a_model_card(tmp_path, hub_push):
    argv = [*COMMON_FLAGS, *VAE_FLAGS, "--output_dir", str(tmp_path), "--max_train_steps", "2"]
    run(train_vae.main, [*argv, "--push_to_hub", "--hub_model_id", "me/vae"])

    commit = hub_push.only_commit("me/vae")
    assert (tmp_path / "checkpoint-2").is_dir()
    _assert_no_training_state(set(commit.files))
    assert {"README.md", "config.json", "diffusion_pytorch_model.safetensors"} <= set(commit.files)
    assert commit.files["README.md"] == (tmp_path / "README.md").read_bytes()
    card = commit.card()
    assert card.data.license == "apache-2.0" and card.data.library_name == "diffusers"
    assert {"sora_diffusers", "video-autoencoder"} <= set(card.data.tags)
    assert 'SpacetimeVAE.from_pretrained("me/vae")' in card.text
    assert "| `--base_dim` | `8` |" in card.text and "(training, step 2)" in card.text
    assert card.data.pipeline_tag is None and "diffusers-training" in card.data.tags  # a VAE is no pipeline
    assert str(tmp_path) not in card.text  # local paths shown by their name only
    assert "validation/step-000002_0.mp4" in card.text and "validation/step-000002_0.mp4" in commit.files


# ---------------------------------------------------------------------------------------------------------------------
# Training latents == the pipeline's conditioning latents
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tail_length", [1, 2])
def test_training_condition_latents_match_the_pipeline(vae_run, tail_length):
    vae = SpacetimeVAE.from_pretrained(vae_run[0]).eval()
    pipe = SoraPipeline(None, None, None, vae, None)
    video = torch.rand(1, 3, 13, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # 4 latent frames
    latents = conditioning_sampler.encode_clips(vae, video)

    clip, latent_index, video_start = pipe.prepare_condition(FrameCondition(video[:, :, :5], 0), 13, 32, 32)
    head = pipe.encode_condition(clip, latent_index, video_start, 1.0, 1)
    assert head.latent_index == 0
    torch.testing.assert_close(head.latents, latents[:, :, :2], rtol=1e-5, atol=1e-5)  # the clip's own first latents

    start = tail_clip_start(4, tail_length, 4)
    clip, latent_index, video_start = pipe.prepare_condition(FrameCondition(video[:, :, start:], start), 13, 32, 32)
    tail = pipe.encode_condition(clip, latent_index, video_start, 1.0, 1)
    assert tail.latent_index == 4 - tail_length
    torch.testing.assert_close(
        conditioning_sampler.encode_tails(vae, video, tail_length), tail.latents, rtol=1e-5, atol=1e-5
    )


# ---------------------------------------------------------------------------------------------------------------------
# Bucketing
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop_last", [False, True])
def test_bucket_batch_sampler_keeps_one_bucket_per_batch(drop_last):
    bucket_ids = np.random.default_rng(0).integers(0, 4, size=103)
    sampler = BucketBatchSampler(bucket_ids, batch_size=5, drop_last=drop_last, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(len({bucket_ids[i] for i in batch}) == 1 for batch in batches)
    seen = sorted(i for batch in batches for i in batch)
    if drop_last:
        assert all(len(batch) == 5 for batch in batches) and len(set(seen)) == len(seen)
    else:
        assert seen == list(range(103))
    sampler.set_epoch(1)
    assert list(sampler) != batches  # reshuffled per epoch ...
    sampler.set_epoch(0)
    assert list(sampler) == batches  # ... and reproducible


def test_nearest_bucket_and_resize_crop():
    buckets = make_buckets(64, (9, 17))  # landscape 64x32, portrait 32x64, square 64x64
    assert buckets[nearest_bucket(1920, 1080, 40, buckets)] == Bucket(64, 32, 17)
    assert buckets[nearest_bucket(300, 500, 12, buckets)] == Bucket(32, 64, 9)
    assert nearest_bucket(100, 100, 5, buckets) is None  # shorter than every bucket
    video = np.random.default_rng(0).integers(0, 256, size=(9, 90, 160, 3), dtype=np.uint8)
    clip = datasets.resize_crop(video, 64, 32)
    assert clip.shape == (3, 9, 32, 64) and clip.min() >= -1 and clip.max() <= 1


def test_video_folder_reads_txt_captions_and_csv_metadata(tmp_path):
    import csv

    buckets = make_buckets(32, (5,), ("square", "portrait"))
    data = write_dataset(tmp_path, 3, make_buckets(32, (9,), ("square", "portrait")), seed=1)
    rows = [json.loads(line) for line in open(data / "metadata.jsonl")]
    (data / "metadata.jsonl").unlink()  # now: mp4 + same-name .txt, sizes read from the file headers
    dataset = datasets.VideoFolderDataset(data, buckets)
    assert dataset.captions == [row["text"] for row in rows]
    for index in range(3):
        bucket = buckets[dataset.bucket_ids[index]]
        assert (bucket.width, bucket.height) == (rows[index]["spec"]["width"], rows[index]["spec"]["height"])
        assert dataset[index]["video"].shape == (3, 5, bucket.height, bucket.width)

    with open(data / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["file_name", "text"])
        writer.writeheader()
        writer.writerow({"file_name": "clip_000001.mp4", "text": "from the csv"})
    dataset = datasets.VideoFolderDataset(data, buckets)
    assert len(dataset) == 1 and dataset.captions == ["from the csv"]


def test_shapes_dataset_bucket_ids_match_the_rendered_clips():
    buckets = make_buckets(32, (5, 9))
    dataset, bucket_ids = datasets.shapes_dataset(12, buckets, seed=0, group_size=3)
    for index in (0, 4, 11):
        bucket = buckets[bucket_ids[index]]
        assert dataset[index]["video"].shape == (3, bucket.num_frames, bucket.height, bucket.width)


def test_loss_curve_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    path = plot_curve(list(range(1, 50)), [1.0 / s for s in range(1, 50)], tmp_path / "loss.png")
    _assert_readable_png(path)


# ---------------------------------------------------------------------------------------------------------------------
# The condition sampler
# ---------------------------------------------------------------------------------------------------------------------


def test_condition_modes_follow_their_probabilities():
    probs = {"none": 0.1, "image_head": 0.2, "clip_head": 0.3, "clip_tail": 0.25, "head_tail": 0.15}
    rng = np.random.default_rng(0)
    p = normalize_condition_probs(probs)
    modes = [sample_condition_mask(9, rng, p)[0] for _ in range(4000)]
    for mode in CONDITION_MODES:
        assert abs(modes.count(mode) / len(modes) - probs[mode]) < 0.03, mode


@pytest.mark.parametrize("num_latent_frames", [2, 3, 5, 9])
def test_condition_masks_have_the_shape_of_their_mode(num_latent_frames):
    T, rng = num_latent_frames, np.random.default_rng(1)
    for mode in CONDITION_MODES:
        for _ in range(50):
            drawn, mask = sample_condition_mask(T, rng, {mode: 1.0})
            assert mask.shape == (T,) and mask.dtype == torch.bool and not mask.all()
            head = int(mask.int().cumprod(0).sum())  # leading True frames
            tail = tail_length_of(mask)
            assert head + tail == int(mask.sum()), "only a head and a tail are ever given"
            expected = {
                "none": (head, tail) == (0, 0),
                "image_head": (head, tail) == (1, 0),
                "clip_head": head >= 2 and tail == 0,
                "clip_tail": head == 0 and tail >= 1,
                "head_tail": head >= 1 and tail >= 1,
            }
            assert expected[drawn], (mode, drawn, mask)
            if T >= 3:
                assert drawn == mode  # every mode fits from 3 latent frames on
    assert sample_condition_mask(2, rng, {"clip_head": 1.0})[0] == "image_head"
    assert sample_condition_mask(2, rng, {"head_tail": 1.0})[0] == "clip_tail"
    assert sample_condition_mask(1, rng, {"clip_tail": 1.0})[0] == "none"


def test_condition_mask_with_a_fixed_tail():
    rng = np.random.default_rng(2)
    for _ in range(50):
        mode, mask = sample_condition_mask(6, rng, {"clip_tail": 1, "head_tail": 1}, tail_length=3)
        assert tail_length_of(mask) == 3 and mask[:3].any() == (mode == "head_tail")
    assert sample_condition_mask(6, rng, {"head_tail": 1}, tail_length=5)[0] == "clip_tail"  # no room for a head
    with pytest.raises(ValueError):
        sample_condition_mask(6, rng, None, tail_length=6)


def test_tail_clip_start_matches_the_vae_grouping():
    # latent j >= 1 covers pixel frames 4j-3 .. 4j: the last 2 of 5 latents start at pixel 9 of 17
    assert tail_clip_start(5, 2, 4) == 9 and tail_clip_start(5, 4, 4) == 1
    with pytest.raises(ValueError):
        tail_clip_start(5, 5, 4)
    with pytest.raises(ValueError):
        normalize_condition_probs([0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        normalize_condition_probs({"everything": 1.0})


def test_random_crop_windows_stay_inside_the_frame_and_are_seeded():
    video = torch.arange(2 * 3 * 5 * 64 * 96, dtype=torch.float32).reshape(2, 3, 5, 64, 96)

    crops = [autoencoder.random_crop(video, 32, np.random.default_rng(seed)) for seed in (0, 0, 1)]

    assert crops[0].shape == (2, 3, 5, 32, 32)
    assert torch.equal(crops[0], crops[1]) and not torch.equal(crops[0], crops[2])
    top, left = divmod(int(crops[0][0, 0, 0, 0, 0]), 96)  # the crop's first pixel gives its window
    assert torch.equal(crops[0], video[..., top : top + 32, left : left + 32])
    assert autoencoder.random_crop(video, 128, np.random.default_rng(0)).shape == video.shape  # larger than the frame
    assert autoencoder.random_crop(video, None, np.random.default_rng(0)) is video


def test_gradient_difference_scores_edges_not_offsets():
    """--gradient_weight's term: 0 for a reconstruction off by a constant; for a step edge blurred over 3 pixel gaps,
    the mean L1 distance between the two images' gradients, which is larger than the reconstruction's own L1."""
    target = torch.zeros(1, 1, 1, 4, 8)
    target[..., 4:] = 1.0  # a vertical edge: one horizontal step of 1 per row
    assert autoencoder.gradient_difference(torch.full_like(target, 0.3)).item() == 0.0  # error = recon - target

    blurred = target.clone()
    blurred[..., 3], blurred[..., 4] = 1 / 3, 2 / 3  # the step spread over 3 pixel gaps of 1/3 each
    # horizontal gradients per row: target (0, 0, 0, 1, 0, 0, 0), blurred (0, 0, 1/3, 1/3, 1/3, 0, 0): 4/3 over 7 gaps
    expected = (4 / 3) / 7
    assert abs(autoencoder.gradient_difference(blurred - target).item() - expected) < 1e-6
    assert (blurred - target).abs().mean().item() < expected  # L1 sees the blur less than the gradient term does


def test_vae_init_passes_the_input_to_the_latents_and_starts_with_a_narrow_posterior():
    """On shapes-world clips, the default init's latents barely depend on the clip (measured 0.05-0.10 of their spread
    for seeds 0-2 with this 5-level config), He init's do (0.17-0.50)."""
    from sora_diffusers.data import render_clip, sample_clip_spec

    torch.manual_seed(0)
    config = dict(
        base_dim=8, dim_mult=(1, 2, 4, 4, 4), temporal_downsample=(0, 1, 1, 0), latent_channels=4, num_res_blocks=1,
        latents_mean=None, latents_std=None,
    )  # fmt: skip
    clips = [torch.from_numpy(render_clip(sample_clip_spec(i, 64, 64, 5))).permute(3, 0, 1, 2)[None] for i in (3, 4)]
    clips = [clip.float() / 127.5 - 1 for clip in clips]

    def input_dependence(vae):  # |difference| of the two clips' latent means relative to their spread
        with torch.no_grad():
            a, b = (vae.encode(clip).latent_dist.mean for clip in clips)
        return float((a - b).abs().mean() / a.std())

    default = SpacetimeVAE(**config).eval()
    initialised = SpacetimeVAE(**config).eval()
    autoencoder.init_convs_kaiming_(initialised)
    autoencoder.init_posterior_logvar_(initialised, -6.0)

    assert input_dependence(default) < 0.12 and input_dependence(initialised) > 0.3
    with torch.no_grad():
        logvar = initialised.encode(clips[0]).latent_dist.logvar
    torch.testing.assert_close(logvar, torch.full_like(logvar, -6.0))
    biases = [m.bias.detach() for m in initialised.encoder.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(float(b.abs().max()) == 0 for b in biases)
