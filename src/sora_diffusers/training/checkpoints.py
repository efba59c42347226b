"""Checkpoints of a training run: `output_dir/checkpoint-STEP` folders, the last `--checkpoints_total_limit` kept,
resumed from with `--resume_from_checkpoint latest` or a folder."""

import argparse
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger


logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """checkpoint-STEP folders, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [p for p in Path(output_dir).iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def save_checkpoint(accelerator: Accelerator, args: argparse.Namespace, step: int) -> Path:
    """`accelerator.save_state` into output_dir/checkpoint-STEP, removing the oldest beyond `checkpoints_total_limit`."""
    if accelerator.is_main_process and args.checkpoints_total_limit:
        old = list_checkpoints(args.output_dir)
        for path in old[: max(0, len(old) - args.checkpoints_total_limit + 1)]:
            shutil.rmtree(path)
    accelerator.wait_for_everyone()
    path = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{step}"
    accelerator.save_state(str(path))
    return path


def resume(accelerator: Accelerator, args: argparse.Namespace, lr_scheduler=None) -> int:
    """Load `--resume_from_checkpoint` ("latest" or a folder); return the optimizer step it was saved at (0: fresh).

    The schedule's shape always comes from the flags (`--lr_scheduler`, `--lr_warmup_steps`, `--max_train_steps`);
    given `lr_scheduler`, so does its peak: a `--learning_rate` other than the checkpoint's is applied, not silently
    replaced by the saved one (torch restores a LambdaLR's `base_lrs` from the checkpoint).
    """
    if not args.resume_from_checkpoint:
        return 0
    if args.resume_from_checkpoint == "latest":
        found = list_checkpoints(args.output_dir)
        if not found:
            logger.info(f"No checkpoint in {args.output_dir}: starting a new run.", main_process_only=True)
            return 0
        path = found[-1]
    else:
        path = Path(args.resume_from_checkpoint)
        if not path.is_dir() or not path.name.startswith(CHECKPOINT_PREFIX):
            raise ValueError(f"--resume_from_checkpoint {path} is not a {CHECKPOINT_PREFIX}STEP folder")
    accelerator.load_state(str(path))
    logger.info(f"Resumed from {path}", main_process_only=True)
    if lr_scheduler is not None:
        apply_learning_rate(getattr(lr_scheduler, "scheduler", lr_scheduler), args.learning_rate)
    return int(path.name[len(CHECKPOINT_PREFIX) :])


def apply_learning_rate(scheduler: torch.optim.lr_scheduler.LambdaLR, learning_rate: float) -> None:
    """Make `learning_rate` the peak of a restored schedule (and of the optimizer's current lr)."""
    saved = scheduler.base_lrs[0]
    if all(lr == learning_rate for lr in scheduler.base_lrs):
        return
    scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
    for group, lr_lambda in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = learning_rate
        group["lr"] = learning_rate * lr_lambda(scheduler.last_epoch)
    logger.info(f"--learning_rate {learning_rate:g} replaces the checkpoint's {saved:g}", main_process_only=True)
