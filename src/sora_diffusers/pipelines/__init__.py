from .conditioning import FrameCondition, LatentCondition, build_condition
from .pipeline_output import SoraPipelineOutput
from .pipeline_sora import SoraPipeline
from .pipeline_sora_variants import (
    SoraImageToVideoPipeline,
    SoraVideoExtensionPipeline,
    SoraVideoToVideoPipeline,
)


__all__ = [
    "FrameCondition",
    "LatentCondition",
    "SoraImageToVideoPipeline",
    "SoraPipeline",
    "SoraPipelineOutput",
    "SoraVideoExtensionPipeline",
    "SoraVideoToVideoPipeline",
    "build_condition",
]
