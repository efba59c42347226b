"""sora_diffusers: a diffusers-compatible text-to-video system.

>>> pipe = SoraPipeline.from_pretrained(path_or_repo_id)
>>> video = pipe("a red circle moving to the right", num_frames=33).frames[0]
"""

# diffusers looks up the loadable base classes by name in a component's top-level package when it reloads a saved
# pipeline (`DiffusionPipeline.from_pretrained`), so they must be importable from here.
from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin, SchedulerMixin

from .models.autoencoder_spacetime import SpacetimeVAE
from .models.transformer_sora import DiTVideoTransformer3D
from .pipelines import (
    FrameCondition,
    SoraImageToVideoPipeline,
    SoraPipeline,
    SoraPipelineOutput,
    SoraVideoExtensionPipeline,
    SoraVideoToVideoPipeline,
)
from .schedulers import SoraFlowMatchScheduler


__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigMixin",
    "DiTVideoTransformer3D",
    "DiffusionPipeline",
    "FrameCondition",
    "ModelMixin",
    "SchedulerMixin",
    "SoraFlowMatchScheduler",
    "SoraImageToVideoPipeline",
    "SoraPipeline",
    "SoraPipelineOutput",
    "SoraVideoExtensionPipeline",
    "SoraVideoToVideoPipeline",
    "SpacetimeVAE",
]
