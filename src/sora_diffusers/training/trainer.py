"""The training loop every script shares: accelerate setup, optimizer and learning-rate schedule, EMA, checkpoints
and resume, metric logging and validation, `--stop_at_step`, and the final model with its Hub upload.

A script builds its model and data, hands them to `Trainer.prepare`, and supplies the two things that differ between
models: `step_fn(batch, step)`, returning scalar tensors with "loss" among them, and `validate_fn(step)`.
"""

import argparse
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from ..utils.atomic import atomic_entries, remove_stale_temps_in
from .buckets import BucketBatchSampler
from .cards import describe_hardware
from .checkpoints import (
    EMA_FOLDER,
    TRAINING_STATE,
    CorruptCheckpointError,
    apply_state,
    checkpoint_step,
    is_legacy,
    read_legacy_state,
    read_state,
    resume,
    save_checkpoint,
    write_state,
)
from .datasets import build_dataloader
from .ema import create_ema, ema_weights, read_ema, save_ema
from .hub import create_hub_repo, save_model_card, upload_to_hub
from .logging import MetricsLog, plot_curve
from .state import random_states, read_state_dict, save_state_dict, set_random_states


logger = get_logger(__name__)

# Where FSDP / DeepSpeed keep their sharded model and optimizer state: accelerate writes and reads it (its own format).
ACCELERATE_STATE = "accelerate_state"
_SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)


def setup_accelerator(args: argparse.Namespace, find_unused_parameters: bool = False) -> Accelerator:
    """An `Accelerator` for the flags (mixed precision, gradient accumulation, trackers), seeded per process."""
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
    """AdamW over `model`'s trainable parameters and the `--lr_scheduler` schedule spanning `--max_train_steps`."""
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


class Trainer:
    """
    One training run over the shared flags (`arguments.build_parser`).

    `Trainer(args)` sets up accelerate (seeded) and creates the Hub repo when `--push_to_hub`; `prepare` builds the
    bucketed data loader, optimizer, schedule and EMA and resumes; `train` runs the step loop; `save_final_model` puts
    the EMA weights into the model, saves it and uploads it; `end` closes the run and returns its summary.

    Args:
        args (`argparse.Namespace`): the parsed flags.
        find_unused_parameters (`bool`): DDP's option, for a model whose forward skips parameters on some steps.
    """

    def __init__(self, args: argparse.Namespace, find_unused_parameters: bool = False):
        self.args = args
        self.accelerator = setup_accelerator(args, find_unused_parameters)
        self.repo_id = create_hub_repo(args)
        if self.is_main_process:  # what runs killed in this folder left half-written (`utils.atomic`)
            for folder in (Path(args.output_dir), Path(args.output_dir) / "validation"):
                for stale in remove_stale_temps_in(folder):
                    logger.warning(f"Removed {stale.relative_to(args.output_dir)}: a stopped run did not finish it")
        self.metrics = MetricsLog(Path(args.output_dir) / "metrics.jsonl")
        self.ema = None
        self.trainable_only = False
        self.first_step = self.global_step = 0
        self._micro_batches = 0
        self._resumed_random_states = None

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def prepare(
        self,
        model: torch.nn.Module,
        dataset,
        bucket_ids: np.ndarray,
        ema_model: torch.nn.Module | None = None,
        trainable_only: bool = False,
    ) -> torch.nn.Module:
        """Bucketed batches of `dataset`, optimizer and schedule for `model`, accelerate, the EMA of `ema_model` (the
        module saved at the end; default `model`), then `--resume_from_checkpoint`. Returns the prepared model.

        With `trainable_only`, checkpoints hold only `model`'s parameters that require grad (a LoRA's adapter weights,
        not the frozen base it is added to)."""
        args = self.args
        self.trainable_only = trainable_only
        self.batch_sampler = BucketBatchSampler(bucket_ids, args.train_batch_size, seed=args.seed)
        dataloader = build_dataloader(dataset, self.batch_sampler, args.dataloader_num_workers)
        optimizer, lr_scheduler = create_optimizer(model, args, self.accelerator)
        prepared = self.accelerator.prepare(model, optimizer, dataloader, lr_scheduler)
        self.model, self.optimizer, self.dataloader, self.lr_scheduler = prepared
        self.ema_model = model if ema_model is None else ema_model
        self.ema = create_ema(self.ema_model, args, self.accelerator)
        if self.accelerator.distributed_type in _SHARDED:
            logger.warning(
                f"{self.accelerator.distributed_type.value}: the sharded model and optimizer state of each checkpoint "
                f"is saved by accelerate in {ACCELERATE_STATE}/ (its format, with pickles); the rest without",
                main_process_only=True,
            )
        self.first_step = self.global_step = resume(self.accelerator, args, self._load_checkpoint, self.lr_scheduler)
        # the generators as the checkpoint left them, put back when training starts: what a script does between
        # `prepare` and `train` (validation clips, a pipeline) draws from them in a resumed run too, after the resume
        # instead of before the checkpoint, and would shift every later draw
        self._resumed_random_states = random_states() if self.first_step else None
        if self.is_main_process:
            self.metrics.rewrite()
        self._micro_batches = self.first_step * args.gradient_accumulation_steps
        return self.model

    def save_checkpoint(self, step: int) -> Path:
        """`output_dir/checkpoint-STEP`, written atomically and without pickles (`checkpoints`); call on every
        process."""
        return save_checkpoint(
            self.accelerator,
            self.args.output_dir,
            step,
            lambda folder: self._write_checkpoint(folder, step),
            self.args.checkpoints_total_limit,
        )

    def _training_state(self, step: int) -> dict:
        """The run's own state, as JSON: step, data order and the metrics history."""
        return {
            "step": step,
            "micro_batches": self._micro_batches,
            "data_order": {"sampler_seed": self.args.seed, "batches_per_epoch": len(self.dataloader)},
            "metrics": self.metrics.records,
        }

    def _write_checkpoint(self, folder: Path, step: int) -> None:
        accelerator = self.accelerator
        if accelerator.distributed_type not in _SHARDED:
            write_state(
                folder,
                accelerator,
                self.model,
                self.optimizer,
                self.lr_scheduler,
                self.ema,
                self._training_state(step),
                trainable_only=self.trainable_only,
            )
            return
        accelerator.save_state(str(folder / ACCELERATE_STATE))
        if accelerator.is_main_process:
            save_state_dict(
                {"accelerator_step": accelerator.step, **self._training_state(step)}, folder, TRAINING_STATE
            )
            if self.ema is not None:
                save_ema(self.ema, folder / EMA_FOLDER)

    def _load_checkpoint(self, path: Path) -> None:
        """Read every file of the checkpoint at `path`, agree across processes that all of them loaded, then put the
        state into the run."""
        accelerator, ema_cls = self.accelerator, type(self.ema_model) if self.ema is not None else None
        loaded, error = None, None
        try:
            if accelerator.distributed_type in _SHARDED:
                loaded = {"training_state": read_state_dict(path, TRAINING_STATE)}
                if ema_cls is not None:
                    loaded["ema"] = read_ema(path / EMA_FOLDER, ema_cls)
            else:
                loaded = (read_legacy_state if is_legacy(path) else read_state)(path, accelerator, ema_cls)
            saved_step = loaded["training_state"].get("step", checkpoint_step(path))
            if saved_step != checkpoint_step(path):
                raise CorruptCheckpointError(path, f"{TRAINING_STATE}.json", f"holds step {saved_step}")
        except CorruptCheckpointError as failure:
            error = failure
        except Exception as failure:  # any other file of the checkpoint that does not load
            error = CorruptCheckpointError(path, f"{TRAINING_STATE}.json", f"{type(failure).__name__}: {failure}")
        if accelerator.num_processes > 1:  # every process resumes from the same checkpoint, or none does
            failed = accelerator.gather(
                torch.tensor([error is not None], device=accelerator.device, dtype=torch.int32)
            )
            if error is None and bool(failed.any()):
                error = CorruptCheckpointError(path, "random_states", "another process could not read its files")
        if error is not None:
            raise error
        if accelerator.distributed_type in _SHARDED:
            accelerator.load_state(str(path / ACCELERATE_STATE))
            training_state = dict(loaded["training_state"])
            accelerator.step = training_state.pop("accelerator_step", 0)
            if self.ema is not None:
                self.ema.load_state_dict(loaded["ema"].state_dict())
                self.ema.to(accelerator.device)
        else:
            training_state = apply_state(
                loaded,
                accelerator,
                self.model,
                self.optimizer,
                self.lr_scheduler,
                self.ema,
                trainable_only=self.trainable_only,
            )
        self.metrics.load_state_dict({"records": training_state["metrics"]})

    def micro_batch_rng(self) -> np.random.Generator:
        """The random stream of the next micro-batch, from (seed, micro-batch count, process) alone: a resumed run
        draws what the uninterrupted one would have."""
        self._micro_batches += 1
        return np.random.default_rng([self.args.seed, self._micro_batches, self.accelerator.process_index])

    @property
    def stopped(self) -> bool:
        """The run ended at `--stop_at_step`, before `--max_train_steps`: no final model."""
        return self.global_step < self.args.max_train_steps

    def train(
        self, step_fn: Callable[[dict, int], dict[str, torch.Tensor]], validate_fn: Callable[[int], None]
    ) -> bool:
        """Optimise until `--max_train_steps` (or `--stop_at_step`, then checkpoint and return early); returns whether
        the run reached `--max_train_steps` (then a final model is due).

        `step_fn(batch, step)` returns scalar tensors, "loss" among them (backpropagated); every metric is summed on
        the device and averaged over processes and steps only every `--logging_steps`, so no step waits on a host
        sync. Checkpoints every `--checkpointing_steps`, validates every `--validation_steps` (on the main process,
        with the EMA weights) and at the end.
        """
        args, accelerator, model, dataloader = self.args, self.accelerator, self.model, self.dataloader
        steps_per_epoch = max(1, len(dataloader) // args.gradient_accumulation_steps)
        end = args.stop_at_step or args.max_train_steps
        step = self.first_step
        epoch, skip = divmod(self.first_step * args.gradient_accumulation_steps, len(dataloader))
        sums: dict[str, torch.Tensor] = {}
        count, tick = 0, time.perf_counter()
        progress = tqdm(
            total=args.max_train_steps, initial=step, desc="steps", disable=not accelerator.is_local_main_process
        )
        logger.info(
            f"{len(dataloader)} batches per epoch and process, {steps_per_epoch} steps; starting at step {step}",
            main_process_only=True,
        )
        if self._resumed_random_states is not None:
            set_random_states(self._resumed_random_states)
            self._resumed_random_states = None
        model.train()
        while step < end:
            self.batch_sampler.set_epoch(epoch)
            dataloader.set_epoch(epoch)
            loader = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
            skip = 0
            for batch in loader:
                with accelerator.accumulate(model):
                    values = step_fn(batch, step)
                    accelerator.backward(values["loss"])
                    if accelerator.sync_gradients and args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                for key, value in values.items():
                    value = value.detach().float() / args.gradient_accumulation_steps
                    sums[key] = sums[key] + value if key in sums else value
                if not accelerator.sync_gradients:
                    continue

                step += 1
                self.global_step = step
                count += 1
                progress.update(1)
                if self.ema is not None:
                    self.ema.step(self.ema_model.parameters())
                if step % args.logging_steps == 0 or step == args.max_train_steps:
                    record = self._record(sums, count, step, time.perf_counter() - tick)
                    sums, count, tick = {}, 0, time.perf_counter()
                    progress.set_postfix(loss=f"{record['loss']:.4f}")
                    if accelerator.is_main_process:
                        self.metrics.append(record)
                    accelerator.log(record, step=step)
                paused = time.perf_counter()
                if args.validation_steps and step % args.validation_steps == 0 and step < args.max_train_steps:
                    self._validate(validate_fn, step)
                if step % args.checkpointing_steps == 0:  # after validation, so its scores are in the checkpoint
                    self.save_checkpoint(step)
                tick += time.perf_counter() - paused  # steps_per_s counts training time only
                if step >= end:
                    break
            epoch += 1
        progress.close()
        if step < args.max_train_steps:  # --stop_at_step: the run goes on later from this checkpoint
            if step % args.checkpointing_steps:
                self.save_checkpoint(step)
            logger.info(f"Stopped at step {step} (--stop_at_step); --resume_from_checkpoint latest goes on from here.")
            return False
        self._validate(validate_fn, step)
        return True

    def _record(self, sums: dict, count: int, step: int, seconds: float) -> dict:
        keys = sorted(sums)
        stacked = torch.stack([sums[k] for k in keys]) / max(count, 1)
        averaged = self.accelerator.reduce(stacked, reduction="mean").tolist()
        record = {"step": step, **dict(zip(keys, averaged))}
        record["lr"] = self.lr_scheduler.get_last_lr()[0]
        record["steps_per_s"] = count / max(seconds, 1e-9)
        return record

    def _validate(self, validate_fn: Callable[[int], None], step: int) -> None:
        accelerator = self.accelerator
        if accelerator.is_main_process:
            self.model.eval()
            with ema_weights(self.ema, accelerator.unwrap_model(self.model)), torch.no_grad(), accelerator.autocast():
                validate_fn(step)
            self.model.train()
            steps, losses = self.metrics.series("loss")
            if steps:
                plot_curve(steps, losses, Path(self.args.output_dir) / "loss.png")
        accelerator.wait_for_everyone()

    def save_final_model(self, save_fn: Callable[..., None], model_card: dict | None = None) -> None:
        """On the main process: the EMA weights put into the trained module (`ema_model` of `prepare`), `save_fn` of
        it, then, with `--push_to_hub`, a model card (`hub.save_model_card(**model_card)`: `description`, `model_class`,
        `pipeline_tag`, `tags`) and the upload of `--output_dir`.

        `save_fn(final, folder)` writes into `folder`, a staging folder inside `--output_dir` whose files and folders
        then replace their namesakes in `--output_dir` (`utils.atomic.atomic_entries`: a run killed while saving
        leaves the previous model, or none, never half of one). `save_fn(final)`, with one parameter, writes where it
        likes (atomically if it uses `utils.atomic`, as `save_lora_weights` does)."""
        self.accelerator.wait_for_everyone()
        if self.is_main_process:
            final = self.ema_model
            if self.ema is not None:
                self.ema.copy_to(final.parameters())
            if len(inspect.signature(save_fn).parameters) >= 2:
                with atomic_entries(self.args.output_dir) as staging:
                    save_fn(final, staging)
            else:
                save_fn(final)
            if self.repo_id is not None:
                card = {
                    "description": f"Trained with sora_diffusers for {self.global_step} steps.",
                    **(model_card or {}),
                }
                last = next((r for r in reversed(self.metrics.records) if "loss" in r), None)
                hardware = describe_hardware(self.accelerator.device, self.accelerator.num_processes)
                save_model_card(self.args, self.repo_id, last_record=last, hardware=hardware, **card)
            upload_to_hub(self.args, self.repo_id)

    def end(self) -> dict:
        """End the run (trackers closed); its summary: first and last step, output folder, and either the last
        training record or `stopped` (at `--stop_at_step`)."""
        self.accelerator.end_training()
        result = {"first_step": self.first_step, "global_step": self.global_step, "output_dir": self.args.output_dir}
        if self.stopped:
            return {**result, "stopped": True}
        last = next((r for r in reversed(self.metrics.records) if "loss" in r), {})
        return {**result, "last_record": last}
