"""What an 8x-space VAE would cost the default model's DiT: a training and a sampling step at the 16x and 8x grids.

A 33 x 256 x 256 clip is 9 x 16 x 16 latents under the shipped 16x VAE (576 tokens with patch 1x2x2) and 9 x 32 x 32
under an 8x one (2,304 tokens). The DiT is the embedded model's architecture (6 layers x 256, fresh weights); a step is
forward, flow-matching MSE, backward and AdamW, as in `examples/train_text_to_video.py`; a sampling step is the
pipeline's forward under guidance (one clip, the conditional and unconditional halves batched, no gradients), which the
default 50 steps repeat for every generation, the demo's included. Runs alternate between the grids so machine noise
hits both alike; the table reports medians and the ratio to the 16x grid.

    python benchmarks/bench_token_budget.py                      # CPU, batch 8, as the shipped model was trained
    python benchmarks/bench_token_budget.py --device cuda --batch_size 16
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from sora_diffusers import DiTVideoTransformer3D
from sora_diffusers.default_model import default_model_path
from sora_diffusers.training import add_noise, flow_matching_loss, flow_target, sigmas_to_timesteps


GRIDS = {"16x space (shipped VAE)": (9, 16, 16), "8x space": (9, 32, 32)}  # latent (frames, height, width)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per grid (after one warm-up step each)")
    p.add_argument("--text_tokens", type=int, default=32)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1:
        raise ValueError(f"--batch_size and --repeats must be >= 1, got {args.batch_size} and {args.repeats}")
    return args


def train_step(model, optimizer, latents: torch.Tensor, text: torch.Tensor) -> None:
    """The training script's step without conditioning: noise, predict the velocity, loss, backward, AdamW."""
    sigmas = torch.rand(latents.shape[0], device=latents.device)
    noise = torch.randn_like(latents)
    pred = model(add_noise(latents, noise, sigmas), sigmas_to_timesteps(sigmas), text).sample
    flow_matching_loss(pred, flow_target(latents, noise)).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def sampling_step(model, latents: torch.Tensor, text: torch.Tensor) -> None:
    """One denoising step of a guided generation: the transformer on [unconditional, conditional] of one clip."""
    model(torch.cat([latents[:1]] * 2), torch.full((2,), 500.0, device=latents.device), torch.cat([text[:1]] * 2))


def main(argv=None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    torch.manual_seed(0)
    config = DiTVideoTransformer3D.load_config(str(Path(default_model_path()) / "transformer"))
    model = DiTVideoTransformer3D.from_config(config).to(args.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    patch = model.config.patch_size
    text = torch.randn(args.batch_size, args.text_tokens, model.config.text_dim, device=args.device)
    inputs = {
        name: torch.randn(args.batch_size, model.config.in_channels, *grid, device=args.device)
        for name, grid in GRIDS.items()
    }
    steps = {
        "train": lambda x: train_step(model, optimizer, x, text),
        "sample": lambda x: sampling_step(model, x, text),
    }
    times = {kind: {name: [] for name in GRIDS} for kind in steps}
    for repeat in range(args.repeats + 1):
        for kind, step in steps.items():
            for name, latents in inputs.items():
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                step(latents)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                if repeat:  # the first step of each kind and grid is a warm-up
                    times[kind][name].append(time.perf_counter() - start)
    medians = {kind: {name: statistics.median(t) for name, t in by_grid.items()} for kind, by_grid in times.items()}
    train, sample = medians["train"], medians["sample"]
    base = {kind: by_grid[next(iter(GRIDS))] for kind, by_grid in medians.items()}
    print(
        f"\nDiT training step (batch {args.batch_size}) and sampling step, {args.device}, median of {args.repeats}\n"
    )
    print("| latent grid | tokens per clip | s / training step | ratio | s / sampling step | ratio | 50 steps (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, grid in GRIDS.items():
        tokens = grid[0] // patch[0] * (grid[1] // patch[1]) * (grid[2] // patch[2])
        print(
            f"| {name} | {tokens} | {train[name]:.2f} | {train[name] / base['train']:.2f} | {sample[name]:.3f} | "
            f"{sample[name] / base['sample']:.2f} | {50 * sample[name]:.1f} |"
        )
    return medians


if __name__ == "__main__":
    main()
