"""Checkpoints of a training run, written atomically and read back without unpickling anything.

A checkpoint is written into a temp folder `.checkpoint-STEP.tmp-PID` (PID: the main process's); its completion marker
(`checkpoint.json`, listing every file and its size) is written last, and only then is the folder renamed to
`checkpoint-STEP` and are checkpoints beyond `--checkpoints_total_limit` deleted. A run killed mid-save leaves a temp
folder, which the next save removes once that process is gone (`utils.atomic`: the temp folder of a run still saving
into the same folder is kept); `latest` never picks a folder without a marker, and a checkpoint whose files do not
match their marker or do not load is reported by name and passed over for the one before.

What a checkpoint holds (`write_state`), in safetensors and JSON only:

    model.safetensors                        the trained model's weights
    optimizer.safetensors, optimizer.json    the optimizer's tensors; its param groups and hyperparameters
    scheduler.json                           the learning-rate schedule's state
    scaler.json                              the fp16 gradient scaler's state (fp16 runs)
    training_state.json                      step, micro-batches, data order, the metrics history, the run's own state
    random_states_N.safetensors/.json        process N's Python, NumPy, torch (and CUDA) generator states
    ema/                                     the EMA as a model folder (with --use_ema)
    checkpoint.json                          the completion marker

Checkpoints that `accelerator.save_state` wrote (this package's layout until 2026-12) have no marker but
`optimizer.bin`, `scheduler.bin`, `random_states_0.pkl` and `custom_checkpoint_0.pkl`; they are still resumed, read
with torch's weights-only loader (`read_legacy_state`), which rebuilds tensors and plain values but cannot run code.
"""

import argparse
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file, save_file

from ..utils.atomic import commit, delete, is_stale, remove_stale_temps_in
from .ema import read_ema, save_ema
from .state import random_states, read_state_dict, save_state_dict, set_random_states


logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint.json"  # written last: its presence means every file listed in it was written
MODEL_FILE = "model.safetensors"
TRAINING_STATE = "training_state"
EMA_FOLDER = "ema"
# What `accelerator.save_state` wrote for these scripts: a checkpoint of the layout before this one.
LEGACY_FILES = (MODEL_FILE, "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl")
_FINAL = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")
# a save in progress, or one killed (`utils.atomic`'s names: `-RANDOM` only in the `.old` name of a replaced step)
_TEMP = re.compile(rf"^\.{CHECKPOINT_PREFIX}(\d+)\.(?:tmp|old)-(\d+)(?:-[0-9a-f]{{8}})?$")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint whose completion marker is present but one of whose files is missing, truncated or unreadable."""

    def __init__(self, path: str | os.PathLike, file: str, reason: str):
        self.path, self.file, self.reason = Path(path), file, reason
        super().__init__(f"{Path(path).name} is corrupt: {file}: {reason}")


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """STEP of a `checkpoint-STEP` folder name, `None` for any other name."""
    match = _FINAL.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | os.PathLike) -> bool:
    """Whether a checkpoint folder holds its completion marker (it was written to the end)."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def is_legacy(path: str | os.PathLike) -> bool:
    """Whether a checkpoint folder is a complete one of the older layout `accelerator.save_state` wrote."""
    return not is_complete(path) and all((Path(path) / name).is_file() for name in LEGACY_FILES)


def list_checkpoints(output_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """checkpoint-STEP folders of `output_dir`, oldest first: only complete ones (with their marker, or complete in
    the older layout) unless `complete_only=False`."""
    if not os.path.isdir(output_dir):
        return []
    found = [p for p in Path(output_dir).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    found = [p for p in found if is_complete(p) or is_legacy(p) or not complete_only]
    return sorted(found, key=checkpoint_step)


def temp_folders(output_dir: str | os.PathLike, stale_only: bool = False) -> list[Path]:
    """`.checkpoint-STEP.tmp-PID` (and `.old-PID-RANDOM`) folders: saves in progress, or left by a run killed mid-save
    (with `stale_only`, only those: their process is gone)."""
    if not os.path.isdir(output_dir):
        return []
    found = [p for p in Path(output_dir).iterdir() if p.is_dir() and _TEMP.match(p.name)]
    return sorted(p for p in found if not stale_only or is_stale(p))


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    step: int,
    write_fn: Callable[[Path], None],
    total_limit: int | None = None,
) -> Path:
    """Write `output_dir/checkpoint-STEP` atomically; call on every process.

    `write_fn(folder)` runs on every process and writes its files into the temp folder (each process its own, e.g. its
    random states). Then the main process writes the marker, renames the folder into place (replacing an older
    checkpoint of the same step only now) and deletes the oldest complete checkpoints beyond `total_limit`
    (0 or `None`: keep all). Temp folders (and any other temporaries of `output_dir`) of runs that were killed are
    removed first; an error while writing removes this save's temp folder.
    """
    output_dir = Path(output_dir)
    temp = output_dir / f".{CHECKPOINT_PREFIX}{step}.tmp-{_run_token(accelerator)}"
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    if accelerator.is_main_process:
        for stale in remove_stale_temps_in(output_dir):
            if _TEMP.match(stale.name):
                logger.warning(f"Removed {stale.name}: a checkpoint a stopped run did not finish writing")
        temp.mkdir(parents=True)
    try:
        accelerator.wait_for_everyone()
        write_fn(temp)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _write_marker(temp, step)
            commit(temp, final)  # an older checkpoint-STEP (a stopped run resumed and stopped at once) goes only now
    except BaseException:
        if accelerator.is_main_process:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    if accelerator.is_main_process and total_limit:
        for old in list_checkpoints(output_dir)[:-total_limit]:
            delete(old)
    accelerator.wait_for_everyone()
    return final


def _run_token(accelerator: Accelerator) -> int:
    """The main process's pid, known to every process: the temp folder's name is the same on all of them."""
    token = [os.getpid()]
    if accelerator.num_processes > 1:
        broadcast_object_list(token, from_process=0)
    return int(token[0])


def _write_marker(folder: Path, step: int) -> None:
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    marker = folder / COMPLETE_MARKER
    with open(marker, "w", encoding="utf-8") as f:  # inside the temp folder; `commit` fsyncs every file
        json.dump({"step": step, "files": files}, f, indent=1)


def verify_checkpoint(path: str | os.PathLike) -> dict:
    """The marker of a complete checkpoint, after checking every file it lists exists with its size.

    Raises:
        ValueError: `path` has no marker (an incomplete checkpoint).
        CorruptCheckpointError: naming the first file that is missing or has another size.
    """
    path = Path(path)
    if not is_complete(path):
        raise ValueError(
            f"{path} is not a complete checkpoint (no {COMPLETE_MARKER}: the run writing it stopped before the end)"
        )
    try:
        marker = json.loads((path / COMPLETE_MARKER).read_text(encoding="utf-8"))
        files = dict(marker["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CorruptCheckpointError(path, COMPLETE_MARKER, f"unreadable ({error})") from None
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            raise CorruptCheckpointError(path, name, "missing")
        if file.stat().st_size != size:
            raise CorruptCheckpointError(path, name, f"{file.stat().st_size} bytes, {size} written")
    return marker


def resume(
    accelerator: Accelerator,
    args: argparse.Namespace,
    load_fn: Callable[[Path], None],
    lr_scheduler=None,
) -> int:
    """Load `--resume_from_checkpoint` ("latest" or a folder) with `load_fn(folder)`; return the optimizer step it was
    saved at (0: a new run).

    "latest" takes the newest complete checkpoint of `--output_dir`; one that is corrupt (`verify_checkpoint` or
    `load_fn` fails) is reported by name and the one before is tried. A folder given by name must load.

    The schedule's shape always comes from the flags (`--lr_scheduler`, `--lr_warmup_steps`, `--max_train_steps`);
    given `lr_scheduler`, so does its peak: a `--learning_rate` other than the checkpoint's is applied, not silently
    replaced by the saved one (torch restores a LambdaLR's `base_lrs` from the checkpoint).

    Raises:
        ValueError: a folder that is not a complete `checkpoint-STEP` folder.
        CorruptCheckpointError: the folder given is corrupt, or every checkpoint "latest" found is.
    """
    if not args.resume_from_checkpoint:
        return 0
    if args.resume_from_checkpoint == "latest":
        candidates = list_checkpoints(args.output_dir)[::-1]
        for partial in list_checkpoints(args.output_dir, complete_only=False):
            if not is_complete(partial) and not is_legacy(partial):
                logger.warning(f"Skipping {partial.name}: no {COMPLETE_MARKER}, it was not written to the end")
        if not candidates:
            logger.info(f"No checkpoint in {args.output_dir}: starting a new run.", main_process_only=True)
            return 0
    else:
        path = Path(args.resume_from_checkpoint)
        if not path.is_dir() or checkpoint_step(path) is None:
            raise ValueError(f"--resume_from_checkpoint {path} is not a {CHECKPOINT_PREFIX}STEP folder")
        if not is_legacy(path):
            verify_checkpoint(path)
        candidates = [path]
    errors = []
    for path in candidates:
        try:
            if is_legacy(path):
                logger.warning(
                    f"{path.name} was written by accelerator.save_state (pickles): reading it with torch's "
                    "weights-only loader; the checkpoints of this run are written without pickles",
                    main_process_only=True,
                )
            else:
                verify_checkpoint(path)
            load_fn(path)
        except CorruptCheckpointError as error:
            if len(candidates) == 1 and args.resume_from_checkpoint != "latest":
                raise
            errors.append(error)
            logger.warning(f"{error}; resuming from the checkpoint before it")
            continue
        break
    else:
        raise errors[-1]
    logger.info(f"Resumed from {path}", main_process_only=True)
    if lr_scheduler is not None:
        apply_learning_rate(getattr(lr_scheduler, "scheduler", lr_scheduler), args.learning_rate)
    return checkpoint_step(path)


# ---------------------------------------------------------------------------------------------------------------------
# What a checkpoint holds
# ---------------------------------------------------------------------------------------------------------------------


def write_state(
    folder: str | os.PathLike,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer,
    lr_scheduler,
    ema=None,
    training_state: dict | None = None,
    trainable_only: bool = False,
) -> None:
    """Write a run's state into `folder` (see the module docstring); call on every process.

    The main process writes the model (unwrapped; with `trainable_only` only its parameters that require grad, e.g.
    a LoRA's adapter weights and not the frozen base), optimizer, schedule, scaler, EMA and `training_state` (a
    JSON-able dict: step, metrics, ...); every process writes its own random states.
    """
    folder = Path(folder)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        weights = trainable_state_dict(unwrapped) if trainable_only else unwrapped.state_dict()
        save_file({k: v.detach().contiguous() for k, v in weights.items()}, folder / MODEL_FILE, {"format": "pt"})
        save_state_dict(optimizer.state_dict(), folder, "optimizer")
        save_state_dict(lr_scheduler.state_dict(), folder, "scheduler")
        if accelerator.scaler is not None:
            save_state_dict(accelerator.scaler.state_dict(), folder, "scaler")
        if ema is not None:
            save_ema(ema, folder / EMA_FOLDER)
        state = {"accelerator_step": accelerator.step, **(training_state or {})}
        save_state_dict(state, folder, TRAINING_STATE)
    save_state_dict(random_states(), folder, f"random_states_{accelerator.process_index}")


def read_state(folder: str | os.PathLike, accelerator: Accelerator, ema_model_cls: type | None = None) -> dict:
    """Everything `write_state` wrote, read into memory before anything is applied (`apply_state`), so a file that
    does not load leaves the run untouched.

    Raises:
        CorruptCheckpointError: naming the first file that does not load.
    """
    folder = Path(folder)
    loaded = {}
    parts = [
        ("model", MODEL_FILE, lambda: load_file(folder / MODEL_FILE)),
        ("optimizer", "optimizer.json", lambda: read_state_dict(folder, "optimizer")),
        ("scheduler", "scheduler.json", lambda: read_state_dict(folder, "scheduler")),
        ("training_state", f"{TRAINING_STATE}.json", lambda: read_state_dict(folder, TRAINING_STATE)),
        (
            "random_states",
            f"random_states_{accelerator.process_index}.json",
            lambda: read_state_dict(folder, f"random_states_{accelerator.process_index}"),
        ),
    ]
    if accelerator.scaler is not None:
        parts.append(("scaler", "scaler.json", lambda: read_state_dict(folder, "scaler")))
    if ema_model_cls is not None:
        parts.append(("ema", EMA_FOLDER, lambda: read_ema(folder / EMA_FOLDER, ema_model_cls)))
    for key, file, read in parts:
        try:
            loaded[key] = read()
        except Exception as error:  # truncated, unparsable, missing: the checkpoint cannot be resumed
            raise CorruptCheckpointError(folder, file, f"{type(error).__name__}: {error}") from error
    return loaded


def read_legacy_state(folder: str | os.PathLike, accelerator: Accelerator, ema_model_cls: type | None = None) -> dict:
    """What `read_state` gives, from a checkpoint `accelerator.save_state` wrote (the layout before this one): its
    `.bin`/`.pkl` files are read with `torch.load(weights_only=True)`, which rebuilds tensors, containers and plain
    values (NumPy arrays allowed for the random states) and refuses anything else, so no code runs.

    Raises:
        CorruptCheckpointError: naming the first file that does not load.
    """
    folder = Path(folder)
    random_file = f"random_states_{accelerator.process_index}.pkl"

    def weights_only(name: str):
        return torch.load(folder / name, map_location="cpu", weights_only=True)

    def legacy_random_states() -> tuple[dict, int]:
        multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray  # numpy 2 / 1
        allowed = [np.ndarray, np.dtype, np.dtypes.UInt32DType, multiarray._reconstruct]
        with torch.serialization.safe_globals(allowed):
            saved = weights_only(random_file)
        states = {
            "python": saved["random_state"],
            "numpy": saved["numpy_random_seed"],
            "torch": saved["torch_manual_seed"],
        }
        if "torch_cuda_manual_seed" in saved:
            states["cuda"] = saved["torch_cuda_manual_seed"]
        return states, saved.get("step", 0)

    loaded = {}
    parts = [
        ("model", MODEL_FILE, lambda: load_file(folder / MODEL_FILE)),
        ("optimizer", "optimizer.bin", lambda: weights_only("optimizer.bin")),
        ("scheduler", "scheduler.bin", lambda: weights_only("scheduler.bin")),
        ("metrics", "custom_checkpoint_0.pkl", lambda: weights_only("custom_checkpoint_0.pkl")),
        ("random_states", random_file, legacy_random_states),
    ]
    if accelerator.scaler is not None:
        parts.append(("scaler", "scaler.pt", lambda: weights_only("scaler.pt")))
    if ema_model_cls is not None:
        parts.append(("ema", EMA_FOLDER, lambda: read_ema(folder / EMA_FOLDER, ema_model_cls)))
    for key, file, read in parts:
        try:
            loaded[key] = read()
        except Exception as error:
            raise CorruptCheckpointError(folder, file, f"{type(error).__name__}: {error}") from error
    loaded["random_states"], step = loaded["random_states"]
    loaded["training_state"] = {"accelerator_step": step, "metrics": loaded.pop("metrics")["records"]}
    return loaded


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s parameters that require grad, by name: what a run that trains part of a model (a LoRA) saves."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def apply_state(
    loaded: dict,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer,
    lr_scheduler,
    ema=None,
    trainable_only: bool = False,
) -> dict:
    """Put what `read_state` (or `read_legacy_state`) read into the run; returns its `training_state` dict. With
    `trainable_only` the checkpoint holds exactly the model's trainable parameters (`write_state(trainable_only=True)`).

    Raises:
        ValueError: with `trainable_only`, the checkpoint's weights are not the model's trainable parameters.
    """
    unwrapped = accelerator.unwrap_model(model)
    if trainable_only:
        trainable = trainable_state_dict(unwrapped)
        saved = loaded["model"]
        missing, extra = sorted(set(trainable) - set(saved)), sorted(set(saved) - set(trainable))
        resized = sorted(n for n in set(saved) & set(trainable) if saved[n].shape != trainable[n].shape)
        if missing or extra or resized:
            raise ValueError(
                f"the checkpoint's {MODEL_FILE} does not hold this run's trainable parameters: missing {missing[:3]}, "
                f"unexpected {extra[:3]}, other shapes {resized[:3]} (was it written with other --rank or "
                "--target_modules?)"
            )
        with torch.no_grad():
            for name, param in trainable.items():
                param.copy_(loaded["model"][name])
    else:
        unwrapped.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    lr_scheduler.load_state_dict(loaded["scheduler"])
    if accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(loaded["scaler"])
    if ema is not None:
        ema.load_state_dict(loaded["ema"].state_dict())
        ema.to(accelerator.device)
    training_state = dict(loaded["training_state"])
    accelerator.step = training_state.pop("accelerator_step", 0)
    set_random_states(loaded["random_states"])
    return training_state


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
