"""Training state without pickles: a nested state dict is stored as JSON (its structure and plain values) plus
safetensors (its tensors), so resuming a run never unpickles anything.

`save_state_dict(state, folder, "optimizer")` writes `optimizer.json` and, when the state holds tensors,
`optimizer.safetensors`; `read_state_dict(folder, "optimizer")` gives back an equal dict: the same keys (int keys stay
int), tuples as tuples, tensors bitwise equal, floats exact (JSON writes the shortest repr that reads back the same).
`save_optimizer_state` / `load_optimizer_state` and `random_states` / `set_random_states` (Python, NumPy, torch CPU and
CUDA generators) are built on them.
"""

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


_TENSOR, _TUPLE, _ITEMS, _NDARRAY = "__tensor__", "__tuple__", "__items__", "__ndarray__"


def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """`obj` as a JSON-able tree; each tensor moves into `tensors` under its path (e.g. "state/0/exp_avg") and is
    replaced by a reference. Tuples, dicts with non-str keys and NumPy arrays are tagged so they come back as such.

    Raises:
        TypeError: a value that is none of tensors, NumPy arrays/scalars, dicts, lists, tuples, str, int, float, bool,
            None (naming where in the state it sits).
    """
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, np.ndarray):
        return {_NDARRAY: obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {_TUPLE: [flatten_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten_state(v, tensors, f"{path}/{k}" if path else k) for k, v in obj.items()}
        return {
            _ITEMS: [
                [flatten_state(k, tensors, f"{path}/key{i}"), flatten_state(v, tensors, f"{path}/{k}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise TypeError(f"cannot store {type(obj).__name__} at {path or 'the top'} of a training state without pickles")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    if not isinstance(tree, dict):
        return tree
    if _TENSOR in tree:
        return tensors[tree[_TENSOR]]
    if _NDARRAY in tree:
        return np.array(tree[_NDARRAY], dtype=tree["dtype"])
    if _TUPLE in tree:
        return tuple(unflatten_state(v, tensors) for v in tree[_TUPLE])
    if _ITEMS in tree:
        return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in tree[_ITEMS]}
    return {k: unflatten_state(v, tensors) for k, v in tree.items()}


def save_state_dict(state: Any, folder: str | os.PathLike, name: str) -> list[Path]:
    """`folder/name.json` (and `folder/name.safetensors` if `state` holds tensors); returns the files written."""
    tensors: dict[str, torch.Tensor] = {}
    tree = flatten_state(state, tensors)
    folder = Path(folder)
    written = [folder / f"{name}.json"]
    with open(written[0], "w", encoding="utf-8") as f:
        json.dump({"tensors": bool(tensors), "state": tree}, f)
    if tensors:
        written.append(folder / f"{name}.safetensors")
        save_file(tensors, written[1], metadata={"format": "pt"})
    return written


def read_state_dict(folder: str | os.PathLike, name: str) -> Any:
    """The state `save_state_dict` wrote as `folder/name.*`; tensors on the CPU."""
    folder = Path(folder)
    with open(folder / f"{name}.json", encoding="utf-8") as f:
        stored = json.load(f)
    tensors = load_file(folder / f"{name}.safetensors") if stored["tensors"] else {}
    return unflatten_state(stored["state"], tensors)


def save_optimizer_state(optimizer: torch.optim.Optimizer, folder: str | os.PathLike, name: str = "optimizer") -> None:
    """`optimizer.state_dict()` as `name.safetensors` (its tensors: moments, step counts) + `name.json` (the rest:
    param groups and hyperparameters)."""
    save_state_dict(optimizer.state_dict(), folder, name)


def load_optimizer_state(optimizer: torch.optim.Optimizer, folder: str | os.PathLike, name: str = "optimizer") -> None:
    """Load what `save_optimizer_state` wrote; the optimizer moves the tensors to its parameters' devices."""
    optimizer.load_state_dict(read_state_dict(folder, name))


def random_states() -> dict:
    """The global random generators' states: Python's, NumPy's, torch's CPU one and, when present, every CUDA one."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict) -> None:
    """Restore what `random_states` returned (CUDA states only where CUDA is present)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
