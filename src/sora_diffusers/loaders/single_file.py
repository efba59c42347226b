"""`from_single_file` for `DiTVideoTransformer3D` and `SpacetimeVAE`: a model from one checkpoint file, as diffusers'
`FromOriginalModelMixin` loads `WanTransformer3DModel` and `AutoencoderKLWan` (ComfyUI's repacks such as
`wan2.1_t2v_1.3B_fp16.safetensors` and `wan_2.1_vae.safetensors`, the original `Wan2.1_VAE.pth`, a diffusers-layout
file).

Unlike diffusers, no config is fetched from the Hub: every size is read from the tensor shapes (the VAE's completely;
the transformer's but its number of heads, which is `dim // 128` as in every Wan release unless passed). `config=`
takes a folder or Hub id holding a config.json instead (ours, or diffusers' Wan one), and keyword arguments override
single entries of either. Files are read with safetensors, `.pth` with `torch.load(weights_only=True)` only
(`checkpoint_files`); the key maps are `original_checkpoint`'s.
"""

import os
import re
from pathlib import Path

import torch


WAN_ATTENTION_HEAD_DIM = 128  # every Wan release: 1.3B 12 x 128, 5B 24 x 128, 14B 40 x 128
WAN22_TI2V_CHANNELS = 48  # Wan 2.2 TI2V-5B's latent channels: the one release trained with a timestep per frame
_HUB_URL = re.compile(r"https://(?:www\.)?(?:huggingface\.co|hf\.co)/([^/]+/[^/]+)/(?:blob|resolve)/([^/]+)/(.+)")


def resolve_single_file(link_or_path: str | os.PathLike, **hub_kwargs) -> Path:
    """A local file, or a file of a Hub repo named by its URL (`https://huggingface.co/ORG/NAME/blob/REV/FILE`, or
    `/resolve/REV/`), fetched with `huggingface_hub.hf_hub_download` (`cache_dir`, `revision`, `token`,
    `local_files_only`, `force_download`; `revision` overrides the URL's).

    Raises:
        OSError: no such local file, or the Hub file cannot be had (offline and not in the cache, no such repo).
        ValueError: neither a path nor a Hugging Face file URL.
    """
    text = os.fspath(link_or_path)
    if os.path.isfile(text):
        return Path(text)
    match = _HUB_URL.fullmatch(text)
    if match is None:
        if text.startswith(("http://", "https://")):
            raise ValueError(
                f"`pretrained_model_link_or_path_or_dict`={text!r} is not a Hugging Face file URL; expected "
                "https://huggingface.co/ORG/NAME/blob/REVISION/FILE (or /resolve/), a local file or a state dict."
            )
        raise OSError(f"`pretrained_model_link_or_path_or_dict`={text!r}: no such file.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo_id, url_revision, filename = match.groups()
    revision = hub_kwargs.pop("revision", None) or url_revision
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, **hub_kwargs))
    except (LocalEntryNotFoundError, EntryNotFoundError, HfHubHTTPError) as error:  # no repo, revision, access
        raise OSError(
            f"cannot get {filename!r} of the Hub repo {repo_id!r} at revision {revision!r}: {error}"
        ) from error


def read_single_file(source, **hub_kwargs) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of `source` (a path, a Hub file URL or a state dict) and a name for it in messages."""
    from .checkpoint_files import load_state_dict_file

    if isinstance(source, dict):
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in source.items()):
            raise TypeError("`pretrained_model_link_or_path_or_dict` as a dict must map names to tensors.")
        return dict(source), "the state dict"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"`pretrained_model_link_or_path_or_dict` must be a path, a Hugging Face file URL or a state dict, "
            f"not {type(source).__name__}."
        )
    if os.fspath(source).lower().endswith(".gguf"):
        raise ValueError(
            f"`pretrained_model_link_or_path_or_dict`={os.fspath(source)!r} is a GGUF (quantized) file, which is not "
            "supported; use a .safetensors file of the model."
        )
    path = resolve_single_file(source, **hub_kwargs)
    return load_state_dict_file(path), str(path)


def wan_transformer_config_from_state_dict(state_dict: dict[str, torch.Tensor], num_attention_heads=None) -> dict:
    """The diffusers `WanTransformer3DModel` config of a Wan transformer state dict in the original or diffusers
    layout, read from its shapes; the heads are `num_attention_heads` or `dim // 128` (Wan's head size).

    Raises `ValueError` for a state dict in this package's own layout (its 2-D patch embedding does not tell the patch
    size: pass a config) and for a width that 128-wide heads do not divide.
    """
    from .original_checkpoint import strip_single_file_prefix

    state_dict = strip_single_file_prefix(state_dict)
    patch = state_dict.get("patch_embedding.weight")
    if patch is None:
        raise ValueError("no `patch_embedding.weight`: not a Wan transformer checkpoint.")
    if patch.ndim != 5:
        raise ValueError(
            f"`patch_embedding.weight` is {patch.ndim}-D {tuple(patch.shape)}, not Wan's 5-D convolution: a checkpoint "
            "in this package's own layout, whose patch size its shapes do not tell; pass `config=` (the folder or Hub "
            "id of its config.json)."
        )
    original = "time_embedding.0.weight" in state_dict
    names = {  # (original name, diffusers name)
        "time": ("time_embedding.0.weight", "condition_embedder.time_embedder.linear_1.weight"),
        "text": ("text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight"),
        "ffn": ("blocks.0.ffn.0.weight", "blocks.0.ffn.net.0.proj.weight"),
        "head": ("head.head.weight", "proj_out.weight"),
        "q_norm": ("blocks.0.self_attn.norm_q.weight", "blocks.0.attn1.norm_q.weight"),
        "cross_norm": ("blocks.0.norm3.weight", "blocks.0.norm2.weight"),
    }
    name = {key: pair[0 if original else 1] for key, pair in names.items()}
    try:
        dim, in_channels, *patch_size = patch.shape
        freq_dim = state_dict[name["time"]].shape[1]
        text_dim = state_dict[name["text"]].shape[1]
        ffn_dim = state_dict[name["ffn"]].shape[0]
        out_channels = state_dict[name["head"]].shape[0] // (patch_size[0] * patch_size[1] * patch_size[2])
    except KeyError as error:
        raise ValueError(f"no {error.args[0]!r}: not a Wan transformer checkpoint.") from None
    if num_attention_heads is None and dim % WAN_ATTENTION_HEAD_DIM:
        raise ValueError(
            f"the width {dim} is not a whole number of Wan's {WAN_ATTENTION_HEAD_DIM}-wide heads; pass "
            "`num_attention_heads=` or `config=`."
        )
    heads = num_attention_heads or dim // WAN_ATTENTION_HEAD_DIM
    if dim % heads:
        raise ValueError(f"the width {dim} does not divide into `num_attention_heads`={heads} heads.")
    return {
        "patch_size": patch_size, "num_attention_heads": heads, "attention_head_dim": dim // heads,
        "in_channels": in_channels, "out_channels": out_channels, "text_dim": text_dim, "freq_dim": freq_dim,
        "ffn_dim": ffn_dim, "num_layers": len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")}),
        "cross_attn_norm": name["cross_norm"] in state_dict,
        "qk_norm": "rms_norm_across_heads" if name["q_norm"] in state_dict else None, "eps": 1e-6,
    }  # fmt: skip


def _transformer_config(wan: dict) -> dict:
    from .original_checkpoint import wan_transformer_config_to_sora

    return wan_transformer_config_to_sora(wan, per_frame_timesteps=wan.get("in_channels") == WAN22_TI2V_CHANNELS)


def _transformer_parts(state_dict, config: dict | None, overrides: dict) -> tuple[dict, dict]:
    from .original_checkpoint import convert_wan_transformer_state_dict

    if config is None:
        config = _transformer_config(
            wan_transformer_config_from_state_dict(state_dict, overrides.get("num_attention_heads"))
        )
    return {**config, **overrides}, convert_wan_transformer_state_dict(state_dict)


def _vae_config(wan: dict) -> dict:
    from .original_checkpoint import wan_vae_config_to_spacetime

    return wan_vae_config_to_spacetime(wan)


def _vae_parts(state_dict, config: dict | None, overrides: dict) -> tuple[dict, dict]:
    from .original_checkpoint import convert_wan_vae_state_dict, wan_vae_config_from_state_dict

    if config is None:
        config = _vae_config(wan_vae_config_from_state_dict(state_dict))
    return {**config, **overrides}, convert_wan_vae_state_dict(state_dict)


# class name -> (diffusers' Wan class of the same model, its config -> ours, (state dict, config, overrides) -> our
# config and state dict), as diffusers' SINGLE_FILE_LOADABLE_CLASSES maps a class name to its converter
SINGLE_FILE_LOADABLE_CLASSES = {
    "DiTVideoTransformer3D": ("WanTransformer3DModel", _transformer_config, _transformer_parts),
    "SpacetimeVAE": ("AutoencoderKLWan", _vae_config, _vae_parts),
}


def _loaded_config(cls, owner: str, config, subfolder, hub_kwargs: dict) -> dict | None:
    """`config=` as a dict of our keyword arguments: a folder or Hub id of ours or of the matching Wan class."""
    if config is None:
        return None
    if isinstance(config, dict):
        loaded = dict(config)
    elif isinstance(config, (str, os.PathLike)):
        kwargs = {k: v for k, v in hub_kwargs.items() if v is not None}
        loaded = cls.load_config(os.fspath(config), subfolder=subfolder, **kwargs)
    else:
        raise TypeError(f"`config` must be a folder, a Hub id or a dict, not {type(config).__name__}.")
    wan_class, from_wan, _ = SINGLE_FILE_LOADABLE_CLASSES[owner]
    class_name = loaded.get("_class_name", cls.__name__)
    if class_name == wan_class:
        return from_wan(loaded)
    if class_name != cls.__name__:
        raise ValueError(f"`config` is a {class_name!r} config; {cls.__name__} takes its own or {wan_class!r}'s.")
    return {k: v for k, v in loaded.items() if not k.startswith("_")}


class SingleFileMixin:
    """`from_single_file` for this package's models (see the module's docstring), and their `from_pretrained` of a
    diffusers Wan model folder; placed before `ModelMixin` in a model's bases."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' `ModelMixin.from_pretrained`; a folder of diffusers' matching Wan model (`WanTransformer3DModel`,
        `AutoencoderKLWan`: the `transformer` or `vae` subfolder of a `Wan-AI/*-Diffusers` repo) loads too, converted
        on the same tensors (`from_wan_pretrained`)."""
        model = from_wan_pretrained(cls, pretrained_model_name_or_path, kwargs)
        return model if model is not None else super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def from_single_file(
        cls,
        pretrained_model_link_or_path_or_dict: str | os.PathLike | dict,
        *,
        config: str | os.PathLike | dict | None = None,
        subfolder: str | None = None,
        torch_dtype: torch.dtype | None = None,
        dtype: torch.dtype | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        **kwargs,
    ):
        """A model from one checkpoint file, as diffusers' `from_single_file`: Wan's original or diffusers layout
        (ComfyUI's `model.diffusion_model.` prefix too), or this package's own with `config=`.

        Args:
            pretrained_model_link_or_path_or_dict: a `.safetensors` or `.pth` file, its Hugging Face URL
                (`https://huggingface.co/ORG/NAME/blob/main/FILE`) or a state dict.
            config: a folder or Hub id holding the config.json to use (with `subfolder`), or a dict; by default the
                config is read from the tensor shapes. A config of diffusers' matching Wan class is converted.
            torch_dtype, dtype: the dtype of the weights (float32 by default).
            cache_dir, force_download, local_files_only, token, revision: for a Hub URL or Hub config, as in
                `huggingface_hub.hf_hub_download`.
            kwargs: config entries to override, e.g. `num_attention_heads` for a transformer whose heads are not
                Wan's 128 wide, or `per_frame_timesteps` (read as True for Wan 2.2 TI2V-5B's 48 channels).

        Raises:
            TypeError: an argument of the wrong type, or a keyword that is not a config entry.
            ValueError: a checkpoint that is not of this model (the keys and shapes that do not fit are named).
            OSError: a file that cannot be had.
        """
        from .wan_conversion import build_model, cast_floating

        owner = next((c.__name__ for c in cls.__mro__ if c.__name__ in SINGLE_FILE_LOADABLE_CLASSES), None)
        parts = SINGLE_FILE_LOADABLE_CLASSES[owner][2]
        unknown = sorted(set(kwargs) - _init_parameters(cls))
        if unknown:
            raise TypeError(f"{cls.__name__}.from_single_file() got keywords that are not config entries: {unknown}.")
        if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
            raise ValueError(f"`torch_dtype`={torch_dtype} and `dtype`={dtype} disagree; pass one.")
        dtype = dtype or torch_dtype or torch.float32
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"`dtype` must be a floating torch.dtype, not {dtype!r}.")
        hub = dict(cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only, token=token)
        loaded = _loaded_config(cls, owner, config, subfolder, {**hub, "revision": revision})
        state_dict, where = read_single_file(pretrained_model_link_or_path_or_dict, revision=revision, **hub)
        try:
            init, converted = parts(state_dict, loaded, kwargs)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        return build_model(
            cls, init, cast_floating(converted, dtype), Path(where)
        )  # a CheckpointError is a ValueError


def _init_parameters(cls) -> set[str]:
    import inspect

    return {name for name in inspect.signature(cls.__init__).parameters if name != "self"}


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "proxies", "subfolder")


def from_wan_pretrained(cls, pretrained_model_name_or_path, kwargs: dict):
    """`cls.from_pretrained` of a folder (or Hub id) that holds diffusers' matching Wan model (`WanTransformer3DModel`
    for `DiTVideoTransformer3D`, `AutoencoderKLWan` for `SpacetimeVAE`), e.g. `subfolder="transformer"` of a
    `Wan-AI/*-Diffusers` repo: diffusers loads it with all of `kwargs`, and it is converted on the same tensors. `None`
    when the folder holds anything else (or no readable config), for diffusers' own `from_pretrained` to load or report.
    """
    owner = next((c.__name__ for c in cls.__mro__ if c.__name__ in SINGLE_FILE_LOADABLE_CLASSES), None)
    wan_class = SINGLE_FILE_LOADABLE_CLASSES[owner][0]
    try:
        config = cls.load_config(
            pretrained_model_name_or_path, **{k: kwargs[k] for k in _HUB_KWARGS if kwargs.get(k) is not None}
        )
    except (OSError, ValueError):
        return None
    if config.get("_class_name") != wan_class:
        return None
    import diffusers

    from .wan_conversion import convert_wan_models

    wan = getattr(diffusers, wan_class).from_pretrained(pretrained_model_name_or_path, **kwargs)
    per_frame = config.get("in_channels") == WAN22_TI2V_CHANNELS
    name = kwargs.get("subfolder") or ""
    return convert_wan_models({name: wan}, per_frame, str(pretrained_model_name_or_path))[name]
