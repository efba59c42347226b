"""LoRA for `SoraPipeline`: diffusers' `LoraBaseMixin` API (load, save, `set_adapters`, fuse, unload) on the pipeline's
`transformer`, in diffusers' file format (`pytorch_lora_weights.safetensors`, PEFT keys prefixed with `transformer.`).

`DiTVideoTransformer3D`'s modules carry diffusers' `WanTransformer3DModel` names, so Wan 2.1 LoRAs load as they are:
diffusers-format ones directly, those of the original Wan trainers (`diffusion_model.blocks.0.self_attn.q.lora_down`
+ `.alpha`) and musubi-tuner (`lora_unet_...`) through diffusers' own Wan converters. The one module that differs is
the patch embedding (a Conv3d there, a `Linear` on `patchify`'s tokens here): its LoRA factors are reshaped the way
`loaders.original_checkpoint` reshapes the base weight.

Every LoRA key must land on a `Linear` of the transformer with the right shape; anything else raises `ValueError`
naming the keys, instead of PEFT skipping them silently.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path

import huggingface_hub
import torch
from diffusers.loaders.lora_base import LORA_WEIGHT_NAME, LORA_WEIGHT_NAME_SAFE, LoraBaseMixin, _fetch_state_dict
from diffusers.loaders.lora_conversion_utils import (
    _convert_musubi_wan_lora_to_diffusers,
    _convert_non_diffusers_wan_lora_to_diffusers,
)
from diffusers.utils import logging
from diffusers.utils.peft_utils import require_peft_backend
from huggingface_hub.utils import validate_hf_hub_args
from torch import nn

from ..models.patching import conv3d_weight_to_linear
from ..utils.atomic import atomic_entries


logger = logging.get_logger(__name__)

TRANSFORMER_NAME = "transformer"
# PEFT's `PeftModel.save_pretrained` prefixes every key with this.
_PEFT_MODEL_PREFIX = "base_model.model."
# `blocks.0.attn1.to_q.lora_A.weight`, `....lora_B.bias` (lora_bias), `....lora_magnitude_vector` (DoRA)
_LORA_KEY = re.compile(r"(?P<module>.+)\.(?:(?P<factor>lora_A|lora_B)\.(?P<param>weight|bias)|lora_magnitude_vector)")
_SHOWN = 12  # keys listed per kind of mismatch in an error


class SoraLoraLoaderMixin(LoraBaseMixin):
    r"""
    Load LoRA layers into `SoraPipeline`'s `DiTVideoTransformer3D`, as diffusers' `WanLoraLoaderMixin` does for
    `WanPipeline`; `set_adapters`, `get_active_adapters`, `get_list_adapters`, `delete_adapters`, `enable_lora`,
    `disable_lora` and `unload_lora_weights` are diffusers' `LoraBaseMixin` methods.
    """

    _lora_loadable_modules = [TRANSFORMER_NAME]
    transformer_name = TRANSFORMER_NAME

    @classmethod
    @validate_hf_hub_args
    def lora_state_dict(
        cls, pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor], **kwargs
    ) -> dict[str, torch.Tensor] | tuple[dict[str, torch.Tensor], dict | None]:
        r"""
        Read a LoRA and return its state dict in diffusers' format (`transformer.<module>.lora_A.weight`, ...).

        Args:
            pretrained_model_name_or_path_or_dict (`str`, `os.PathLike` or `dict`):
                A Hub repo id (read from the local Hugging Face cache when offline), a folder, a `.safetensors` file,
                or a state dict. Key styles read: diffusers' (`transformer.`-prefixed PEFT keys), bare PEFT keys (as
                `get_peft_model_state_dict` returns them, or `base_model.model.`-prefixed as PEFT saves them), the
                original Wan trainers' (`diffusion_model.*.lora_down/lora_up` with `.alpha`) and musubi-tuner's
                (`lora_unet_*`).
            weight_name (`str`, *optional*): file name in the folder or repo; by default
                `pytorch_lora_weights.safetensors`, or the folder's only `.safetensors` file.
            subfolder (`str`, *optional*): folder inside the repo or folder.
            local_files_only (`bool`, *optional*): never download; with it (or `HF_HUB_OFFLINE=1`) a Hub id resolves
                to its cached snapshot, where `weight_name` may be left out.
            cache_dir, revision, token, force_download, proxies: as in diffusers' `load_lora_weights`.
            use_safetensors (`bool`, *optional*): `None` tries `.safetensors` first, then a pickled `.bin`.
            return_lora_metadata (`bool`, defaults to `False`): also return the LoRA config stored in the file.

        Returns:
            The state dict, or `(state_dict, metadata)` with `return_lora_metadata=True`.
        """
        cache_dir = kwargs.pop("cache_dir", None)
        force_download = kwargs.pop("force_download", False)
        proxies = kwargs.pop("proxies", None)
        local_files_only = kwargs.pop("local_files_only", None)
        token = kwargs.pop("token", None)
        revision = kwargs.pop("revision", None)
        subfolder = kwargs.pop("subfolder", None)
        weight_name = kwargs.pop("weight_name", None)
        use_safetensors = kwargs.pop("use_safetensors", None)
        return_lora_metadata = kwargs.pop("return_lora_metadata", False)
        if kwargs:
            raise TypeError(f"lora_state_dict() got unexpected keyword arguments: {sorted(kwargs)}")

        # diffusers' rule: without `use_safetensors`, try safetensors and fall back to a pickled `.bin`.
        allow_pickle = use_safetensors is None
        source, subfolder = _local_source(
            pretrained_model_name_or_path_or_dict, weight_name, subfolder, local_files_only, cache_dir, revision
        )
        state_dict, metadata = _fetch_state_dict(
            pretrained_model_name_or_path_or_dict=source,
            weight_name=weight_name,
            use_safetensors=True if use_safetensors is None else use_safetensors,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            force_download=force_download,
            proxies=proxies,
            token=token,
            revision=revision,
            subfolder=subfolder,
            user_agent={"file_type": "attn_procs_weights", "framework": "pytorch"},
            allow_pickle=allow_pickle,
        )
        state_dict = convert_lora_state_dict_to_sora(state_dict)
        return (state_dict, metadata) if return_lora_metadata else state_dict

    @require_peft_backend
    def load_lora_weights(
        self,
        pretrained_model_name_or_path_or_dict: str | os.PathLike | dict[str, torch.Tensor],
        adapter_name: str | None = None,
        hotswap: bool = False,
        **kwargs,
    ) -> None:
        r"""
        Load a LoRA into `self.transformer` as adapter `adapter_name`.

        Args:
            pretrained_model_name_or_path_or_dict: see `lora_state_dict` (which takes the remaining `kwargs`).
            adapter_name (`str`, *optional*): defaults to `default_{i}`.
            hotswap (`bool`, defaults to `False`): replace the weights of the loaded adapter `adapter_name` in place
                (see diffusers' `load_lora_weights`).
            low_cpu_mem_usage (`bool`, *optional*): skip initialising the LoRA weights before loading them.

        Raises:
            `ValueError` naming the keys when the LoRA does not fit the transformer (another architecture, width or
            rank), before the transformer is changed.

        Examples:

        ```py
        >>> pipe = SoraPipeline.from_pretrained(path)
        >>> pipe.load_lora_weights("lora_folder", adapter_name="style")
        >>> pipe.set_adapters(["style"], adapter_weights=[0.8])
        >>> video = pipe("a red circle", attention_kwargs={"scale": 1.0}).frames[0]
        ```
        """
        low_cpu_mem_usage = kwargs.pop("low_cpu_mem_usage", False)
        if isinstance(pretrained_model_name_or_path_or_dict, dict):  # never change the caller's dict
            pretrained_model_name_or_path_or_dict = pretrained_model_name_or_path_or_dict.copy()
        kwargs["return_lora_metadata"] = True
        state_dict, metadata = self.lora_state_dict(pretrained_model_name_or_path_or_dict, **kwargs)
        self.load_lora_into_transformer(
            state_dict,
            transformer=getattr(self, self.transformer_name),
            adapter_name=adapter_name,
            metadata=metadata,
            _pipeline=self,
            low_cpu_mem_usage=low_cpu_mem_usage,
            hotswap=hotswap,
        )

    @classmethod
    def load_lora_into_transformer(
        cls,
        state_dict: dict[str, torch.Tensor],
        transformer: nn.Module,
        adapter_name: str | None = None,
        _pipeline=None,
        low_cpu_mem_usage: bool = False,
        hotswap: bool = False,
        metadata: dict | None = None,
    ) -> None:
        r"""
        Load a diffusers-format LoRA state dict (`transformer.`-prefixed or bare PEFT keys) into `transformer`.

        Raises `ValueError` listing every key that names no `Linear` of the transformer, misses its partner factor, or
        has the wrong shape or rank; nothing is loaded then. A state dict none of whose keys is a LoRA factor loads
        nothing with diffusers' "No LoRA keys associated to ..." warning, as diffusers' loaders do.
        """
        if not state_dict:
            raise ValueError("The LoRA state dict is empty.")
        if not any(_LORA_KEY.fullmatch(_strip_prefix(key, f"{cls.transformer_name}.")) for key in state_dict):
            logger.warning(
                f"No LoRA keys associated to {type(transformer).__name__} found with the prefix="
                f"{cls.transformer_name!r}: none of the {len(state_dict)} keys is a LoRA factor (`lora_A`/`lora_B` "
                "weights); nothing was loaded."
            )
            return
        state_dict = _with_prefix(state_dict, cls.transformer_name)
        check_lora_fits(state_dict, transformer, prefix=cls.transformer_name, metadata=metadata)
        logger.info(f"Loading {cls.transformer_name}.")
        transformer.load_lora_adapter(
            state_dict,
            network_alphas=None,
            adapter_name=adapter_name,
            metadata=metadata,
            _pipeline=_pipeline,
            low_cpu_mem_usage=low_cpu_mem_usage,
            hotswap=hotswap,
            prefix=cls.transformer_name,
        )

    @classmethod
    def save_lora_weights(
        cls,
        save_directory: str | os.PathLike,
        transformer_lora_layers: dict[str, torch.nn.Module | torch.Tensor] | None = None,
        is_main_process: bool = True,
        weight_name: str | None = None,
        save_function: Callable | None = None,
        safe_serialization: bool = True,
        transformer_lora_adapter_metadata: dict | None = None,
    ) -> None:
        r"""
        Write a LoRA in diffusers' format: `save_directory/pytorch_lora_weights.safetensors` with keys
        `transformer.<module>.lora_A.weight` ..., written to a temporary file and renamed into place, so a reader
        never sees a half-written file.

        Args:
            save_directory (`str` or `os.PathLike`): folder to write to (created if missing).
            transformer_lora_layers (`dict[str, torch.Tensor]`): the transformer's LoRA weights, e.g.
                `peft.get_peft_model_state_dict(pipe.transformer)`.
            is_main_process (`bool`, defaults to `True`): only the main process writes (distributed training).
            weight_name (`str`, *optional*): file name; defaults to `pytorch_lora_weights.safetensors` (`.bin` without
                `safe_serialization`).
            save_function (`Callable`, *optional*): `save_function(state_dict, path)` instead of safetensors/torch.
            safe_serialization (`bool`, defaults to `True`): safetensors rather than pickle.
            transformer_lora_adapter_metadata (`dict`, *optional*): the LoRA config
                (`pipe.transformer.peft_config[name].to_dict()`), stored in the file so `lora_alpha` survives.
        """
        if not transformer_lora_layers:
            raise ValueError(
                "You must pass `transformer_lora_layers` (e.g. `get_peft_model_state_dict(transformer)`)."
            )
        if not is_main_process:
            return
        cls._save_lora_weights(
            save_directory=save_directory,
            lora_layers={cls.transformer_name: transformer_lora_layers},
            lora_metadata={cls.transformer_name: transformer_lora_adapter_metadata},
            is_main_process=is_main_process,
            weight_name=weight_name,
            save_function=save_function,
            safe_serialization=safe_serialization,
        )

    @staticmethod
    def write_lora_layers(
        state_dict: dict[str, torch.Tensor],
        save_directory: str | os.PathLike,
        is_main_process: bool,
        weight_name: str | None,
        save_function: Callable | None,
        safe_serialization: bool,
        lora_adapter_metadata: dict | None = None,
    ) -> None:
        """diffusers' `LoraBaseMixin.write_lora_layers`, made atomic: it writes into a staging folder inside
        `save_directory` (`utils.atomic.atomic_entries`, where safetensors' own temporary stays too), and the file is
        then renamed into place (same file system, so the rename is atomic)."""
        if os.path.isfile(save_directory):
            raise ValueError(f"`save_directory` must be a folder, got the file {str(save_directory)!r}.")
        weight_name = weight_name or (LORA_WEIGHT_NAME_SAFE if safe_serialization else LORA_WEIGHT_NAME)
        target = Path(save_directory, weight_name)
        with atomic_entries(target.parent) as staging:
            LoraBaseMixin.write_lora_layers(
                state_dict=state_dict,
                save_directory=staging,
                is_main_process=is_main_process,
                weight_name=target.name,
                save_function=save_function,
                safe_serialization=safe_serialization,
                lora_adapter_metadata=lora_adapter_metadata,
            )
        logger.info(f"LoRA weights saved in {target}")

    def fuse_lora(
        self,
        components: list[str] = [TRANSFORMER_NAME],  # noqa: B006 (diffusers' signature)
        lora_scale: float = 1.0,
        safe_fusing: bool = False,
        adapter_names: list[str] | None = None,
        **kwargs,
    ) -> None:
        r"""
        Merge the active (or the named) adapters into the transformer's weights, scaled by `lora_scale`: sampling
        then costs what the base model costs. `unfuse_lora()` takes them out again.

        Args:
            components (`list[str]`, defaults to `["transformer"]`): components to fuse into.
            lora_scale (`float`, defaults to 1.0): how strongly the LoRA acts.
            safe_fusing (`bool`, defaults to `False`): check the fused weights for NaN first and refuse if any.
            adapter_names (`list[str]`, *optional*): adapters to fuse; all active ones by default.
        """
        super().fuse_lora(
            components=components,
            lora_scale=lora_scale,
            safe_fusing=safe_fusing,
            adapter_names=adapter_names,
            **kwargs,
        )

    def unfuse_lora(self, components: list[str] = [TRANSFORMER_NAME], **kwargs) -> None:  # noqa: B006
        r"""Reverse `fuse_lora()`: subtract the fused adapters from the transformer's weights."""
        super().unfuse_lora(components=components, **kwargs)


# ---- key styles ---------------------------------------------------------------------------------------------------


def convert_lora_state_dict_to_sora(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA state dict in any of the key styles `SoraLoraLoaderMixin.lora_state_dict` reads -> diffusers' format
    for `DiTVideoTransformer3D` (`transformer.<module>.lora_A.weight`, ...). The input is not modified."""
    state_dict = {_strip_prefix(key, _PEFT_MODEL_PREFIX): value for key, value in state_dict.items()}
    if not any(key.startswith(f"{TRANSFORMER_NAME}.") for key in state_dict) and _has_original_wan_names(state_dict):
        state_dict = {f"diffusion_model.{key}": value for key, value in state_dict.items()}  # prefix-less Wan trainers
    if any(key.startswith("diffusion_model.") for key in state_dict):
        state_dict = _convert_with(_convert_non_diffusers_wan_lora_to_diffusers, state_dict, "original Wan")
    elif any(key.startswith("lora_unet_") for key in state_dict):
        state_dict = _convert_with(_convert_musubi_wan_lora_to_diffusers, state_dict, "musubi-tuner Wan")
    state_dict = _with_prefix(state_dict, TRANSFORMER_NAME)

    dora_scales = [key for key in state_dict if "dora_scale" in key]
    if dora_scales:  # as diffusers' WanLoraLoaderMixin does
        logger.warning(
            f"Ignoring {len(dora_scales)} `dora_scale` keys: DoRA checkpoints in this layout are not supported."
        )
        state_dict = {key: value for key, value in state_dict.items() if "dora_scale" not in key}

    # Wan's patch embedding is a Conv3d, ours a Linear on `patchify`'s (pt, ph, pw, C) tokens: a Conv3d LoRA's
    # factors reshape exactly as the base weight does (lora_A (r, C, pt, ph, pw) -> (r, pt*ph*pw*C); lora_B
    # (D, r, 1, 1, 1) -> (D, r)).
    patch = f"{TRANSFORMER_NAME}.patch_embedding."
    for key, value in state_dict.items():
        if key.startswith(patch) and value.ndim == 5:
            state_dict[key] = conv3d_weight_to_linear(value) if ".lora_A." in key else value.flatten(1)
    return state_dict


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _with_prefix(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Bare PEFT keys (no key starts with `prefix.`) get the prefix; a dict that has it is returned unchanged."""
    if any(key.startswith(f"{prefix}.") for key in state_dict):
        return state_dict
    return {f"{prefix}.{key}": value for key, value in state_dict.items()}


def _has_original_wan_names(state_dict: dict[str, torch.Tensor]) -> bool:
    """Module names of the original Wan 2.1 code (`blocks.0.self_attn.q`), as some trainers save them unprefixed."""
    return any(key.startswith("blocks.") and (".self_attn." in key or ".cross_attn." in key) for key in state_dict)


def _convert_with(converter: Callable, state_dict: dict[str, torch.Tensor], style: str) -> dict[str, torch.Tensor]:
    """Run one of diffusers' Wan LoRA converters, which raise bare `ValueError`s (or `min()` of nothing) on keys they
    do not know; re-raise naming the keys."""
    # diffusers' converters scale some caller tensors in place (`*=` on the alpha path): give them copies.
    state_dict = {key: value.clone() for key, value in state_dict.items()}
    try:
        return converter(state_dict)
    except (ValueError, KeyError) as error:
        keys = sorted(state_dict)
        raise ValueError(
            f"Could not convert this {style}-style LoRA ({len(keys)} keys, e.g. {keys[:_SHOWN]}) to "
            f"DiTVideoTransformer3D's (Wan 2.1) module names: {error!r}"
        ) from error


def _local_source(
    source: str | os.PathLike | dict,
    weight_name: str | None,
    subfolder: str | None,
    local_files_only: bool | None,
    cache_dir: str | os.PathLike | None,
    revision: str | None,
) -> tuple[str | dict, str | None]:
    """Where diffusers' `_fetch_state_dict` should read, and the subfolder it should still apply.

    A local folder takes `subfolder` into the path (diffusers would otherwise guess the file name in the folder's top
    level). Offline, a Hub id without `weight_name` becomes its cached snapshot folder: diffusers would need the
    network to list the repo's files (`model_info`) and refuses offline without a `weight_name`.
    """
    if isinstance(source, dict):
        return source, subfolder
    source = os.fspath(source)
    path = Path(source).expanduser()
    if path.is_file():
        return str(path), None
    if path.is_dir():
        return str(path / subfolder if subfolder else path), None
    offline = bool(local_files_only) or huggingface_hub.constants.HF_HUB_OFFLINE
    if weight_name is not None or not offline:
        return source, subfolder
    try:
        snapshot = huggingface_hub.snapshot_download(
            source, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception as error:  # LocalEntryNotFoundError, HFValidationError (not a repo id), ...
        cache = cache_dir or huggingface_hub.constants.HF_HUB_CACHE
        raise OSError(
            f"Cannot load a LoRA from {source!r}: it is not a local file or folder, and no snapshot of a Hub repo of "
            f"that name is in the Hugging Face cache ({cache}); downloads are off (offline mode / local_files_only)."
        ) from error
    return str(Path(snapshot, subfolder) if subfolder else Path(snapshot)), None


# ---- fit check --------------------------------------------------------------------------------------------------


def check_lora_fits(
    state_dict: dict[str, torch.Tensor],
    transformer: nn.Module,
    prefix: str = TRANSFORMER_NAME,
    metadata: dict | None = None,
) -> None:
    """Raise `ValueError` unless every key of a diffusers-format LoRA state dict is a LoRA factor (or bias / DoRA
    magnitude) of a `Linear` in `transformer`, with both factors present, shapes that fit the layer, and one rank per
    layer (the `r` of `metadata` when it gives one for all layers).

    PEFT itself would skip keys that name no module and fail with a bare size-mismatch `RuntimeError` on shapes.
    """
    # Modules as PEFT sees them: a layer that already holds an adapter is a LoRA wrapper around its `base_layer`.
    layers = {name: getattr(module, "base_layer", module) for name, module in transformer.named_modules()}
    other_components, not_lora, no_layer, misshapen = [], [], [], []
    factors: dict[str, dict[str, torch.Size | None]] = {}  # module -> {"lora_A": shape, "lora_B": shape}
    for key, value in state_dict.items():
        if not key.startswith(f"{prefix}."):
            other_components.append(key)
            continue
        match = _LORA_KEY.fullmatch(key[len(prefix) + 1 :])
        if match is None:
            not_lora.append(key)
            continue
        layer = layers.get(match["module"])
        if not isinstance(layer, nn.Linear):
            no_layer.append(key)
            continue
        factor, param = match["factor"], match["param"]
        if param == "weight":
            factors.setdefault(match["module"], {})[factor] = None  # present; its shape is filled in if it fits
        if factor is None:  # DoRA magnitude: one per output feature
            expected = (layer.out_features,)
            if tuple(value.shape) != expected:
                misshapen.append(f"{key}: {tuple(value.shape)}, layer needs {expected}")
            continue
        if param == "bias":
            if factor != "lora_B" or tuple(value.shape) != (layer.out_features,):
                misshapen.append(f"{key}: {tuple(value.shape)}, layer needs lora_B.bias of ({layer.out_features},)")
            continue
        features = layer.in_features if factor == "lora_A" else layer.out_features
        if value.ndim != 2 or value.shape[1 if factor == "lora_A" else 0] != features:
            needs = f"(r, {features})" if factor == "lora_A" else f"({features}, r)"
            misshapen.append(f"{key}: {tuple(value.shape)}, layer {match['module']} needs {needs}")
            continue
        factors[match["module"]][factor] = value.shape

    unpaired, rank_mismatch = [], []
    config_rank = (metadata or {}).get(f"{prefix}.r") if not (metadata or {}).get(f"{prefix}.rank_pattern") else None
    for module, shapes in sorted(factors.items()):
        if set(shapes) != {"lora_A", "lora_B"}:
            missing = "lora_B" if "lora_A" in shapes else "lora_A"
            unpaired.append(f"{prefix}.{module}.{missing}.weight")
            continue
        if None in shapes.values():
            continue  # reported as misshapen
        rank_a, rank_b = shapes["lora_A"][0], shapes["lora_B"][1]
        if rank_a != rank_b or (config_rank is not None and rank_a != config_rank):
            stored = f", the stored config says r={config_rank}" if config_rank is not None else ""
            rank_mismatch.append(f"{prefix}.{module}: lora_A rank {rank_a}, lora_B rank {rank_b}{stored}")

    problems = [
        (other_components, f"keys for components other than `{prefix}` (this pipeline loads LoRAs into the {prefix})"),
        (not_lora, "keys that are not LoRA factors (`lora_A`/`lora_B` weights, `lora_B.bias`)"),
        (no_layer, f"keys that name no Linear layer of {type(transformer).__name__} (a LoRA for another model?)"),
        (misshapen, "keys whose shape does not fit the layer (a LoRA for a model of another width?)"),
        (unpaired, "missing keys (each LoRA layer needs both factors)"),
        (rank_mismatch, "layers whose factors disagree on the rank"),
    ]
    found = [
        f"{len(keys)} {what}: {keys[:_SHOWN]}{' ...' if len(keys) > _SHOWN else ''}" for keys, what in problems if keys
    ]
    if found:
        raise ValueError(
            f"This LoRA ({len(state_dict)} keys) does not fit {type(transformer).__name__}; nothing was loaded. "
            + "; ".join(found)
        )
