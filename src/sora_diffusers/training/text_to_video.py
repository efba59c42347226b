"""What every script that trains a `DiTVideoTransformer3D` for text-to-video shares (`examples/train_text_to_video.py`
trains the whole model, `examples/train_lora.py` a LoRA of it): the flow-matching and validation flags, the data with
its optional latent and prompt caches, the step with random clean conditioning frames (so a model or LoRA keeps
image-to-video and extension), and the validation videos (text-to-video, image-to-video, extension).
"""

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..pipelines.conditioning import FrameCondition
from .buckets import Bucket
from .caches import PromptEmbeddingCache, build_latent_cache
from .conditioning_sampler import (
    CONDITION_MODES,
    DEFAULT_CONDITION_PROBS,
    captions_with_dropout,
    conditioned_latents,
    normalize_condition_probs,
)
from .datasets import VideoFolderDataset, buckets_from_args, build_dataset, read_frames, resize_crop, shapes_dataset
from .flow_matching import (
    LOSS_WEIGHTING_SCHEMES,
    WEIGHTING_SCHEMES,
    add_noise,
    flow_matching_loss,
    flow_target,
    loss_weighting,
    prepare_frame_conditioning_sigmas,
    sample_sigmas,
    sigmas_to_timesteps,
)
from .logging import to_uint8_video, write_video
from .trainer import Trainer, step_generator


DEFAULT_VALIDATION_PROMPTS = [
    "a red circle moving to the right on a black background",
    "a blue square moving up on a black background",
]
VALIDATION_SEED_OFFSET = 1_000_003


# ---------------------------------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------------------------------


def add_flow_matching_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "flow matching and conditioning" group (sigmas, loss weighting, caption dropout, conditioning modes, caches);
    returned so a script can add its own flags to it."""
    flow = p.add_argument_group("flow matching and conditioning")
    flow.add_argument("--weighting_scheme", choices=WEIGHTING_SCHEMES, default="logit_normal")
    flow.add_argument("--logit_mean", type=float, default=0.0)
    flow.add_argument("--logit_std", type=float, default=1.0)
    flow.add_argument("--mode_scale", type=float, default=1.29)
    flow.add_argument("--shift", type=float, default=1.0, help="static shift of the training sigmas")
    flow.add_argument("--loss_weighting", choices=LOSS_WEIGHTING_SCHEMES, default="none")
    flow.add_argument("--caption_dropout", type=float, default=0.1, help="share of empty captions (for CFG)")
    flow.add_argument(
        "--image_prob", type=float, default=0.0,
        help="share of batches trained as images: latent frame 0 alone (a causal VAE encodes frame 0 by itself), so "
        "the model also learns one-frame generation",
    )  # fmt: skip
    flow.add_argument(
        "--condition_probs", type=float, nargs=len(CONDITION_MODES), metavar="P",
        default=[DEFAULT_CONDITION_PROBS[m] for m in CONDITION_MODES], help=f"probabilities of {CONDITION_MODES}",
    )  # fmt: skip
    flow.add_argument("--cache_latents", default=None, help="encode the data once into DIR and train from there")
    flow.add_argument(
        "--cache_prompt_embeds",
        action="store_true",
        help="encode each caption once (alone, not in its batch) and reuse it; kept in DIR/prompt_embeds with "
        "--cache_latents DIR, else in memory",
    )
    return flow


def add_validation_arguments(p: argparse.ArgumentParser, prompts: list[str] = DEFAULT_VALIDATION_PROMPTS) -> None:
    val = p.add_argument_group("validation")
    val.add_argument("--validation_prompts", nargs="+", default=prompts)
    val.add_argument("--validation_num_inference_steps", type=int, default=20)
    val.add_argument("--validation_guidance_scale", type=float, default=4.0)
    val.add_argument("--validation_height", type=int, default=None, help="default: the first bucket's")
    val.add_argument("--validation_width", type=int, default=None)
    val.add_argument("--validation_num_frames", type=int, default=None)


def check_flow_matching_args(args: argparse.Namespace) -> None:
    """Check --caption_dropout, normalise --condition_probs and fill the validation size from the first bucket.

    Raises:
        ValueError: naming the flag, its value and what is allowed.
    """
    if not 0.0 <= args.caption_dropout <= 1.0:
        raise ValueError(f"--caption_dropout must be in [0, 1], got {args.caption_dropout}")
    if not 0.0 <= args.image_prob <= 1.0:
        raise ValueError(f"--image_prob must be in [0, 1], got {args.image_prob}")
    args.condition_probs = normalize_condition_probs(args.condition_probs)


def fill_validation_size(args: argparse.Namespace) -> None:
    first = buckets_from_args(args)[0]
    args.validation_height = args.validation_height or first.height
    args.validation_width = args.validation_width or first.width
    args.validation_num_frames = args.validation_num_frames or first.num_frames


def is_frame_conditioned(args: argparse.Namespace) -> bool:
    """Whether any conditioning mode other than "none" has a probability above 0."""
    return bool(args.condition_probs[1:].sum() > 0)


# ---------------------------------------------------------------------------------------------------------------------
# Data and prompts
# ---------------------------------------------------------------------------------------------------------------------


def build_training_data(args: argparse.Namespace, trainer: Trainer, vae, vae_name: str):
    """The dataset and its bucket ids: clips rendered/decoded and encoded each step, or (`--cache_latents DIR`) latents
    encoded once by `vae` (named `vae_name` in the cache's info, so a cache of another VAE is not reused)."""
    dataset, bucket_ids = build_dataset(args, group_size=args.train_batch_size, random_start=not args.cache_latents)
    if args.cache_latents:
        data_info = {
            k: getattr(args, k) for k in ("data_dir", "num_train_samples", "seed", "resolution", "num_frames")
        }
        data_info.update(aspect_ratios=args.aspect_ratios, vae=vae_name)
        dataset = build_latent_cache(
            args.cache_latents, dataset, bucket_ids, vae, trainer.accelerator, data_info, args
        )
    return dataset, bucket_ids


def prompt_encoder(
    pipe, args: argparse.Namespace, device, text_encoder_name: str, dtype: torch.dtype
) -> Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]:
    """`captions -> (prompt_embeds, prompt_attention_mask)` by `pipe.encode_prompt`, each caption encoded once and kept
    with `--cache_prompt_embeds` (in `--cache_latents DIR/prompt_embeds`, else in memory)."""

    def encode_prompts(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(do_classifier_free_guidance=False, max_sequence_length=args.max_sequence_length, device=device)
        return pipe.encode_prompt(captions, **kwargs)[:2]

    if not args.cache_prompt_embeds:
        return encode_prompts
    info = {"text_encoder": str(text_encoder_name), "max_sequence_length": args.max_sequence_length}
    folder = Path(args.cache_latents) / "prompt_embeds" if args.cache_latents else None
    cache = PromptEmbeddingCache(encode_prompts, folder, {**info, "dtype": str(dtype)})
    return lambda captions: cache(captions, device)


# ---------------------------------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------------------------------


def frame_conditioning_step(
    trainer: Trainer,
    model: torch.nn.Module,
    vae,
    encode_prompts: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]],
    args: argparse.Namespace,
    per_frame_timesteps: bool,
) -> Callable[[dict, int], dict[str, torch.Tensor]]:
    """The `step_fn` of `Trainer.train` for a text-to-video transformer: per sample a conditioning mode is drawn
    (`--condition_probs`), its latent frames enter clean (sigma 0, timestep 0 with `per_frame_timesteps`) and are left
    out of the loss; the rest is noised and the velocity predicted. A share `--image_prob` of the batches is trained
    as images instead: latent frame 0 alone, unconditioned. All draws come from the micro-batch's own stream
    (`Trainer.micro_batch_rng`), so a resumed run continues exactly."""
    device = trainer.device
    unconditioned = np.eye(len(CONDITION_MODES))[0]  # "none" only

    def step_fn(batch: dict, step: int) -> dict[str, torch.Tensor]:
        rng = trainer.micro_batch_rng()
        generator = step_generator(rng, device)
        # drawn only when asked for, so runs without images keep their random stream
        image = args.image_prob > 0 and rng.random() < args.image_prob
        with torch.no_grad():
            probs = unconditioned if image else args.condition_probs
            x0, masks = conditioned_latents(batch, vae, rng, probs)  # (B, C, T', H', W'), (B, T')
            if image:  # the causal VAE's latent frame 0 encodes frame 0 alone: the clip's first frame as an image
                x0, masks = x0[:, :, :1], masks[:, :1]
            captions = captions_with_dropout(batch["caption"], rng, args.caption_dropout)
            text, text_mask = encode_prompts(captions)
        sigmas = sample_sigmas(
            x0.shape[0], weighting_scheme=args.weighting_scheme, logit_mean=args.logit_mean, logit_std=args.logit_std,
            mode_scale=args.mode_scale, shift=args.shift, generator=generator, device=device,
        )  # fmt: skip
        frame_sigmas = prepare_frame_conditioning_sigmas(sigmas, masks)  # (B, T'): 0 on conditioning frames
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        noisy = add_noise(x0, noise, frame_sigmas)
        timestep = sigmas_to_timesteps(frame_sigmas if per_frame_timesteps else sigmas)
        pred = model(noisy, timestep, text, text_mask, return_dict=False)[0]
        weights = loss_weighting(frame_sigmas, args.loss_weighting)
        loss = flow_matching_loss(pred, flow_target(x0, noise), weights, mask=~masks)
        return {"loss": loss, "conditioned_frames": masks.float().mean()}

    return step_fn


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def validation_clip(args: argparse.Namespace) -> tuple[torch.Tensor, str]:
    """A clip (3, T, H, W) of the validation size and its caption, for the image-to-video and extension samples."""
    bucket = Bucket(args.validation_width, args.validation_height, args.validation_num_frames)
    if args.data_dir:
        dataset = VideoFolderDataset(args.data_dir, buckets_from_args(args), random_start=False)
        frames = read_frames(dataset.files[0], 0, bucket.num_frames)  # a short clip repeats its last frame
        return resize_crop(frames, bucket.width, bucket.height), dataset.captions[0]
    dataset, _ = shapes_dataset(1, [bucket], args.seed + VALIDATION_SEED_OFFSET, group_size=1)
    return dataset[0]["video"], dataset[0]["caption"]


def generate_validation(pipe, args: argparse.Namespace, clip: torch.Tensor, caption: str, step: int) -> None:
    """T2V per prompt, I2V from the clip's first frame and forward extension of its first half; real | generated."""
    out = Path(args.output_dir) / "validation"
    common = dict(
        height=args.validation_height,
        width=args.validation_width,
        num_frames=args.validation_num_frames,
        num_inference_steps=args.validation_num_inference_steps,
        guidance_scale=args.validation_guidance_scale,
        output_type="pt",
    )
    for i, prompt in enumerate(args.validation_prompts):
        video = pipe(prompt, generator=torch.Generator().manual_seed(i), **common).frames[0]  # (T, 3, H, W) [0, 1]
        write_video(
            video.permute(0, 2, 3, 1).float().cpu().numpy(),
            out / f"step-{step:06d}_t2v_{i}.mp4",
            metadata={"prompt": prompt},
        )
    r_t = pipe.vae_scale_factor_temporal
    head = 1 + (clip.shape[1] - 1) // (2 * r_t) * r_t  # about half of the clip, 1 + k*r frames
    for name, condition in (("i2v", clip[:, :1]), ("extend", clip[:, :head])):
        video = pipe(
            caption, conditions=[FrameCondition(condition, 0)], generator=torch.Generator().manual_seed(0), **common
        ).frames[0]
        generated = video.permute(1, 0, 2, 3) * 2 - 1  # (3, T, H, W) in [-1, 1]
        side_by_side = torch.cat([clip.to(generated), generated], dim=-1)
        write_video(to_uint8_video(side_by_side), out / f"step-{step:06d}_{name}.mp4", metadata={"prompt": caption})
