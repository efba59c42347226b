"""An exponential moving average of the trained weights (diffusers' `EMAModel`): validation and the final model use
it, and each checkpoint holds it as `ema/`, a loadable model folder."""

import argparse
import contextlib
import os
import warnings

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from diffusers.utils import logging as diffusers_logging


def create_ema(model: torch.nn.Module, args: argparse.Namespace, accelerator: Accelerator) -> EMAModel | None:
    """An EMA of `model`'s weights (`--use_ema`, `--ema_decay`) on the accelerator's device, or `None`."""
    if not args.use_ema:
        return None
    ema = EMAModel(model.parameters(), decay=args.ema_decay, model_cls=type(model), model_config=model.config)
    ema.to(accelerator.device)
    return ema


def save_ema(ema: EMAModel, path: str | os.PathLike) -> None:
    """The EMA as a model folder (config.json with the EMA's own keys + safetensors weights)."""
    ema.save_pretrained(str(path))


def read_ema(path: str | os.PathLike, model_cls: type) -> EMAModel:
    """An `EMAModel` from a folder `save_ema` wrote (safetensors: nothing is unpickled)."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # the EMA's own keys in config.json are not model arguments
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # diffusers' EMAModel passes a path to from_config
            return EMAModel.from_pretrained(str(path), model_cls)
    finally:
        diffusers_logging.set_verbosity(verbosity)


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
