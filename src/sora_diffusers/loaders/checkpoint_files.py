"""Reading checkpoint files safely: safetensors (single or sharded with an index) and `.pth` state dicts through
`torch.load(weights_only=True)` only. Every failure is a `CheckpointError` naming the file and what is wrong with it.

The key maps that turn what is read here into this package's models live in `original_checkpoint.py`.
"""

import json
import os
import pickle
from pathlib import Path

import torch


SAFETENSORS_INDEX_SUFFIX = ".safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose contents are not what the conversion needs."""


def load_safetensors_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of one `.safetensors` file, on the CPU. A missing, truncated or corrupt file raises
    `CheckpointError` naming it (safetensors checks the header against the file size before reading anything)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file.")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable safetensors file (truncated or corrupt? {type(error).__name__}: {error})."
        ) from error


def load_sharded_safetensors(folder: str | os.PathLike, prefix: str = "diffusion_pytorch_model") -> dict:
    """A model's weights from `folder`: `{prefix}.safetensors`, or the shards that
    `{prefix}.safetensors.index.json` lists.

    With an index, every shard it names must exist and hold exactly the keys the index gives it: a missing shard,
    a tensor in the wrong shard or a key the index does not list raises `CheckpointError` naming them.
    """
    folder = Path(folder)
    index_path = folder / f"{prefix}{SAFETENSORS_INDEX_SUFFIX}"
    single = folder / f"{prefix}.safetensors"
    if not index_path.is_file():
        if not single.is_file():
            found = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
            raise CheckpointError(
                f"{folder}: neither {single.name} nor {index_path.name} (safetensors files there: {found or 'none'})."
            )
        return load_safetensors_file(single)
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{index_path}: not a safetensors index with a `weight_map` ({error}).") from error
    by_shard: dict[str, set[str]] = {}
    for key, shard in weight_map.items():
        by_shard.setdefault(shard, set()).add(key)
    missing = sorted(shard for shard in by_shard if not (folder / shard).is_file())
    if missing:
        raise CheckpointError(f"{index_path} names shards that are not in {folder}: {missing}.")
    state_dict = {}
    for shard, keys in sorted(by_shard.items()):
        tensors = load_safetensors_file(folder / shard)
        if set(tensors) != keys:
            absent, extra = sorted(keys - set(tensors)), sorted(set(tensors) - keys)
            raise CheckpointError(
                f"{folder / shard} does not match {index_path.name}: missing {absent[:8]} "
                f"({len(absent)} in all), not in the index {extra[:8]} ({len(extra)} in all)."
            )
        state_dict.update(tensors)
    return state_dict


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A `.pth` / `.pt` state dict, read with `torch.load(weights_only=True)`: tensors and plain containers only, never
    code. A pickle that holds anything else, a corrupt file or a file that holds no flat `{name: tensor}` dict raises
    `CheckpointError` naming the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file.")
    try:
        state_dict = _torch_load_weights_only(path)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True): the pickle holds more than tensors (classes or code, "
            f"which would run on loading). It is not read here. To convert it, load it yourself in a trusted "
            f"environment and save its tensors with `safetensors.torch.save_file(state_dict, "
            f"'{path.with_suffix('.safetensors').name}')`, then pass that file. ({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt? {error}).") from error
    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise CheckpointError(f"{path}: expected a state dict {{name: tensor}}, got {type(state_dict).__name__}.")
    return state_dict


def _torch_load_weights_only(path: Path):
    try:  # memory-mapped: a 14B checkpoint is not read into RAM twice
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format: no mmap


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """`load_safetensors_file` for `.safetensors`, `load_torch_state_dict` for anything else."""
    if str(path).endswith(".safetensors"):
        return load_safetensors_file(path)
    return load_torch_state_dict(path)
