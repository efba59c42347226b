"""What `train_vae.py` and `train_text_to_video.py` share: arguments, accelerate setup, the training loop with
checkpoints (keep the last K, resume from the latest), EMA, metric logging, the loss-curve PNG, video export and Hub
upload. Each script supplies only its model, its loss (`step_fn`) and its validation (`validate_fn`).
"""

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import logging as diffusers_logging
from tqdm.auto import tqdm

from sora_diffusers.utils import export_to_video


logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


def build_parser(description: str) -> argparse.ArgumentParser:
    """Arguments both scripts take: data, optimisation, checkpoints, EMA, validation cadence, logging, Hub."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data (default: the shapes world rendered on the fly)")
    data.add_argument("--data_dir", default=None, help="folder of videos + same-name .txt, or metadata.jsonl/.csv")
    data.add_argument("--num_train_samples", type=int, default=100_000, help="shapes-world dataset length")
    data.add_argument("--resolution", type=int, default=64, help="long side of every bucket, in pixels")
    data.add_argument("--num_frames", type=int, nargs="+", default=[17, 33], help="bucket lengths, 1 + 4k frames")
    data.add_argument("--aspect_ratios", nargs="+", default=["landscape", "portrait", "square"])
    data.add_argument("--resolution_multiple", type=int, default=16, help="bucket sides are multiples of this")
    data.add_argument("--dataloader_num_workers", type=int, default=2, help="processes rendering/decoding clips")

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

    ckpt = p.add_argument_group("checkpoints, EMA, validation, logging")
    ckpt.add_argument("--checkpointing_steps", type=int, default=500, help="save_state every N steps")
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
    return p


def check_args(args: argparse.Namespace) -> None:
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


def load_vae(path: str | Path, **kwargs):
    """A `SpacetimeVAE` from a VAE folder (or Hub id), or from a pipeline folder's `vae/`; `kwargs` to from_pretrained."""
    from sora_diffusers import SpacetimeVAE

    return _load_component(SpacetimeVAE, path, "vae", **kwargs)


def load_transformer(path: str | Path, **kwargs):
    """A `DiTVideoTransformer3D` from a model folder (or Hub id), or from a pipeline folder's `transformer/`."""
    from sora_diffusers import DiTVideoTransformer3D

    return _load_component(DiTVideoTransformer3D, path, "transformer", **kwargs)


def _load_component(cls, path: str | Path, subfolder: str, **kwargs):
    found = subfolder if (Path(path) / subfolder / "config.json").is_file() else None
    return cls.from_pretrained(path, subfolder=found, **kwargs)


def load_json_config(path: str | None) -> dict:
    """A model config from a JSON file or a saved model folder's config.json (keys starting with "_" dropped)."""
    if not path:
        return {}
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    with open(path, encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------------------------------------
# Accelerate, optimizer, EMA
# ---------------------------------------------------------------------------------------------------------------------


def setup_accelerator(args: argparse.Namespace, find_unused_parameters: bool = False) -> Accelerator:
    project = ProjectConfiguration(project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs"))
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if find_unused_parameters else []
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project,
        kwargs_handlers=handlers,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed + accelerator.process_index)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    if args.report_to != "none":  # trackers take flat scalars: lists and arrays become strings
        config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in vars(args).items()}
        accelerator.init_trackers(Path(sys.argv[0]).stem or "sora_diffusers", config=config)
    return accelerator


def step_generator(rng: np.random.Generator, device) -> torch.Generator:
    """A torch generator on `device` seeded from the step's numpy stream: a step's draws depend on (seed, step,
    process) alone, so a resumed run continues exactly as the uninterrupted one would have."""
    return torch.Generator(device).manual_seed(int(rng.integers(2**63)))


def weight_dtype(accelerator: Accelerator) -> torch.dtype:
    """dtype for frozen models: half precision under mixed precision, else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def create_optimizer(model: torch.nn.Module, args: argparse.Namespace, accelerator: Accelerator):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
    )
    # The prepared scheduler steps once per process at each optimizer step (accelerate's convention).
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    return optimizer, lr_scheduler


def create_ema(model: torch.nn.Module, args: argparse.Namespace, accelerator: Accelerator) -> EMAModel | None:
    """An EMA of `model`'s weights, saved into each checkpoint as `ema/` (a loadable model folder) and restored."""
    if not args.use_ema:
        return None
    ema = EMAModel(model.parameters(), decay=args.ema_decay, model_cls=type(model), model_config=model.config)
    ema.to(accelerator.device)

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            ema.save_pretrained(os.path.join(output_dir, "ema"))

    def load_hook(models, input_dir):
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # the EMA's own keys in config.json are not model arguments
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # diffusers' EMAModel passes a path to from_config
                loaded = EMAModel.from_pretrained(os.path.join(input_dir, "ema"), type(model))
        finally:
            diffusers_logging.set_verbosity(verbosity)
        ema.load_state_dict(loaded.state_dict())
        ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
    return ema


@contextlib.contextmanager
def ema_weights(ema: EMAModel | None, model: torch.nn.Module):
    """Temporarily put the EMA weights into `model` (for validation)."""
    if ema is None:
        yield model
        return
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield model
    finally:
        ema.restore(model.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def list_checkpoints(output_dir: str) -> list[Path]:
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
        _apply_learning_rate(getattr(lr_scheduler, "scheduler", lr_scheduler), args.learning_rate)
    return int(path.name[len(CHECKPOINT_PREFIX) :])


def _apply_learning_rate(scheduler: torch.optim.lr_scheduler.LambdaLR, learning_rate: float) -> None:
    saved = scheduler.base_lrs[0]
    if all(lr == learning_rate for lr in scheduler.base_lrs):
        return
    scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
    for group, lr_lambda in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = learning_rate
        group["lr"] = learning_rate * lr_lambda(scheduler.last_epoch)
    logger.info(f"--learning_rate {learning_rate:g} replaces the checkpoint's {saved:g}", main_process_only=True)


# ---------------------------------------------------------------------------------------------------------------------
# Metrics, loss curve, videos
# ---------------------------------------------------------------------------------------------------------------------


class MetricsLog:
    """Averaged metrics, one record per `--logging_steps`; checkpointed with the state, mirrored to metrics.jsonl."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = []

    def state_dict(self) -> dict:
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])

    def rewrite(self) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.records)

    def append(self, record: dict) -> None:
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def series(self, key: str) -> tuple[list[int], list[float]]:
        pairs = [(r["step"], r[key]) for r in self.records if key in r]
        return [s for s, _ in pairs], [v for _, v in pairs]


def plot_curve(steps: list[int], values: list[float], path: str | Path, title: str = "training loss") -> Path:
    """The curve as a PNG, log-scaled when all values are positive: matplotlib (Agg) if installed, else Pillow."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_curve_pil(steps, values, path, title)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, values, lw=1)
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=title, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _plot_curve_pil(steps: list[int], values: list[float], path: str | Path, title: str) -> Path:
    from PIL import Image, ImageDraw

    width, height, margin = 700, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([margin, margin // 2, width - margin // 2, height - margin], outline="black")
    log_scale = bool(values) and min(values) > 0
    ys = [math.log10(v) for v in values] if log_scale else list(values)
    if len(steps) >= 2:
        x0, x1, y0, y1 = min(steps), max(steps), min(ys), max(ys)
        to_x = lambda s: margin + (s - x0) / max(x1 - x0, 1e-12) * (width - 1.5 * margin)  # noqa: E731
        to_y = lambda y: height - margin - (y - y0) / max(y1 - y0, 1e-12) * (height - 1.5 * margin)  # noqa: E731
        draw.line([(to_x(s), to_y(y)) for s, y in zip(steps, ys)], fill=(31, 119, 180), width=2)
        label = lambda y: f"{10**y:.3g}" if log_scale else f"{y:.3g}"  # noqa: E731
        draw.text((4, margin // 2), label(y1), fill="black")
        draw.text((4, height - margin - 10), label(y0), fill="black")
        draw.text((margin, height - margin + 5), str(x0), fill="black")
        draw.text((width - margin, height - margin + 5), str(x1), fill="black")
    draw.text((width // 2 - 60, 5), title + (" (log)" if log_scale else ""), fill="black")
    image.save(path)
    return Path(path)


def to_uint8_video(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


def write_video(frames: np.ndarray, path: str | Path, fps: int = 16, metadata: dict | None = None) -> str:
    """(T, H, W, 3) uint8 or floats in [0, 1] -> mp4 (or gif by extension).

    An mp4 becomes a gif (Pillow, always installed) where no ffmpeg is available, so a long run never dies at its
    first validation on a machine without imageio-ffmpeg (seen on a lent GPU machine).
    """
    path = Path(path)
    if path.suffix == ".mp4" and not _has_ffmpeg():
        path = path.with_suffix(".gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_to_video(frames, str(path), fps=fps, metadata=metadata)


def _has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------------------------------
# Hub
# ---------------------------------------------------------------------------------------------------------------------


def create_hub_repo(args: argparse.Namespace) -> str | None:
    """Create the `--hub_model_id` repo before training, so a bad login or no network fails now, not after hours."""
    if not args.push_to_hub:
        return None
    if not args.hub_model_id:
        raise SystemExit("--push_to_hub needs --hub_model_id (e.g. your-name/sora-shapes).")
    from huggingface_hub import create_repo

    try:
        return create_repo(args.hub_model_id, exist_ok=True).repo_id
    except Exception as error:  # offline, not logged in, no permission: all end the same way
        raise SystemExit(
            f"--push_to_hub: cannot create the Hub repo {args.hub_model_id!r} ({type(error).__name__}: {error}). "
            "Check the network and `hf auth login`, or run without --push_to_hub and upload the output folder later."
        ) from None


def upload_to_hub(args: argparse.Namespace, repo_id: str | None) -> None:
    if repo_id is None:
        return
    from huggingface_hub import upload_folder

    try:
        upload_folder(
            repo_id=repo_id,
            folder_path=args.output_dir,
            commit_message="End of training",
            ignore_patterns=[f"{CHECKPOINT_PREFIX}*", "logs/*"],
        )
    except Exception as error:
        logger.error(
            f"Upload to {repo_id} failed ({type(error).__name__}: {error}); the model is in {args.output_dir}."
        )


# ---------------------------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------------------------


def train_loop(
    accelerator: Accelerator,
    args: argparse.Namespace,
    model: torch.nn.Module,
    optimizer,
    lr_scheduler,
    dataloader,
    batch_sampler,
    step_fn: Callable[[dict, int], dict[str, torch.Tensor]],
    validate_fn: Callable[[int], None],
    ema: EMAModel | None,
    metrics: MetricsLog,
    first_step: int,
) -> int:
    """Optimise until `--max_train_steps` (or `--stop_at_step`, then checkpoint and return early); returns the last step.

    `step_fn(batch, step)` returns scalar tensors, "loss" among them (backpropagated); every metric is summed on the
    device and averaged over processes and steps only every `--logging_steps`, so no step waits on a host sync.
    Checkpoints every `--checkpointing_steps`, validates every `--validation_steps` (on the main process, with the EMA
    weights) and at the end.
    """
    steps_per_epoch = max(1, len(dataloader) // args.gradient_accumulation_steps)
    end = args.stop_at_step or args.max_train_steps
    step = first_step
    epoch, skip = divmod(first_step * args.gradient_accumulation_steps, len(dataloader))
    sums: dict[str, torch.Tensor] = {}
    count, tick = 0, time.perf_counter()
    progress = tqdm(
        total=args.max_train_steps, initial=step, desc="steps", disable=not accelerator.is_local_main_process
    )
    logger.info(
        f"{len(dataloader)} batches per epoch and process, {steps_per_epoch} steps; starting at step {step}",
        main_process_only=True,
    )
    model.train()
    while step < end:
        batch_sampler.set_epoch(epoch)
        dataloader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        skip = 0
        for batch in loader:
            with accelerator.accumulate(model):
                values = step_fn(batch, step)
                accelerator.backward(values["loss"])
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in values.items():
                value = value.detach().float() / args.gradient_accumulation_steps
                sums[key] = sums[key] + value if key in sums else value
            if not accelerator.sync_gradients:
                continue

            step += 1
            count += 1
            progress.update(1)
            if ema is not None:
                ema.step(model.parameters())
            if step % args.logging_steps == 0 or step == args.max_train_steps:
                record = _record(accelerator, sums, count, step, lr_scheduler, time.perf_counter() - tick)
                sums, count, tick = {}, 0, time.perf_counter()
                progress.set_postfix(loss=f"{record['loss']:.4f}")
                if accelerator.is_main_process:
                    metrics.append(record)
                accelerator.log(record, step=step)
            paused = time.perf_counter()
            if args.validation_steps and step % args.validation_steps == 0 and step < args.max_train_steps:
                _validate(accelerator, args, model, ema, metrics, validate_fn, step)
            if step % args.checkpointing_steps == 0:  # after validation, so its scores are in the checkpoint
                save_checkpoint(accelerator, args, step)
            tick += time.perf_counter() - paused  # steps_per_s counts training time only
            if step >= end:
                break
        epoch += 1
    progress.close()
    if step < args.max_train_steps:  # --stop_at_step: the run goes on later from this checkpoint
        if step % args.checkpointing_steps:
            save_checkpoint(accelerator, args, step)
        logger.info(f"Stopped at step {step} (--stop_at_step); --resume_from_checkpoint latest goes on from here.")
        return step
    _validate(accelerator, args, model, ema, metrics, validate_fn, step)
    return step


def _record(accelerator, sums: dict, count: int, step: int, lr_scheduler, seconds: float) -> dict:
    keys = sorted(sums)
    stacked = torch.stack([sums[k] for k in keys]) / max(count, 1)
    averaged = accelerator.reduce(stacked, reduction="mean").tolist()
    record = {"step": step, **dict(zip(keys, averaged))}
    record["lr"] = lr_scheduler.get_last_lr()[0]
    record["steps_per_s"] = count / max(seconds, 1e-9)
    return record


def _validate(accelerator, args, model, ema, metrics: MetricsLog, validate_fn, step: int) -> None:
    if accelerator.is_main_process:
        model.eval()
        with ema_weights(ema, accelerator.unwrap_model(model)), torch.no_grad(), accelerator.autocast():
            validate_fn(step)
        model.train()
        steps, losses = metrics.series("loss")
        if steps:
            plot_curve(steps, losses, Path(args.output_dir) / "loss.png")
    accelerator.wait_for_everyone()
