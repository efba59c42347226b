"""How well a pipeline's transformer denoises the held-out scenes in one step, at each noise level.

    python benchmarks/eval_denoising_by_sigma.py                              # the embedded model, 8 clips
    python benchmarks/eval_denoising_by_sigma.py --model ../runs/pipe --sigmas 0.9 0.98 0.995

Each scene (those of `eval_default_model.py`: same seeds, 33 x 256 x 256) is encoded by the pipeline's VAE, noised to
x_t = (1 - sigma) x0 + sigma * noise at every `--sigmas` value, and denoised in one step with its caption:
x0_hat = x_t - sigma * v. The table gives the error MSE(x0_hat, x0) / Var(x0) over all latent values ("latents") and
over the token means ("layout": each token's latent pixels averaged, one value per channel and token, which is where
the object is); a sampler decides the layout at high sigma, so a model that is lost there draws fragments or objects
that jump, however well it denoises at 0.5. "Layout signal" is the token means' variance within each frame and
channel times the latent pixels a token holds: noise of std sigma averages down by that count over a token, so at one
sigma a VAE with twice the layout signal shows the layout as a VAE with half of it does at a lower sigma, and the same
training shift spends fewer of its steps where that VAE's layout is decided.
"""

import argparse

import numpy as np
import torch
from eval_default_model import held_out_scenes
from tqdm.auto import tqdm

from sora_diffusers import SoraPipeline
from sora_diffusers.default_model import load_default_pipeline
from sora_diffusers.pipelines.conditioning import encode_clip
from sora_diffusers.training import add_noise, sigmas_to_timesteps


DEFAULT_SIGMAS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.995)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="pipeline folder (default: the embedded model)")
    p.add_argument("--num_clips", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="scenes as eval_default_model.py's; also seeds the noise")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS))
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--num_frames", type=int, default=33)
    p.add_argument("--torch_threads", type=int, help="torch intra-op threads (default: torch's)")
    args = p.parse_args(argv)
    for name in ("num_clips", "height", "width", "num_frames", "torch_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    bad = [s for s in args.sigmas if not 0.0 < s < 1.0]
    if bad:
        p.error(f"--sigmas must lie in (0, 1), got {bad}")
    # held_out_scenes reads the scene flags of eval_default_model.py; these are its defaults (one object, 8 directions)
    args.objects, args.motions, args.occluder = "one", "directional", "sampled"
    return args


def token_means(latents: torch.Tensor, patch_size) -> torch.Tensor:
    """(B, C, T, H, W) -> each DiT token's latent pixels averaged: (B, C, T / p_t, H / p_h, W / p_w)."""
    return torch.nn.functional.avg_pool3d(latents, tuple(patch_size))


@torch.no_grad()
def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    pipe = load_default_pipeline(SoraPipeline, model_path=args.model)
    transformer, patch = pipe.transformer, tuple(pipe.transformer.config.patch_size)
    size = {"height": args.height, "width": args.width, "num_frames": args.num_frames}
    generator = torch.Generator().manual_seed(args.seed)
    errors = {part: {s: [] for s in args.sigmas} for part in ("latents", "layout")}
    layout_signal = []
    for scene in tqdm(held_out_scenes(args, size), desc="clips", total=args.num_clips):
        video = torch.from_numpy(scene["rendered"]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        x0 = encode_clip(pipe.vae, video)
        layout = token_means(x0, (1, *patch[1:]))
        layout_signal.append(layout.var(dim=(3, 4)).mean().item() * patch[1] * patch[2])  # per frame and channel
        embeds, mask, _, _ = pipe.encode_prompt(scene["prompt"], do_classifier_free_guidance=False)
        for sigma in args.sigmas:
            noise = torch.randn(x0.shape, generator=generator)
            x_t = add_noise(x0, noise, sigma)
            timestep = sigmas_to_timesteps(
                torch.full((1, x0.shape[2]), sigma), pipe.scheduler.config.num_train_timesteps
            )
            velocity = transformer(x_t, timestep, embeds, encoder_attention_mask=mask).sample
            x0_hat = x_t - sigma * velocity
            errors["latents"][sigma].append(((x0_hat - x0) ** 2).mean().item() / x0.var().item())
            layout_hat = token_means(x0_hat, (1, *patch[1:]))
            errors["layout"][sigma].append(((layout_hat - layout) ** 2).mean().item() / layout.var().item())
    means = {part: {s: float(np.mean(v)) for s, v in by_sigma.items()} for part, by_sigma in errors.items()}
    print(f"\n{args.num_clips} held-out scenes, {args.num_frames} x {args.height} x {args.width}, patch {patch}")
    print("| sigma | " + " | ".join(f"{s:g}" for s in args.sigmas) + " |")
    print("|---|" + "---:|" * len(args.sigmas))
    for part, by_sigma in means.items():
        print(f"| {part} error | " + " | ".join(f"{v:.3f}" for v in by_sigma.values()) + " |")
    signal = float(np.mean(layout_signal))
    print(f"\nLayout signal (token means' variance in a frame x {patch[1] * patch[2]} pixels a token): {signal:.2f}")
    return {"errors": means, "layout_signal": signal, "patch_size": list(patch)}


if __name__ == "__main__":
    main()
