"""sora_diffusers: a diffusers-compatible text-to-video system.

>>> pipe = SoraPipeline.from_pretrained(path_or_repo_id)
>>> video = pipe("a red circle moving to the right", num_frames=33).frames[0]
"""

import importlib
import sys
from typing import TYPE_CHECKING


# The names below are imported on first use (PEP 562), so `import sora_diffusers` and `sora-diffusers --help` load
# neither torch nor diffusers. diffusers looks up the loadable base classes by name in a component's top-level package
# when it reloads a saved pipeline (`DiffusionPipeline.from_pretrained`), so they must be reachable from here.
_LAZY_IMPORTS = {
    "ConfigMixin": "diffusers",
    "DiffusionPipeline": "diffusers",
    "ModelMixin": "diffusers",
    "SchedulerMixin": "diffusers",
    "SpacetimeVAE": ".models.autoencoder_spacetime",
    "DiTVideoTransformer3D": ".models.transformer_sora",
    "FrameCondition": ".pipelines",
    "SoraImageToVideoPipeline": ".pipelines",
    "SoraPipeline": ".pipelines",
    "SoraPipelineOutput": ".pipelines",
    "SoraVideoExtensionPipeline": ".pipelines",
    "SoraVideoToVideoPipeline": ".pipelines",
    "SoraFlowMatchScheduler": ".schedulers",
}

if TYPE_CHECKING:
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


def __getattr__(name: str):
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY_IMPORTS[name], __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_IMPORTS})


# Importing `.pipelines` registers the Sora pipelines with diffusers, so that `DiffusionPipeline.from_pretrained(path)`
# finds them; it happens on first use of any pipeline name, and here already when diffusers (and so torch) is loaded.
if "diffusers" in sys.modules:
    importlib.import_module(".pipelines", __name__)


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
