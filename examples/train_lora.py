"""Train a LoRA of a `SoraPipeline`'s `DiTVideoTransformer3D` (PEFT adapters on its attention, optionally its FFN) by
flow matching, with the frozen VAE and text encoder of the same pipeline, and the random clean conditioning frames of
`train_text_to_video.py`, so the LoRA keeps image-to-video and extension working.

The result is `pytorch_lora_weights.safetensors` (diffusers' LoRA format, with the adapter config so `lora_alpha`
survives) and a `README.md` model card in `--output_dir`; load it with `pipe.load_lora_weights(output_dir)` or
`sora-diffusers generate "..." --lora output_dir/pytorch_lora_weights.safetensors:1.0`.

    python examples/train_lora.py --data_dir my_clips --output_dir runs/lora --num_frames 1 17 --rank 16
    accelerate launch examples/train_lora.py --pretrained_model runs/dit --output_dir runs/lora --mixed_precision bf16

See examples/README.md for every flag; the loop, checkpoints, data, caches and logging are `sora_diffusers.training`'s.
"""

import argparse
from pathlib import Path

import torch
from accelerate.logging import get_logger
from diffusers.training_utils import cast_training_params
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from sora_diffusers import SoraPipeline
from sora_diffusers.training.arguments import build_parser, check_args
from sora_diffusers.training.cards import describe_hardware
from sora_diffusers.training.hub import save_model_card
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

DEFAULT_TARGET_MODULES = "to_q,to_k,to_v,to_out.0"  # self- and cross-attention projections of every block
FFN_TARGET_MODULES = ("ffn.net.0.proj", "ffn.net.2")  # the two linears of each block's feed-forward
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
MODEL_CARD = dict(
    description="A LoRA of a sora_diffusers `SoraPipeline`'s `DiTVideoTransformer3D`, trained with sora_diffusers' "
    "`examples/train_lora.py` by flow matching, with random clean conditioning frames so that image-to-video and "
    "extension keep working. Load it with `pipe.load_lora_weights(...)`.",
    model_class="LoRA",
    pipeline_tag="text-to-video",
    tags=("lora", "image-to-video"),
)


def default_model() -> str:
    from sora_diffusers.default_model import default_model_path

    return str(default_model_path())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser("Train a LoRA of a SoraPipeline's DiTVideoTransformer3D.")
    lora = p.add_argument_group("model and LoRA")
    lora.add_argument("--pretrained_model", default=None, help="a SoraPipeline folder (default: the embedded model)")
    lora.add_argument("--rank", type=int, default=16, help="LoRA rank r")
    lora.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (scale alpha / r); default: --rank")
    lora.add_argument("--lora_dropout", type=float, default=0.0)
    lora.add_argument(
        "--target_modules", default=DEFAULT_TARGET_MODULES, help="comma-separated module names the LoRA adapts"
    )
    lora.add_argument("--train_ffn", action="store_true", help=f"also adapt the FFN linears {FFN_TARGET_MODULES}")
    lora.add_argument("--max_sequence_length", type=int, default=None, help="text tokens (default: tokenizer's)")
    add_flow_matching_arguments(p)
    add_validation_arguments(p)
    args = p.parse_args(argv)
    check_args(args)
    if args.rank < 1:
        raise ValueError(f"--rank must be an integer >= 1, got {args.rank}")
    args.lora_alpha = float(args.rank) if args.lora_alpha is None else args.lora_alpha
    if args.lora_alpha <= 0:
        raise ValueError(f"--lora_alpha must be > 0, got {args.lora_alpha}")
    if not 0.0 <= args.lora_dropout < 1.0:
        raise ValueError(f"--lora_dropout must be in [0, 1), got {args.lora_dropout}")
    targets = [name.strip() for name in args.target_modules.split(",") if name.strip()]
    if not targets:
        raise ValueError(f"--target_modules must name at least one module, got {args.target_modules!r}")
    args.target_modules = list(dict.fromkeys(targets + (list(FFN_TARGET_MODULES) if args.train_ffn else [])))
    if args.use_ema:  # an EMA would average (and checkpoint) the whole frozen transformer, not the adapter
        raise ValueError("--use_ema is not supported when training a LoRA; drop it")
    args.pretrained_model = args.pretrained_model or default_model()
    if not (Path(args.pretrained_model) / "model_index.json").is_file():
        raise ValueError(
            f"--pretrained_model {args.pretrained_model} is not a SoraPipeline folder (no model_index.json)"
        )
    check_flow_matching_args(args)
    fill_validation_size(args)
    return args


def add_lora(transformer, args: argparse.Namespace) -> None:
    """The LoRA adapter "default" on --target_modules (each must name a linear layer of the transformer).

    Raises:
        ValueError: a --target_modules name that matches no linear layer.
    """
    linears = [name for name, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)]
    unmatched = [t for t in args.target_modules if not any(n == t or n.endswith(f".{t}") for n in linears)]
    if unmatched:
        raise ValueError(
            f"--target_modules {unmatched} match no linear layer of the transformer; its layers are named like "
            f"{sorted({n.split('.', 2)[-1] for n in linears if n.startswith('blocks.0.')})}"
        )
    config = LoraConfig(
        r=args.rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        init_lora_weights="gaussian",  # B = 0: the LoRA starts as the base model
        target_modules=args.target_modules,
    )
    transformer.add_adapter(config)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    trainer = Trainer(args)
    device, dtype = trainer.device, weight_dtype(trainer.accelerator)

    # 1. The base pipeline, frozen; the LoRA on its transformer, the only trained parameters (kept in float32)
    pipe = SoraPipeline.from_pretrained(args.pretrained_model, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    vae, transformer = pipe.vae, pipe.transformer
    for frozen in (pipe.vae, pipe.text_encoder, transformer):
        frozen.requires_grad_(False).eval()
    if is_frame_conditioned(args) and not transformer.config.per_frame_timesteps:
        raise ValueError(
            f"--pretrained_model {args.pretrained_model} has per_frame_timesteps=False: it cannot be trained with "
            "frame conditioning; give --condition_probs 1 0 0 0 0"
        )
    add_lora(transformer, args)
    if dtype != torch.float32:
        cast_training_params(transformer, dtype=torch.float32)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    pipe.to(device)
    trained = sum(p.numel() for p in transformer.parameters() if p.requires_grad)
    logger.info(f"LoRA rank {args.rank} on {args.target_modules}: {trained / 1e6:.3f} M trained parameters")

    # 2. Data, 3. optimizer over the adapter, accelerate, resume (checkpoints hold the adapter and optimizer only)
    local = Path(args.pretrained_model)
    base = local.resolve().as_posix() if local.exists() else args.pretrained_model  # names the caches' models
    dataset, bucket_ids = build_training_data(args, trainer, vae, f"{base}/vae")
    model = trainer.prepare(transformer, dataset, bucket_ids, trainable_only=True)
    encode_prompts = prompt_encoder(pipe, args, device, f"{base}/text_encoder", dtype)

    # 4. The micro-batch step of train_text_to_video.py: random clean conditioning frames, flow matching on the rest
    step_fn = frame_conditioning_step(
        trainer, model, vae, encode_prompts, args, per_frame_timesteps=transformer.config.per_frame_timesteps
    )
    clip, caption = validation_clip(args) if trainer.is_main_process else (None, None)

    def validate_fn(step: int) -> None:
        generate_validation(pipe, args, clip, caption, step)

    # 5. The adapter in diffusers' LoRA format, with its config; the model card
    def save(final) -> None:
        SoraPipeline.save_lora_weights(
            args.output_dir,
            transformer_lora_layers=get_peft_model_state_dict(final),
            weight_name=LORA_WEIGHT_NAME,
            transformer_lora_adapter_metadata=final.peft_config["default"].to_dict(),
        )
        last = next((r for r in reversed(trainer.metrics.records) if "loss" in r), None)
        hardware = describe_hardware(trainer.device, trainer.accelerator.num_processes)
        save_model_card(args, None, last_record=last, hardware=hardware, **MODEL_CARD)
        logger.info(f"Saved the LoRA to {Path(args.output_dir) / LORA_WEIGHT_NAME}")

    if trainer.train(step_fn, validate_fn):
        trainer.save_final_model(save, MODEL_CARD)
    return trainer.end()


if __name__ == "__main__":
    main()
