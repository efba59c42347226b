"""diffusers' caches (FirstBlockCache, MagCache, TaylorSeer, PyramidAttentionBroadcast, FasterCache) enabled on the
transformer and run through `pipe(...)`."""

import re

import pytest
import torch
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)

from sora_diffusers import SoraPipeline

from .conftest import HEIGHT, WIDTH, seed


NUM_FRAMES = 9
STEPS = 8  # enough steps for every cache to both compute and reuse
GUIDED_CALLS = 2 * STEPS  # with a cache, "cond" and "uncond" are separate transformer calls


@pytest.fixture
def pipe(fresh_components) -> SoraPipeline:
    """Own copies of the models: the caches install hooks on them."""
    pipe = SoraPipeline(**fresh_components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=NUM_FRAMES)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: SoraPipeline) -> torch.Tensor:
    prompt = "a red circle moving to the right"
    return pipe(prompt, num_inference_steps=STEPS, generator=seed(0), output_type="pt").frames


def count_block_work(pipe: SoraPipeline) -> list[int]:
    """Counts the times the second block really computes (a skipped or predicted layer never reaches its projections:
    the cache hooks replace `forward`, so a hook on the block itself would fire either way)."""
    calls = []
    pipe.transformer.blocks[1].attn1.to_q.register_forward_pre_hook(lambda module, args: calls.append(1))
    return calls


def calibrate_mag_ratios(pipe: SoraPipeline, capsys) -> list[float]:
    """MagCache's calibration as diffusers documents it: run once with `calibrate=True` and read the printed ratios."""
    pipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=STEPS))
    generate(pipe)
    pipe.transformer.disable_cache()
    printed = re.findall(r"^\[([-0-9., e]+)\]$", capsys.readouterr().out, flags=re.MULTILINE)
    assert len(printed) == 2  # one list per cache context: "cond" and "uncond"
    ratios = [float(value) for value in printed[0].split(",")]
    assert len(ratios) == STEPS and ratios[0] == 1.0
    return ratios


CACHES = {
    "first_block": lambda ratios: FirstBlockCacheConfig(threshold=0.2),
    "mag": lambda ratios: MagCacheConfig(threshold=0.5, num_inference_steps=STEPS, mag_ratios=ratios),
    "taylorseer": lambda ratios: TaylorSeerCacheConfig(
        cache_interval=2, disable_cache_before_step=2, taylor_factors_dtype=torch.float32
    ),
}


@torch.no_grad()
@pytest.mark.parametrize("name", CACHES)
def test_cache_runs_through_the_pipeline(pipe, capsys, name):
    """Each cache runs inside `pipe(...)` (no "No cache context is set"), skips work, and changes the video only a
    little; the next call starts from a clean cache state; disabled again, the output is the uncached one exactly."""
    uncached = generate(pipe)
    ratios = calibrate_mag_ratios(pipe, capsys) if name == "mag" else None
    calls = count_block_work(pipe)

    pipe.transformer.enable_cache(CACHES[name](ratios))
    cached = generate(pipe)
    assert 0 < len(calls) < GUIDED_CALLS  # some calls of the block were skipped or predicted
    again = generate(pipe)  # the pipeline resets the hooks' state after each call
    pipe.transformer.disable_cache()

    assert cached.shape == uncached.shape == (1, NUM_FRAMES, 3, HEIGHT, WIDTH)
    assert torch.isfinite(cached).all()
    difference = (cached - uncached).abs()
    assert 0 < difference.mean() < 0.02 and difference.max() < 0.2, (difference.mean(), difference.max())
    torch.testing.assert_close(again, cached, atol=0, rtol=0)
    torch.testing.assert_close(generate(pipe), uncached, atol=0, rtol=0)


@torch.no_grad()
def test_cache_that_recomputes_every_step_matches_the_uncached_video(pipe):
    """FirstBlockCache with threshold 0 computes every block of the "cond" and "uncond" calls: the video is the
    uncached one up to the rounding of batched vs separate guidance calls."""
    uncached = generate(pipe)
    calls = count_block_work(pipe)
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.0))
    cached = generate(pipe)
    pipe.transformer.disable_cache()
    assert len(calls) == GUIDED_CALLS
    torch.testing.assert_close(cached, uncached, atol=1e-5, rtol=0)


def test_taylorseer_without_module_patterns_caches_the_attention_layers(pipe):
    """diffusers' default TaylorSeer patterns match modules named `attn`; ours (named like Wan's) are attn1/attn2."""
    pipe.transformer.enable_cache(TaylorSeerCacheConfig())
    hooked = [
        name
        for name, module in pipe.transformer.named_modules()
        if getattr(module, "_diffusers_hook", None) is not None and module._diffusers_hook.hooks
    ]
    pipe.transformer.disable_cache()
    num_layers = len(pipe.transformer.blocks)
    assert hooked == [f"blocks.{i}.attn{j}" for i in range(num_layers) for j in (1, 2)]


# PyramidAttentionBroadcast and FasterCache keep one state for the transformer: guidance stays one batched call
ALL_STEPS = (-1, 1001)  # timestep ranges that let the caches act at every step
ONE_STATE_CACHES = {
    "pyramid_attention_broadcast": lambda pipe: PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=2,
        spatial_attention_timestep_skip_range=ALL_STEPS,
        current_timestep_callback=lambda: pipe.current_timestep,
    ),
    "faster_cache": lambda pipe: FasterCacheConfig(
        spatial_attention_block_skip_range=2,
        spatial_attention_timestep_skip_range=ALL_STEPS,
        unconditional_batch_skip_range=2,
        unconditional_batch_timestep_skip_range=ALL_STEPS,
        current_timestep_callback=lambda: pipe.current_timestep,
    ),
}


@torch.no_grad()
@pytest.mark.parametrize(
    "name, block_batches",
    [("pyramid_attention_broadcast", [2] * STEPS), ("faster_cache", [2, 1] * (STEPS // 2))],
)
def test_one_state_cache_gets_one_batched_guidance_call(pipe, name, block_batches):
    """One transformer call per step with both halves of the guidance batch, unconditional first; FasterCache drops
    the unconditional half every other step (approximating it from the conditional one), which it can only do in that
    batch; the second block's self-attention computes fewer rows than the uncached 2 per step; the video changes only
    a little, the next call starts from a clean state, and disabled again the output is exact."""
    uncached = generate(pipe)
    rows, calls, blocks = [], [], []
    hooks = [
        pipe.transformer.blocks[1].attn1.to_q.register_forward_pre_hook(lambda m, args: rows.append(len(args[0]))),
        pipe.transformer.blocks[0].register_forward_pre_hook(lambda m, args: blocks.append(len(args[0]))),
        pipe.transformer.register_forward_pre_hook(  # text tokens per half: the empty negative prompt has fewer
            lambda module, args, kwargs: calls.append(kwargs["encoder_attention_mask"].sum(1).tolist()),
            with_kwargs=True,
        ),
    ]
    pipe.transformer.enable_cache(ONE_STATE_CACHES[name](pipe))
    cached = generate(pipe)
    for hook in hooks:
        hook.remove()
    assert len(calls) == STEPS and all(uncond < cond for uncond, cond in calls), calls  # unconditional half first
    assert blocks == block_batches and 0 < sum(rows) < 2 * STEPS, (blocks, rows)
    again = generate(pipe)
    pipe.transformer.disable_cache()

    assert cached.shape == uncached.shape and torch.isfinite(cached).all()
    difference = (cached - uncached).abs()
    assert 0 < difference.mean() < 0.02 and difference.max() < 0.2, (difference.mean(), difference.max())
    torch.testing.assert_close(again, cached, atol=0, rtol=0)
    torch.testing.assert_close(generate(pipe), uncached, atol=0, rtol=0)
