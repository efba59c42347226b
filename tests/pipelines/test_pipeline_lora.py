"""LoRA through `SoraPipeline.__call__`: `attention_kwargs={"scale": s}` reaches the transformer's adapters."""

import copy

import torch
from peft import LoraConfig, get_peft_model_state_dict

from sora_diffusers import SoraImageToVideoPipeline, SoraPipeline

from .conftest import random_clip, seed


def run(pipe, **kwargs):
    kwargs = {"num_inference_steps": 2, "generator": seed(0), "output_type": "pt", "num_frames": 5, **kwargs}
    return pipe(prompt="a red circle", **kwargs).frames


def _random_lora(transformer) -> dict[str, torch.Tensor]:
    """A rank-4 attention LoRA with random (not zero) factors for `transformer`, as bare PEFT keys."""
    model = copy.deepcopy(transformer)
    torch.manual_seed(3)
    config = LoraConfig(
        r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    model.add_adapter(config)
    return get_peft_model_state_dict(model)


def test_attention_kwargs_scale_reaches_the_lora(make_pipe, fresh_components):
    pipe = make_pipe(transformer=fresh_components["transformer"])
    base = run(pipe)
    pipe.load_lora_weights(_random_lora(pipe.transformer), adapter_name="style")

    off = run(pipe, attention_kwargs={"scale": 0.0})
    full = run(pipe, attention_kwargs={"scale": 1.0})
    default = run(pipe)

    assert torch.equal(off, base)
    assert (full - base).abs().max() > 0.01
    assert torch.equal(default, full)
    pipe.unload_lora_weights()
    assert torch.equal(run(pipe), base)


def test_variants_inherit_the_lora_api(make_pipe, fresh_components):
    pipe = make_pipe(SoraImageToVideoPipeline, transformer=fresh_components["transformer"])
    image = random_clip(1)[:, 0]  # (3, H, W) in [-1, 1]
    base = run(pipe, image=image)
    pipe.load_lora_weights(_random_lora(pipe.transformer))
    assert issubclass(SoraImageToVideoPipeline, SoraPipeline)
    assert (run(pipe, image=image) - base).abs().max() > 1e-4  # the given first frame is kept: a smaller change
    assert torch.equal(run(pipe, image=image, attention_kwargs={"scale": 0.0}), base)
