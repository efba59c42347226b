"""Train a `SpacetimeVAE` from scratch on the shapes world (rendered on the fly) or on any folder of captioned videos.

Loss: L1 + MSE reconstruction of a posterior sample, plus a small KL term; a share of the batches are single frames
(images), so the causal VAE learns frame 0 on its own as well as whole clips. The final model, saved into
`--output_dir`, carries per-channel `latents_mean` / `latents_std` measured on the data, so its normalised latents have
about unit variance for the diffusion transformer. `--pretrained_vae` fine-tunes a trained VAE instead; with
`--train_decoder_only` its encoder is frozen and its latent statistics kept, so a DiT trained on its latents stays valid.

    python examples/train_vae.py --output_dir runs/vae --resolution 64 --num_frames 17 33 --base_dim 32
    accelerate launch examples/train_vae.py --output_dir runs/vae --mixed_precision bf16 ...
    python examples/train_vae.py --output_dir runs/vae_dec --pretrained_vae runs/vae --train_decoder_only ...

See examples/README.md for every flag and what the run writes; the loop, checkpoints, EMA, data and logging are
`sora_diffusers.training`'s.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from accelerate.logging import get_logger

from sora_diffusers import SpacetimeVAE
from sora_diffusers.training.arguments import build_parser, check_args, refuse_architecture_flags
from sora_diffusers.training.autoencoder import (
    ReconstructionModel,
    cut_to_images,
    gradient_difference,
    init_convs_kaiming_,
    init_posterior_logvar_,
    measure_latent_stats,
    psnr,
    random_crop,
)
from sora_diffusers.training.datasets import buckets_from_args, build_dataset, shapes_dataset
from sora_diffusers.training.logging import to_uint8_video, write_video
from sora_diffusers.training.models import load_json_config, load_vae
from sora_diffusers.training.trainer import Trainer, step_generator


logger = get_logger(__name__)

# A small VAE for the shapes world: 4x time, 8x space, 16 latent channels (Wan 2.1's layout at a third of its width).
DEFAULT_VAE_CONFIG = dict(
    latent_channels=16,
    base_dim=32,
    dim_mult=(1, 2, 4, 4),
    num_res_blocks=1,
    attn_scales=(),
    temporal_downsample=(False, True, True),
)
ARCHITECTURE_KEYS = (
    "latent_channels", "base_dim", "dim_mult", "num_res_blocks", "attn_scales", "temporal_downsample", "patch_size",
)  # fmt: skip
VALIDATION_SEED_OFFSET = 1_000_003  # validation clips come from another seed than the training clips
MODEL_CARD = dict(  # with --push_to_hub: the README.md of the uploaded folder
    description="A `SpacetimeVAE` (sora_diffusers' causal 3D-convolution video VAE: frame 0 is encoded alone, then "
    "groups of frames) trained with `examples/train_vae.py`. Its config carries the per-channel `latents_mean` / "
    "`latents_std` measured on the training data, so its normalised latents have about unit variance.",
    model_class="SpacetimeVAE",
    pipeline_tag=None,
    tags=("video-autoencoder",),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser("Train a SpacetimeVAE from scratch, or fine-tune one.")
    p.set_defaults(learning_rate=2e-4, validation_steps=1000)
    model = p.add_argument_group("model (flags override --vae_config)")
    model.add_argument("--vae_config", default=None, help="JSON file or model folder with a SpacetimeVAE config")
    model.add_argument("--latent_channels", type=int, default=None)
    model.add_argument("--base_dim", type=int, default=None)
    model.add_argument("--dim_mult", type=int, nargs="+", default=None)
    model.add_argument("--num_res_blocks", type=int, default=None)
    model.add_argument("--attn_scales", type=float, nargs="*", default=None)
    model.add_argument("--temporal_downsample", type=int, nargs="+", default=None, help="0/1 per downsampling")
    model.add_argument(
        "--patch_size", type=int, default=None, help="fold p x p pixels into channels first (Wan 2.2's patchify)"
    )
    model.add_argument(
        "--pretrained_vae",
        default=None,
        help="fine-tune this SpacetimeVAE (a VAE folder or a pipeline folder with vae/) instead of a new one",
    )
    model.add_argument(
        "--train_decoder_only",
        action="store_true",
        help="with --pretrained_vae: freeze the encoder, so its latent space (and a DiT trained on it) stays valid",
    )
    loss = p.add_argument_group("loss")
    loss.add_argument("--l1_weight", type=float, default=1.0)
    loss.add_argument("--mse_weight", type=float, default=1.0)
    loss.add_argument("--kl_weight", type=float, default=1e-6, help="on the KL per latent element")
    loss.add_argument(
        "--gradient_weight",
        type=float,
        default=0.0,
        help="L1 on the difference of the horizontal and vertical pixel gradients (gradient difference loss): "
        "blurred edges and rounded corners cost little in L1/MSE, as they cover few pixels",
    )
    loss.add_argument(
        "--conv_init",
        choices=("kaiming", "default"),
        default="kaiming",
        help="conv weight init: He-normal with zero biases, or PyTorch's default",
    )
    loss.add_argument(
        "--logvar_init",
        type=float,
        default=-6.0,
        help="initial posterior log-variance (bias of quant_conv's logvar half); 0 = PyTorch's default init",
    )
    loss.add_argument(
        "--crop_size",
        type=int,
        default=None,
        help="train on random crops of at most this many pixels a side (a multiple of the spatial compression)",
    )
    loss.add_argument("--image_prob", type=float, default=0.2, help="share of batches cut to one random frame")
    val = p.add_argument_group("validation and latent statistics")
    val.add_argument("--num_validation_videos", type=int, default=4)
    val.add_argument("--stats_num_samples", type=int, default=64, help="clips encoded to measure latents_mean/std")
    args = p.parse_args(argv)
    check_args(args)
    if args.crop_size is not None and (args.crop_size < 1 or args.crop_size % args.resolution_multiple):
        raise ValueError(f"--crop_size must be a positive multiple of --resolution_multiple, got {args.crop_size}")
    if not 0.0 <= args.image_prob <= 1.0:
        raise ValueError(f"--image_prob must be in [0, 1], got {args.image_prob}")
    if args.train_decoder_only and not args.pretrained_vae:
        raise ValueError("--train_decoder_only needs --pretrained_vae (the encoder to keep)")
    refuse_architecture_flags(args, "pretrained_vae", "vae_config", ARCHITECTURE_KEYS)
    return args


def vae_config(args: argparse.Namespace) -> dict:
    """Defaults, then --vae_config, then explicit flags. Latent statistics start empty (measured at the end)."""
    config = {**DEFAULT_VAE_CONFIG, **load_json_config(args.vae_config)}
    for key in ARCHITECTURE_KEYS:
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    config["temporal_downsample"] = tuple(bool(flag) for flag in config["temporal_downsample"])
    return {**config, "latents_mean": None, "latents_std": None}


def validation_clips(args: argparse.Namespace) -> list[torch.Tensor]:
    """Fixed clips to reconstruct at each validation: unseen shapes-world clips, or the first clips of --data_dir."""
    if args.data_dir:
        dataset, _ = build_dataset(args, group_size=1, random_start=False)
    else:
        dataset, _ = shapes_dataset(
            args.num_validation_videos, buckets_from_args(args), args.seed + VALIDATION_SEED_OFFSET, group_size=1
        )
    return [dataset[i]["video"] for i in range(min(args.num_validation_videos, len(dataset)))]


def build_vae(args: argparse.Namespace) -> SpacetimeVAE:
    """A new VAE (initialised as measured best), or --pretrained_vae; with --train_decoder_only its encoder frozen."""
    if args.pretrained_vae:
        vae = load_vae(args.pretrained_vae)
    else:
        vae = SpacetimeVAE(**vae_config(args))
        if args.conv_init == "kaiming":
            init_convs_kaiming_(vae)
        if args.logvar_init:
            init_posterior_logvar_(vae, args.logvar_init)
    if args.train_decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    vae.disable_temporal_chunking()  # whole clips at once: fastest for training-length clips
    if args.gradient_checkpointing:
        vae.enable_gradient_checkpointing()
    return vae


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    trainer = Trainer(args, find_unused_parameters=args.image_prob > 0)

    # 1. Model: a new one, or --pretrained_vae (with --train_decoder_only: its encoder frozen)
    vae = build_vae(args)
    total = sum(p.numel() for p in vae.parameters())
    trained = sum(p.numel() for p in vae.parameters() if p.requires_grad)
    logger.info(f"SpacetimeVAE: {total / 1e6:.2f} M parameters, {trained / 1e6:.2f} M trained")

    # 2. Data, optimizer, EMA (of the VAE), resume
    dataset, bucket_ids = build_dataset(args, group_size=args.train_batch_size)
    model = ReconstructionModel(vae, train_encoder=not args.train_decoder_only)
    model = trainer.prepare(model, dataset, bucket_ids, ema_model=vae)
    val_clips = validation_clips(args) if trainer.is_main_process else []

    # 3. One micro-batch: reconstruct, weigh L1 + MSE + KL
    def step_fn(batch: dict, step: int) -> dict[str, torch.Tensor]:
        rng = trainer.micro_batch_rng()
        video = random_crop(batch["video"], args.crop_size, rng)
        if rng.random() < args.image_prob:
            video = cut_to_images(video, rng)
        recon, kl = model(video, step_generator(rng, video.device))
        error = recon.float() - video.float()
        mse = error.square().mean()
        loss = args.l1_weight * error.abs().mean() + args.mse_weight * mse + args.kl_weight * kl
        logs = {"mse": mse, "kl": kl.detach(), "psnr": psnr(mse.detach())}
        if args.gradient_weight:
            gradient = gradient_difference(error)
            loss = loss + args.gradient_weight * gradient
            logs["gradient"] = gradient.detach()
        return {"loss": loss, **logs}

    # 4. Validation: original | reconstruction side by side, one mp4 per clip
    def validate_fn(step: int) -> None:
        scores = []
        for i, clip in enumerate(val_clips):
            clip = clip[None].to(trainer.device)
            z = vae.encode(clip).latent_dist.mode()
            recon = vae.decode(z).sample.float()
            scores.append(psnr((recon - clip).square().mean()).item())
            side_by_side = torch.cat([clip[0], recon[0]], dim=-1)  # (3, T, H, 2W)
            write_video(
                to_uint8_video(side_by_side), Path(args.output_dir) / "validation" / f"step-{step:06d}_{i}.mp4"
            )
        if scores:
            trainer.metrics.append({"step": step, "val_psnr": float(np.mean(scores))})
            logger.info(f"step {step}: validation PSNR {np.mean(scores):.2f} dB")

    # 5. Final model: EMA weights, latent statistics measured on the data (a frozen encoder keeps its own), saved
    def save(final: SpacetimeVAE, folder: Path) -> None:
        final.eval()
        if not args.train_decoder_only:
            stats_data, _ = build_dataset(args, group_size=1, random_start=False)
            mean, std = measure_latent_stats(final, stats_data, args.stats_num_samples, trainer.device)
            final.register_to_config(latents_mean=mean, latents_std=std)
        final.save_pretrained(folder)  # staged: the files replace those of --output_dir once all are written
        std = final.config.latents_std or [float("nan")]
        logger.info(f"Saved the VAE to {args.output_dir} (latent std {min(std):.3g} .. {max(std):.3g})")

    if trainer.train(step_fn, validate_fn):
        trainer.save_final_model(save, MODEL_CARD)
    return trainer.end()


if __name__ == "__main__":
    main()
