"""The command-line flags every training script shares, in three groups (data, training; checkpoints, EMA,
validation, logging and Hub), and their checks. A script adds its own groups to the parser `build_parser` returns.
"""

import argparse


def build_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every training script takes: data, optimisation, checkpoints, EMA, validation cadence, logging, Hub."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_arguments(p)
    add_training_arguments(p)
    add_checkpoint_arguments(p)
    return p


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data (default: the shapes world rendered on the fly)")
    data.add_argument("--data_dir", default=None, help="folder of videos + same-name .txt, or metadata.jsonl/.csv")
    data.add_argument("--num_train_samples", type=int, default=100_000, help="shapes-world dataset length")
    data.add_argument("--resolution", type=int, default=64, help="long side of every bucket, in pixels")
    data.add_argument("--num_frames", type=int, nargs="+", default=[17, 33], help="bucket lengths, 1 + 4k frames")
    data.add_argument("--aspect_ratios", nargs="+", default=["landscape", "portrait", "square"])
    data.add_argument("--resolution_multiple", type=int, default=16, help="bucket sides are multiples of this")
    data.add_argument("--dataloader_num_workers", type=int, default=2, help="processes rendering/decoding clips")


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    train = p.add_argument_group("training")
    train.add_argument("--output_dir", required=True)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--train_batch_size", type=int, default=4, help="per device")
    train.add_argument("--max_train_steps", type=int, default=10_000, help="optimizer steps")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--gradient_checkpointing", action="store_true")
    train.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    train.add_argument("--learning_rate", type=float, default=1e-4)
    train.add_argument("--lr_scheduler", default="constant_with_warmup", help="any diffusers.optimization schedule")
    train.add_argument("--lr_warmup_steps", type=int, default=200)
    train.add_argument("--adam_beta1", type=float, default=0.9)
    train.add_argument("--adam_beta2", type=float, default=0.99)
    train.add_argument("--adam_weight_decay", type=float, default=0.0)
    train.add_argument("--adam_epsilon", type=float, default=1e-8)
    train.add_argument("--max_grad_norm", type=float, default=1.0)
    train.add_argument("--allow_tf32", action="store_true", help="TF32 matmuls on Ampere+ GPUs")
    train.add_argument("--torch_threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def add_checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    ckpt = p.add_argument_group("checkpoints, EMA, validation, logging")
    ckpt.add_argument("--checkpointing_steps", type=int, default=500, help="save a checkpoint every N steps")
    ckpt.add_argument("--checkpoints_total_limit", type=int, default=3, help="keep the last K checkpoints")
    ckpt.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    ckpt.add_argument(
        "--stop_at_step",
        type=int,
        default=0,
        help="end this run at step N with a checkpoint and no final model; resume later, e.g. with other data flags "
        "(a curriculum). The learning-rate schedule still spans --max_train_steps. 0 = run to --max_train_steps",
    )
    ckpt.add_argument("--use_ema", action="store_true", help="keep an EMA of the weights; the final model is the EMA")
    ckpt.add_argument("--ema_decay", type=float, default=0.999, help="max EMA decay (warms up as (1+s)/(10+s))")
    ckpt.add_argument("--validation_steps", type=int, default=500, help="validate every N steps (0 = only at the end)")
    ckpt.add_argument("--logging_steps", type=int, default=10, help="average and record metrics every N steps")
    ckpt.add_argument("--report_to", default="none", help='also log to "tensorboard", "wandb" or "all"')
    ckpt.add_argument("--push_to_hub", action="store_true")
    ckpt.add_argument("--hub_model_id", default=None, help="user/name of the Hub repo to upload the result to")


def check_args(args: argparse.Namespace) -> None:
    """The shared flags' checks.

    Raises:
        ValueError: naming the flag, its value and what is allowed.
    """
    for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    bad = [n for n in args.num_frames if n < 1 or (n - 1) % 4]
    if bad:
        raise ValueError(f"--num_frames must be 1 + 4k (the VAE compresses time 4x after frame 0), got {bad}")
    if args.resolution % args.resolution_multiple:
        raise ValueError(f"--resolution {args.resolution} must be a multiple of {args.resolution_multiple}")
    if not 0 <= args.stop_at_step <= args.max_train_steps:
        raise ValueError(
            f"--stop_at_step must be in [0, --max_train_steps={args.max_train_steps}], got {args.stop_at_step}"
        )


def refuse_architecture_flags(args: argparse.Namespace, pretrained: str, config: str, keys) -> None:
    """With --`pretrained` given, the model's architecture comes from it: --`config` and the flags `keys` are refused.

    Raises:
        ValueError: naming every architecture flag that was given.
    """
    if not getattr(args, pretrained):
        return
    given = [f"--{key}" for key in (config, *keys) if getattr(args, key) is not None]
    if given:
        raise ValueError(f"--{pretrained} fixes the architecture; drop {', '.join(given)}")
