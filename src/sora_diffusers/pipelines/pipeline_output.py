from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


@dataclass
class SoraPipelineOutput(BaseOutput):
    r"""
    Output of the Sora pipelines.

    Args:
        frames (`torch.Tensor`, `np.ndarray`, or `list[list[PIL.Image.Image]]`):
            One video per prompt and seed: `(B, T, H, W, 3)` floats in [0, 1] for `output_type="np"`, `(B, T, 3, H, W)`
            for `"pt"`, lists of PIL frames for `"pil"`, or latents `(B, C, T', H', W')` for `"latent"`.
            With `num_frames=1` each video holds one frame: the generated image.
    """

    frames: torch.Tensor | np.ndarray | list[list[PIL.Image.Image]]
