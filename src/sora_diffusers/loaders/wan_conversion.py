"""Whole Wan checkpoints <-> `SoraPipeline` folders: find what a Wan folder holds (diffusers or original release
layout), convert every model with the key maps of `original_checkpoint.py`, and write the result atomically.

Used by `conversion_scripts/convert_wan_to_sora.py`; callable from Python too:

    >>> from sora_diffusers.loaders.wan_conversion import convert_wan_to_sora
    >>> convert_wan_to_sora("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "wan21-1.3b-sora", dtype=torch.bfloat16)

Weights are read with safetensors, or `torch.load(weights_only=True, mmap=True)` for the original VAE and UMT5 text
encoder (never unpickled code). A Hub id resolves only from the local huggingface_hub cache: nothing is downloaded.
"""

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..utils.atomic import atomic_path
from .checkpoint_files import CheckpointError, load_sharded_safetensors, load_state_dict_file, load_torch_state_dict
from .original_checkpoint import (
    convert_sora_transformer_state_dict_to_wan,
    convert_wan_transformer_state_dict,
    convert_wan_vae_state_dict,
    load_converted_state_dict,
    sora_transformer_config_to_wan,
    spacetime_vae_config_to_wan,
    wan_original_transformer_config_to_diffusers,
    wan_transformer_config_to_sora,
    wan_vae_config_from_state_dict,
    wan_vae_config_to_spacetime,
)
from .wan_umt5 import convert_wan_umt5_state_dict, wan_umt5_config_from_state_dict


# What each Wan generation's sampler uses (Wan's own configs; diffusers' scripts/convert_wan_to_diffusers.py).
WAN22_A14B_T2V_BOUNDARY_RATIO = 0.875  # the high-noise expert runs while t >= 0.875 * 1000
FLOW_SHIFT = {"t2v": 3.0, "ti2v": 5.0}
# (height, width, frames) each model was trained for: saved as the pipeline's defaults.
DEFAULT_SIZES = {"t2v": (480, 832, 81), "ti2v": (704, 1280, 121), "t2v-a14b": (720, 1280, 81)}
ORIGINAL_TOKENIZER_SUBFOLDER = "google/umt5-xxl"
ORIGINAL_TEXT_ENCODER_FILE = "models_t5_umt5-xxl-enc-bf16.pth"


@dataclass
class WanSource:
    """What a Wan checkpoint folder holds, found without reading any weights."""

    path: Path
    layout: str  # "diffusers" or "original"
    transformer_dirs: list[Path]  # one, or two for Wan 2.2 A14B (high-noise expert first)
    transformer_configs: list[dict]  # diffusers `WanTransformer3DModel` configs
    vae_path: Path  # a diffusers `vae/` folder or an original `Wan2.x_VAE.pth`
    kind: str  # "t2v", "ti2v" or "t2v-a14b"
    boundary_ratio: float | None = None
    tokenizer_dir: Path | None = None
    text_encoder_dir: Path | None = None  # a transformers text encoder folder, copied as it is
    scheduler_dir: Path | None = None
    text_encoder_file: Path | None = None  # the original release's UMT5 encoder, converted
    notes: list[str] = field(default_factory=list)

    @property
    def per_frame_timesteps(self) -> bool:
        """Trained with a timestep per latent frame (Wan 2.2 TI2V-5B: clean image frames at timestep 0)."""
        return self.kind == "ti2v"

    @property
    def title(self) -> str:
        return {"t2v": "Wan 2.1 T2V", "ti2v": "Wan 2.2 TI2V", "t2v-a14b": "Wan 2.2 T2V A14B"}[self.kind]


def resolve_source(source: str | os.PathLike) -> Path:
    """A local folder, or a Hub repo id found in the local huggingface_hub cache (`HF_HUB_CACHE`); never downloads."""
    if os.path.isdir(source):
        return Path(source)
    source = str(source)
    if os.path.exists(source):
        raise CheckpointError(f"{source}: the source must be a checkpoint folder (or a Hub id), not a file.")
    if source.count("/") != 1 or source.startswith(("/", ".")):
        raise CheckpointError(f"{source}: no such folder, and not a Hub repo id (`org/name`).")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE")))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError) as error:
        raise CheckpointError(
            f"{source}: not a local folder and not in the local Hugging Face cache "
            f"({os.environ.get('HF_HUB_CACHE') or 'the default cache'}); download it first (`huggingface-cli download {source}`). ({type(error).__name__})"
        ) from error


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable JSON ({error}).") from error


def inspect_wan_source(path: Path, text_encoder: str | None = None) -> WanSource:
    """Find the layout and components of the Wan checkpoint at `path` (see `resolve_source`).

    Args:
        path: the checkpoint folder.
        text_encoder: a folder or Hub id (local cache) of a transformers text encoder to use instead of the
            source's, `"none"` to leave the text encoder out, or `None` for the source's own (the original layout's
            `models_t5_umt5-xxl-enc-bf16.pth`, converted).
    """
    if (path / "model_index.json").is_file():
        source = _inspect_diffusers(path)
    elif (path / "config.json").is_file() or (path / "high_noise_model").is_dir():
        source = _inspect_original(path)
    else:
        raise CheckpointError(
            f"{path}: not a Wan checkpoint folder: expected model_index.json (diffusers layout) or config.json of "
            f"`WanModel` / high_noise_model/ (original Wan-AI release layout)."
        )
    if text_encoder is not None:
        source.text_encoder_dir = None if text_encoder.lower() == "none" else _text_encoder_folder(text_encoder)
    elif source.layout == "original":
        source.text_encoder_file = path / ORIGINAL_TEXT_ENCODER_FILE
        if not source.text_encoder_file.is_file():
            raise CheckpointError(
                f"{source.text_encoder_file}: no such file (the release's UMT5 text encoder). Download it too, or "
                "pass `--text_encoder` with a transformers UMT5EncoderModel folder or Hub id (e.g. the text_encoder/ "
                "of Wan-AI/Wan2.1-T2V-1.3B-Diffusers), or `--text_encoder none` to convert without one."
            )
    return source


def _inspect_diffusers(path: Path) -> WanSource:
    index = _read_json(path / "model_index.json")
    if index.get("_class_name") != "WanPipeline":
        hint = (
            " It is already converted: use --reverse for the other direction."
            if index.get("_class_name") == "SoraPipeline"
            else ""
        )
        raise CheckpointError(
            f"{path / 'model_index.json'}: a {index.get('_class_name')!r}; only text-to-video `WanPipeline` "
            f"checkpoints (Wan 2.1 T2V, Wan 2.2 TI2V-5B and T2V-A14B) convert.{hint}"
        )
    names = [n for n in ("transformer", "transformer_2") if isinstance(index.get(n), list) and index[n][0] is not None]
    dirs = [path / name for name in names]
    configs = [_read_json(d / "config.json") for d in dirs]
    boundary = index.get("boundary_ratio")
    kind = "ti2v" if index.get("expand_timesteps") else "t2v-a14b" if len(dirs) == 2 else "t2v"
    if len(dirs) == 2 and boundary is None:
        raise CheckpointError(f"{path / 'model_index.json'}: two transformers but no `boundary_ratio`.")
    optional = {name: path / name for name in ("tokenizer", "text_encoder", "scheduler") if (path / name).is_dir()}
    return WanSource(
        path, "diffusers", dirs, configs, path / "vae", kind, boundary if len(dirs) == 2 else None,
        optional.get("tokenizer"), optional.get("text_encoder"), optional.get("scheduler"),
    )  # fmt: skip


def _inspect_original(path: Path) -> WanSource:
    experts = [path / "high_noise_model", path / "low_noise_model"]
    dirs = experts if experts[0].is_dir() else [path]
    configs = []
    for folder in dirs:
        config = _read_json(folder / "config.json")
        if config.get("_class_name") != "WanModel":
            raise CheckpointError(
                f"{folder / 'config.json'}: `_class_name` {config.get('_class_name')!r}, not Wan's `WanModel`."
            )
        try:
            configs.append(wan_original_transformer_config_to_diffusers(config))
        except ValueError as error:
            raise CheckpointError(f"{folder / 'config.json'}: {error}") from error
        model_type = config.get("model_type", "t2v")
    kind = "t2v-a14b" if len(dirs) == 2 else model_type
    vaes = sorted(path.glob("Wan2.*_VAE.safetensors")) or sorted(path.glob("Wan2.*_VAE.pth"))
    if not vaes:
        raise CheckpointError(
            f"{path}: no Wan2.1_VAE.pth / Wan2.2_VAE.pth (files: {sorted(p.name for p in path.iterdir())})."
        )
    tokenizer = path / ORIGINAL_TOKENIZER_SUBFOLDER
    boundary = WAN22_A14B_T2V_BOUNDARY_RATIO if kind == "t2v-a14b" else None
    return WanSource(
        path, "original", dirs, configs, vaes[0], kind, boundary, tokenizer if tokenizer.is_dir() else None
    )


def _text_encoder_folder(text_encoder: str) -> Path:
    folder = resolve_source(text_encoder)
    if not (folder / "config.json").is_file() and (folder / "text_encoder" / "config.json").is_file():
        folder = folder / "text_encoder"  # a whole diffusers pipeline repo: take its text encoder
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: not a transformers model folder (no config.json) for --text_encoder.")
    return folder


# ---- converting the models --------------------------------------------------------------------------------------


def cast_floating(state_dict: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Cast floating tensors one at a time, dropping each original: no second full copy in memory."""
    if dtype is not None:
        for key in list(state_dict):
            if state_dict[key].is_floating_point():
                state_dict[key] = state_dict.pop(key).to(dtype)
    return state_dict


def build_model(cls, config: dict, state_dict: dict[str, torch.Tensor], where: Path):
    """`cls(**config)` on the meta device, its weights assigned from `state_dict` after the count and shape checks."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls(**config)
    try:
        load_converted_state_dict(model, state_dict, assign=True)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from error
    return model.eval()


def convert_transformer_folder(folder: Path, wan_config: dict, per_frame_timesteps: bool, dtype=None):
    """A Wan transformer folder (either layout) -> `DiTVideoTransformer3D`."""
    from ..models.transformer_sora import DiTVideoTransformer3D

    state_dict = load_sharded_safetensors(folder)
    try:
        converted = convert_wan_transformer_state_dict(state_dict)
        config = wan_transformer_config_to_sora(wan_config, per_frame_timesteps=per_frame_timesteps)
    except ValueError as error:
        raise CheckpointError(f"{folder}: {error}") from error
    return build_model(DiTVideoTransformer3D, config, cast_floating(converted, dtype), folder)


def convert_vae_file(path: Path):
    """A diffusers `vae/` folder or an original `Wan2.x_VAE.pth` -> `SpacetimeVAE` (always float32, as Wan runs it)."""
    from ..models.autoencoder_spacetime import SpacetimeVAE

    state_dict = load_sharded_safetensors(path) if path.is_dir() else load_state_dict_file(path)
    try:
        if path.is_dir():
            wan_config = {**wan_vae_config_from_state_dict(state_dict), **_read_json(path / "config.json")}
        else:
            wan_config = wan_vae_config_from_state_dict(state_dict)
        converted = convert_wan_vae_state_dict(state_dict)
        config = wan_vae_config_to_spacetime(wan_config)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    return build_model(SpacetimeVAE, config, cast_floating(converted, torch.float32), path)


def convert_text_encoder_file(path: Path):
    """The original release's `models_t5_umt5-xxl-enc-bf16.pth` -> transformers `UMT5EncoderModel`, in the file's
    dtype. The file is memory-mapped and its tensors become the model's weights: no second copy in RAM."""
    from transformers import UMT5Config, UMT5EncoderModel

    state_dict = load_torch_state_dict(path)
    try:
        converted = convert_wan_umt5_state_dict(state_dict)  # checks every name and shape first
        config = UMT5Config(**wan_umt5_config_from_state_dict(state_dict), architectures=["UMT5EncoderModel"])
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from error
    model = build_model(UMT5EncoderModel, {"config": config}, converted, path)
    model.tie_weights()  # `assign=True` gave `shared` and `encoder.embed_tokens` one tensor, in two Parameters
    return model


def _scheduler(source: WanSource):
    import diffusers

    if source.scheduler_dir is not None:
        config = _read_json(source.scheduler_dir / "scheduler_config.json")
        return getattr(diffusers, config["_class_name"]).from_pretrained(source.scheduler_dir)
    return diffusers.UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
        flow_shift=FLOW_SHIFT["ti2v" if source.kind == "ti2v" else "t2v"],
    )  # fmt: skip


WAN_PIPELINE_MODEL_CLASSES = {"WanTransformer3DModel", "AutoencoderKLWan"}


def convert_wan_models(components: dict, per_frame_timesteps: bool, where: str | os.PathLike = "") -> dict:
    """This package's models for the diffusers `WanTransformer3DModel`s and `AutoencoderKLWan` among a pipeline's
    `components` (name -> module; others are left out), holding the same tensors (shared, not copied: only the patch
    embedding is reshaped). `per_frame_timesteps` is a `WanPipeline`'s `expand_timesteps` (Wan 2.2 TI2V-5B).

    Raises:
        ValueError: a model whose weights are not all loaded (a `device_map` left some on the meta device), or an
            image-to-video Wan transformer.
    """
    from ..models.autoencoder_spacetime import SpacetimeVAE
    from ..models.transformer_sora import DiTVideoTransformer3D

    converted = {}
    for name, model in components.items():
        if type(model).__name__ not in WAN_PIPELINE_MODEL_CLASSES:
            continue
        if any(t.is_meta for t in model.state_dict().values()):
            raise ValueError(
                f"`{name}` ({type(model).__name__}) has weights on the meta device (offloaded by `device_map`?), "
                "which cannot be converted while loading; convert the folder once with "
                "conversion_scripts/convert_wan_to_sora.py and load that."
            )
        path = Path(where) / name
        if type(model).__name__ == "AutoencoderKLWan":
            config = wan_vae_config_to_spacetime(dict(model.config))
            converted[name] = build_model(SpacetimeVAE, config, convert_wan_vae_state_dict(model.state_dict()), path)
            continue
        try:
            config = wan_transformer_config_to_sora(dict(model.config), per_frame_timesteps=per_frame_timesteps)
            state_dict = convert_wan_transformer_state_dict(model.state_dict())
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from error
        converted[name] = build_model(DiTVideoTransformer3D, config, state_dict, path)
    return converted


def wan_default_size(per_frame_timesteps: bool, two_experts: bool) -> dict:
    """A `SoraPipeline`'s `default_height`, `default_width` and `default_num_frames` for a Wan model (`DEFAULT_SIZES`)."""
    height, width, frames = DEFAULT_SIZES["ti2v" if per_frame_timesteps else "t2v-a14b" if two_experts else "t2v"]
    return dict(default_height=height, default_width=width, default_num_frames=frames)


def convert_wan_pipeline_components(pipe, index: dict, passed: set[str] = frozenset()) -> None:
    """Finish a `SoraPipeline` loaded from a diffusers `WanPipeline` folder: its `AutoencoderKLWan` becomes a
    `SpacetimeVAE` (`convert_wan_models`; `SoraPipeline.__init__` already converted the Wan transformers),
    `expand_timesteps` (Wan 2.2 TI2V-5B) becomes the transformers' `per_frame_timesteps`, and the pipeline's default
    size the model's. Components in `passed` (given to `from_pretrained` by the caller) are left as they are."""
    per_frame = bool(index.get("expand_timesteps"))
    where = str(pipe.config.get("_name_or_path") or "")
    replaced = convert_wan_models({k: v for k, v in pipe.components.items() if k not in passed}, per_frame, where)
    if replaced:
        pipe.register_modules(**replaced)
    for name in ("transformer", "transformer_2"):
        if per_frame and name not in passed and getattr(pipe, name, None) is not None:
            getattr(pipe, name).register_to_config(per_frame_timesteps=True)
    pipe.register_to_config(**wan_default_size(per_frame, getattr(pipe, "transformer_2", None) is not None))


# ---- writing folders --------------------------------------------------------------------------------------------


def write_atomically(output_dir: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Run `fill(staging)` on a temporary folder next to `output_dir`, then rename it into place
    (`utils.atomic.atomic_path`). Whatever fails, no partial `output_dir` is left: the staging folder is removed, and an
    existing `output_dir` is replaced only at the end; a conversion that was killed leaves a temporary folder, which
    the next conversion to `output_dir` removes."""
    output_dir = Path(output_dir).resolve()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_dir) as staging:
        staging.mkdir()
        fill(staging)
    return output_dir


def _copy_text_encoder(source_dir: Path, folder: Path) -> list[str]:
    """Copy a transformers text encoder folder as it is (no load: UMT5-XXL is 11 GB); its model_index.json entry."""
    shutil.copytree(source_dir, folder / "text_encoder")  # follows the Hub cache's symlinks: real files
    import transformers

    architecture = (_read_json(source_dir / "config.json").get("architectures") or ["UMT5EncoderModel"])[0]
    # A whole T5-family seq2seq checkpoint (google/umt5-xxl): load only its encoder, which is what Wan uses.
    encoder = architecture.replace("ForConditionalGeneration", "EncoderModel")
    return ["transformers", encoder if hasattr(transformers, encoder) else architecture]


def convert_wan_to_sora(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    text_encoder: str | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Convert the Wan checkpoint `source` (folder or cached Hub id, diffusers or original layout) into a
    `SoraPipeline` folder at `output_dir`, written atomically; returns its path.

    Transformers are saved in `dtype`, the VAE in float32. The original layout's UMT5 encoder is converted in its
    file's dtype (bfloat16 in the releases); a `text_encoder` folder and the tokenizer are copied as they are.
    """
    from transformers import AutoTokenizer

    from ..pipelines.pipeline_sora import SoraPipeline

    wan = inspect_wan_source(resolve_source(source), text_encoder)
    log(f"{wan.path}: {wan.title}, {wan.layout} layout, {len(wan.transformer_dirs)} transformer(s)")
    transformers = [
        convert_transformer_folder(folder, config, wan.per_frame_timesteps, dtype)
        for folder, config in zip(wan.transformer_dirs, wan.transformer_configs)
    ]
    vae = convert_vae_file(wan.vae_path)
    text_encoder = convert_text_encoder_file(wan.text_encoder_file) if wan.text_encoder_file is not None else None
    tokenizer = AutoTokenizer.from_pretrained(wan.tokenizer_dir) if wan.tokenizer_dir is not None else None
    if text_encoder is not None and tokenizer is None:
        log(
            f"{wan.path / ORIGINAL_TOKENIZER_SUBFOLDER}: no such folder, so no tokenizer/ is written; load the "
            "converted pipeline with `tokenizer=AutoTokenizer.from_pretrained('google/umt5-xxl')`"
        )
    height, width, frames = DEFAULT_SIZES[wan.kind]
    extra = {"transformer_2": transformers[1], "boundary_ratio": wan.boundary_ratio} if len(transformers) == 2 else {}
    pipe = SoraPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformers[0], vae=vae,
        scheduler=_scheduler(wan), default_height=height, default_width=width, default_num_frames=frames, **extra,
    )  # fmt: skip

    def fill(folder: Path) -> None:
        pipe.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")
        if wan.text_encoder_dir is not None:
            index = _read_json(folder / "model_index.json")
            index["text_encoder"] = _copy_text_encoder(wan.text_encoder_dir, folder)
            (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        write_model_card(folder, wan, pipe)

    return write_atomically(output_dir, fill)


def write_model_card(folder: Path, wan: WanSource, pipe) -> None:
    """README.md with the Hub metadata (`library_name: diffusers`, `pipeline_tag: text-to-video`) and usage."""
    from huggingface_hub import ModelCard, ModelCardData

    base = _repo_id(wan.path)
    is_repo_id = not os.path.isabs(base)
    data = ModelCardData(
        library_name="diffusers", pipeline_tag="text-to-video", license="apache-2.0",
        tags=["sora_diffusers", "wan", "text-to-video"], base_model=base if is_repo_id else None,
    )  # fmt: skip
    params = sum(p.numel() for p in pipe.transformer.parameters()) / 1e9
    size = (
        f"two {params:.1f} B-parameter experts"
        if wan.kind == "t2v-a14b"
        else f"a {params:.2f} B-parameter transformer"
    )
    tasks = "text-to-video, and image-to-video / video extension with clean conditioning frames (per-frame timesteps)"
    if not wan.per_frame_timesteps:
        tasks = "text-to-video (image-to-video and extension work by re-noised replacement: not trained for them)"
    call = 'prompt="a red fox running through fresh snow", num_inference_steps=40'
    if wan.kind == "t2v-a14b":
        call += ", guidance_scale=4.0, guidance_scale_2=3.0"
    text_note = (
        ""
        if pipe.text_encoder is not None or (folder / "text_encoder").is_dir()
        else (
            "\nThis folder has no text encoder: pass `prompt_embeds` (and `negative_prompt_embeds`) from Wan's "
            "UMT5-XXL encoder, or load one with `SoraPipeline.from_pretrained(path, text_encoder=UMT5EncoderModel...)`.\n"
        )
    )
    encoder = (
        f"; the UMT5 text encoder, converted from `models_t5_umt5-xxl-enc-bf16.pth`, in "
        f"{str(pipe.text_encoder.dtype).replace('torch.', '')}"
        if wan.text_encoder_file is not None and pipe.text_encoder is not None
        else ""
    )
    config = pipe.config
    size_text = f"{config.default_width}x{config.default_height}, {config.default_num_frames} frames"
    text = f"""---
{data.to_yaml()}
---

# {wan.title} for sora_diffusers

{wan.title} ({size}) converted to `sora_diffusers`' `SoraPipeline` (`DiTVideoTransformer3D` + `SpacetimeVAE`)
from `{base}` ({wan.layout} layout) with `conversion_scripts/convert_wan_to_sora.py`. The weights are Wan's (Apache
2.0), renamed, with the transformer in {str(pipe.transformer.dtype).replace("torch.", "")} and the VAE in
float32{encoder}.

Tasks: {tasks}. Trained size: {size_text} (the pipeline's defaults).
{text_note}
```py
import torch
from sora_diffusers import SoraPipeline

pipe = SoraPipeline.from_pretrained("path/to/this/folder", dtype=torch.bfloat16)
pipe.enable_model_cpu_offload()
video = pipe({call}).frames[0]
```
"""
    ModelCard(text).save(folder / "README.md")


def _repo_id(path: Path) -> str:
    """'.../models--org--name/snapshots/<sha>' -> 'org/name'; otherwise the path."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--") :].replace("--", "/", 1)
    return str(path)


# ---- the reverse direction: a SoraPipeline folder -> diffusers' WanPipeline layout ------------------------------


def convert_sora_to_wan(source: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Write a `SoraPipeline` folder's models back as diffusers `WanTransformer3DModel` / `AutoencoderKLWan` in a
    `WanPipeline` folder (text encoder, tokenizer and scheduler copied), atomically; returns its path."""
    import diffusers
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    path = resolve_source(source)
    index = _read_json(path / "model_index.json")
    if index.get("_class_name") not in ("SoraPipeline", "SoraImageToVideoPipeline", "SoraVideoExtensionPipeline"):
        raise CheckpointError(f"{path / 'model_index.json'}: a {index.get('_class_name')!r}, not a SoraPipeline.")
    models = {}
    for name in ("transformer", "transformer_2"):
        if isinstance(index.get(name), list) and index[name][0] is not None:
            config = _read_json(path / name / "config.json")
            try:
                wan_config = sora_transformer_config_to_wan(config)
                state_dict = convert_sora_transformer_state_dict_to_wan(load_sharded_safetensors(path / name), config)
            except ValueError as error:
                raise CheckpointError(f"{path / name}: {error}") from error
            models[name] = build_model(WanTransformer3DModel, wan_config, state_dict, path / name)
    vae_config = _read_json(path / "vae" / "config.json")
    models["vae"] = build_model(
        AutoencoderKLWan, spacetime_vae_config_to_wan(vae_config), load_sharded_safetensors(path / "vae"), path / "vae"
    )
    per_frame = _read_json(path / "transformer" / "config.json").get("per_frame_timesteps", False)

    def fill(folder: Path) -> None:
        wan_index = {"_class_name": "WanPipeline", "_diffusers_version": diffusers.__version__}
        wan_index.update(boundary_ratio=index.get("boundary_ratio"), expand_timesteps=bool(per_frame))
        for name, model in models.items():
            model.save_pretrained(folder / name, safe_serialization=True, max_shard_size="5GB")
            wan_index[name] = ["diffusers", type(model).__name__]
        wan_index.setdefault("transformer_2", [None, None])
        for name in ("tokenizer", "text_encoder", "scheduler"):
            entry = index.get(name, [None, None])
            if entry[0] is not None and (path / name).is_dir():
                shutil.copytree(path / name, folder / name)
            wan_index[name] = entry if entry[0] is not None else [None, None]
        (folder / "model_index.json").write_text(json.dumps(wan_index, indent=2, sort_keys=True) + "\n")

    return write_atomically(output_dir, fill)
