# diffusers (0.42) loads a saved component only from a module that is already imported, so every module a saved Sora
# pipeline names in its model_index.json is imported with the pipelines (the models are, by pipeline_sora.py).
from ..schedulers import scheduling_flow_match  # noqa: F401
from .conditioning import FrameCondition, LatentCondition, build_condition
from .pipeline_output import SoraPipelineOutput
from .pipeline_sora import SoraPipeline
from .pipeline_sora_variants import (
    SoraImageToVideoPipeline,
    SoraVideoExtensionPipeline,
    SoraVideoToVideoPipeline,
)
from .safety import FramesFlaggedError, PromptRefusedError, SafetyCheckError


def _register_with_diffusers() -> None:
    """Let `diffusers.DiffusionPipeline.from_pretrained(path)` reload a saved Sora pipeline (once this package is imported).

    diffusers resolves the `_class_name` of model_index.json as an attribute of the `diffusers` module itself
    (`pipelines/pipeline_loading_utils.py::_get_pipeline_class`); the only other route, a pipeline .py file saved in the
    checkpoint, needs `trust_remote_code=True`. `diffusers.pipelines` gets them too, where code that inspects a
    pipeline looks its class up by name (diffusers' pipeline tests do). Names diffusers already has are left alone.
    """
    import diffusers
    import diffusers.pipelines

    for module in (diffusers, diffusers.pipelines):
        for cls in (SoraPipeline, SoraImageToVideoPipeline, SoraVideoExtensionPipeline, SoraVideoToVideoPipeline):
            if cls.__name__ not in module.__dict__:
                setattr(module, cls.__name__, cls)


_register_with_diffusers()

__all__ = [
    "FrameCondition",
    "FramesFlaggedError",
    "PromptRefusedError",
    "SafetyCheckError",
    "LatentCondition",
    "SoraImageToVideoPipeline",
    "SoraPipeline",
    "SoraPipelineOutput",
    "SoraVideoExtensionPipeline",
    "SoraVideoToVideoPipeline",
    "build_condition",
]
