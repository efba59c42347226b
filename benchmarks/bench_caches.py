"""diffusers' caches on the embedded model: FirstBlockCache, MagCache, TaylorSeer, PyramidAttentionBroadcast and
FasterCache against no cache.

Text-to-video at the model's size (33 x 256 x 256), guidance 5, the same seed for every run, one CPU thread by
default. For each prompt the settings run one after the other (so machine noise hits them alike), each timed on
its denoising call (prompt encoding included, VAE decode excluded) and divided by the steps: wall-clock seconds, and
the process's CPU seconds, which other jobs on a shared machine disturb less. Then every output is decoded, compared
with the uncached video of its prompt (mean absolute difference of the frames in [0, 1]) and scored by
`sora_diffusers.eval`.

    python benchmarks/bench_caches.py                              # 3 prompts, the pipeline's default 50 steps
    python benchmarks/bench_caches.py --num_inference_steps 20 --num_prompts 2

Caches (diffusers' defaults unless noted): FirstBlockCache at thresholds 0 (never skips: the cost of running guidance
as two calls, as every cache does, instead of one batched call), 0.05 (the default) and 0.2; MagCache(threshold=0.06,
max_skip_steps=3, retention_ratio=0.2) with `mag_ratios` calibrated on this model as diffusers documents it (one run
of the first prompt with `MagCacheConfig(calibrate=True)`; the printed "cond" and "uncond" ratio lists are averaged);
TaylorSeer(cache_interval=5, disable_cache_before_step=3, max_order=1, float32 factors), which on this model caches
the attention layers `blocks.N.attn1` / `attn2` (see `DiTVideoTransformer3D.enable_cache`);
PyramidAttentionBroadcast(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 800)) and
FasterCache(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 681),
attention_weight_callback=0.3), the settings of diffusers' documentation, both reading `pipe.current_timestep`.
"attention computed" is the share of the last block's self-attention calls that really ran: with FirstBlockCache,
MagCache or TaylorSeer guidance is two transformer calls per step ("cond" and "uncond"), without a cache or with
PyramidAttentionBroadcast or FasterCache a single batched call, counted as one.
"""

import argparse
import ast
import contextlib
import inspect
import io
import re
import time

import numpy as np
import torch
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
)

from sora_diffusers import SoraPipeline
from sora_diffusers.data import canonical_caption
from sora_diffusers.eval import evaluate_many


LABELS = [
    {"color": "red", "shape": "circle", "motion": "right"},
    {"color": "blue", "shape": "square", "motion": "left"},
    {"color": "green", "shape": "triangle", "motion": "down"},
    {"color": "yellow", "shape": "circle", "motion": "up"},
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_inference_steps", type=int, default=None, help="default: the pipeline's (50)")
    p.add_argument("--num_prompts", type=int, default=3, help=f"1 to {len(LABELS)}")
    p.add_argument("--guidance_scale", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args(argv)
    if not 1 <= args.num_prompts <= len(LABELS):
        raise ValueError(f"--num_prompts must be 1 to {len(LABELS)}, got {args.num_prompts}")
    return args


def calibrate_mag_ratios(pipe: SoraPipeline, steps: int, **call) -> list[float]:
    """diffusers' MagCache calibration: a run with `calibrate=True` prints one ratio list per cache context."""
    pipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=steps))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        pipe(**call, num_inference_steps=steps, output_type="latent")
    pipe.transformer.disable_cache()
    lists = [ast.literal_eval(line) for line in re.findall(r"^\[[-0-9., e]+\]$", printed.getvalue(), re.MULTILINE)]
    if len(lists) != 2 or any(len(ratios) != steps for ratios in lists):
        raise RuntimeError(f"expected the 'cond' and 'uncond' ratio lists of {steps} steps, got {lists}")
    return np.mean(lists, axis=0).tolist()


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = SoraPipeline.from_default_model()
    pipe.set_progress_bar_config(disable=True)
    default_steps = inspect.signature(SoraPipeline.__call__).parameters["num_inference_steps"].default
    steps = args.num_inference_steps or default_steps
    labels = LABELS[: args.num_prompts]
    prompts = [canonical_caption(label["color"], label["shape"], label["motion"]) for label in labels]
    call = {"guidance_scale": args.guidance_scale, "num_inference_steps": steps}

    mag_ratios = calibrate_mag_ratios(
        pipe, steps, prompt=prompts[0], guidance_scale=args.guidance_scale, generator=torch.manual_seed(args.seed)
    )
    caches = {
        "none": None,
        "FirstBlockCache(threshold=0)": FirstBlockCacheConfig(threshold=0.0),
        "FirstBlockCache(threshold=0.05)": FirstBlockCacheConfig(threshold=0.05),
        "FirstBlockCache(threshold=0.2)": FirstBlockCacheConfig(threshold=0.2),
        "MagCache": MagCacheConfig(num_inference_steps=steps, mag_ratios=mag_ratios),
        "TaylorSeer": TaylorSeerCacheConfig(taylor_factors_dtype=torch.float32),
        "PyramidAttentionBroadcast": PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=lambda: pipe.current_timestep,
        ),
        "FasterCache": FasterCacheConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(-1, 681),
            current_timestep_callback=lambda: pipe.current_timestep,
            attention_weight_callback=lambda _: 0.3,
        ),
    }
    batched = {"none", "PyramidAttentionBroadcast", "FasterCache"}  # one transformer call per step

    attention_calls = []
    pipe.transformer.blocks[-1].attn1.to_q.register_forward_pre_hook(lambda module, args: attention_calls.append(1))
    seconds = dict.fromkeys(caches, 0.0)
    cpu_seconds = dict.fromkeys(caches, 0.0)
    computed = dict.fromkeys(caches, 0)
    latents = {name: [] for name in caches}
    for prompt in prompts:
        for name, config in caches.items():
            if config is not None:
                pipe.transformer.enable_cache(config)
            attention_calls.clear()
            start, cpu_start = time.perf_counter(), time.process_time()
            out = pipe(prompt, **call, generator=torch.manual_seed(args.seed), output_type="latent").frames
            seconds[name] += time.perf_counter() - start
            cpu_seconds[name] += time.process_time() - cpu_start
            computed[name] += len(attention_calls)
            latents[name].append(out)
            if config is not None:
                pipe.transformer.disable_cache()
            print(f"{prompt!r} {name}: {seconds[name]:.1f} s, {cpu_seconds[name]:.1f} CPU s so far", flush=True)

    rows = []
    with torch.no_grad():
        videos = {
            name: [pipe.video_processor.postprocess_video(pipe.decode_latents(z), output_type="np")[0] for z in zs]
            for name, zs in latents.items()
        }  # (T, H, W, 3) in [0, 1]
    for name in caches:
        scores = evaluate_many(videos[name], labels)
        calls = steps * len(prompts) * (1 if name in batched else 2)
        rows.append(
            {
                "cache": name,
                "s_per_step": seconds[name] / (steps * len(prompts)),
                "ratio": seconds[name] / seconds["none"],
                "cpu_s_per_step": cpu_seconds[name] / (steps * len(prompts)),
                "cpu_ratio": cpu_seconds[name] / cpu_seconds["none"],
                "attention_computed": computed[name] / calls,
                "mad": float(np.mean([np.abs(v - u).mean() for v, u in zip(videos[name], videos["none"])])),
                **{key: scores[f"{key}_accuracy"] for key in ("color", "shape", "motion")},
                "shape_lenient": scores["shape_accuracy_lenient"],
                "permanence": scores["permanence"],
            }
        )

    print(
        f"\n{len(prompts)} prompts, {steps} steps, guidance {args.guidance_scale}, {pipe.config.default_num_frames} x "
        f"{pipe.config.default_height} x {pipe.config.default_width}, seed {args.seed}, {args.threads} thread(s)"
    )
    print(f"MagCache mag_ratios (calibrated): {[round(r, 4) for r in mag_ratios]}\n")
    print("| cache | s / step | ratio | CPU s / step | CPU ratio | attention computed | mean abs diff vs none "
          "| colour | shape | shape (lenient) | motion | permanence |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['cache']} | {r['s_per_step']:.3f} | {r['ratio']:.2f} | {r['cpu_s_per_step']:.3f} | "
            f"{r['cpu_ratio']:.2f} | {r['attention_computed']:.2f} | {r['mad']:.4f} | {r['color']:.2f} | "
            f"{r['shape']:.2f} | {r['shape_lenient']:.2f} | {r['motion']:.2f} | {r['permanence']:.2f} |"
        )
    return rows


if __name__ == "__main__":
    main()
