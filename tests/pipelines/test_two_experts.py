"""Wan 2.2 A14B's two experts in the one denoising loop: `SoraPipeline(transformer, transformer_2, boundary_ratio)`
equals diffusers' `WanPipeline` with `transformer_2` on the same tiny random weights, scheduler, noise and prompt
embeddings (so text encoders play no part), fp32, <= 1e-5 relative; and such a pipeline converts, saves and loads."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)

from sora_diffusers import DiTVideoTransformer3D, SoraPipeline
from sora_diffusers.loaders.original_checkpoint import (
    convert_wan_transformer_state_dict,
    load_converted_state_dict,
    wan_transformer_config_to_sora,
)

from ..conftest import TINY_TRANSFORMER_CONFIG, perturb_


RTOL = 1e-5
BOUNDARY = 0.875
SCRIPT = Path(__file__).resolve().parents[2] / "conversion_scripts" / "convert_wan_to_sora.py"
VAE_CONFIG = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, latents_mean=[0.0] * 4)
VAE_CONFIG.update(latents_std=[1.0] * 4)
SCHEDULERS = {
    "flow_match_euler": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
    "unipc": lambda: UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    ),
}


def _ours(wan: WanTransformer3DModel) -> DiTVideoTransformer3D:
    ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config))).eval()
    load_converted_state_dict(ours, convert_wan_transformer_state_dict(wan.state_dict()))
    return ours


@pytest.fixture(scope="module")
def experts():
    torch.manual_seed(0)
    high, low = (perturb_(WanTransformer3DModel(**TINY_TRANSFORMER_CONFIG)).eval() for _ in range(2))
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    return high, low, vae


def _pipelines(experts, scheduler_name):
    high, low, vae = experts
    scheduler = SCHEDULERS[scheduler_name]()
    reference = WanPipeline(None, None, vae, copy.deepcopy(scheduler), high, low, boundary_ratio=BOUNDARY)
    ours = SoraPipeline(None, None, _ours(high), vae, scheduler, transformer_2=_ours(low), boundary_ratio=BOUNDARY)
    for pipe in (reference, ours):
        pipe.set_progress_bar_config(disable=True)
    return reference, ours


def _calls(model) -> list[float]:
    seen = []
    model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(1), with_kwargs=True)
    return seen


@pytest.mark.parametrize("scheduler_name", list(SCHEDULERS))
@pytest.mark.parametrize("guidance_scale_2", [2.0, None])
def test_two_experts_match_diffusers_wan_pipeline(experts, scheduler_name, guidance_scale_2):
    reference, ours = _pipelines(experts, scheduler_name)
    torch.manual_seed(1)
    embeds, negative, noise = torch.randn(1, 7, 16), torch.randn(1, 7, 16), torch.randn(1, 4, 3, 4, 6)
    common = dict(prompt_embeds=embeds, negative_prompt_embeds=negative, height=32, width=48, num_frames=9,
                  num_inference_steps=6, guidance_scale=5.0, guidance_scale_2=guidance_scale_2, latents=noise,
                  output_type="latent")  # fmt: skip
    high_calls, low_calls = _calls(ours.transformer), _calls(ours.transformer_2)
    with torch.no_grad():
        expected = reference(**common).frames
        got = ours(**common).frames
    timesteps = ours.scheduler.timesteps
    num_high = int((timesteps >= BOUNDARY * 1000).sum())
    assert 0 < num_high < 6 and (len(high_calls), len(low_calls)) == (num_high, 6 - num_high)  # both experts ran
    error, scale = (got - expected).abs().max().item(), expected.abs().max().item()
    assert expected.std() > 0.1 and error <= RTOL * scale, f"max error {error:.3g} vs scale {scale:.3g}"


def test_the_low_noise_expert_and_its_guidance_matter(experts):
    """A control: the result changes when the low-noise expert or its guidance changes (the parity is not vacuous)."""
    _, ours = _pipelines(experts, "flow_match_euler")
    embeds, noise = torch.randn(1, 7, 16), torch.randn(1, 4, 3, 4, 6)
    call = dict(prompt_embeds=embeds, negative_prompt_embeds=-embeds, height=32, width=48, num_frames=9,
                num_inference_steps=4, guidance_scale=5.0, latents=noise, output_type="latent")  # fmt: skip
    with torch.no_grad():
        base = ours(**call).frames
        other_guidance = ours(**call, guidance_scale_2=1.5).frames
        ours.transformer_2 = copy.deepcopy(ours.transformer)
        same_expert = ours(**call).frames
    assert (base - other_guidance).abs().max() > 1e-3 and (base - same_expert).abs().max() > 1e-3


def test_two_expert_pipeline_saves_loads_and_checks_its_arguments(experts, tmp_path):
    _, ours = _pipelines(experts, "unipc")
    ours.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["boundary_ratio"] == BOUNDARY and index["transformer_2"][1] == "DiTVideoTransformer3D"
    loaded = SoraPipeline.from_pretrained(tmp_path / "pipe")
    assert loaded.config.boundary_ratio == BOUNDARY
    assert torch.equal(loaded.transformer_2.proj_out.weight, ours.transformer_2.proj_out.weight)
    assert loaded.model_cpu_offload_seq == "text_encoder->transformer->transformer_2->vae"
    components = dict(tokenizer=None, text_encoder=None, transformer=ours.transformer, vae=ours.vae)
    components["scheduler"] = ours.scheduler
    with pytest.raises(ValueError, match="`transformer_2` and `boundary_ratio` go together"):
        SoraPipeline(**components, transformer_2=ours.transformer_2)
    with pytest.raises(ValueError, match=r"`boundary_ratio` must be in \(0, 1\), got 1.5"):
        SoraPipeline(**components, transformer_2=ours.transformer_2, boundary_ratio=1.5)
    single = SoraPipeline(**components)
    with pytest.raises(ValueError, match="`guidance_scale_2` is only supported when the pipeline's `boundary_ratio`"):
        single(prompt_embeds=torch.randn(1, 7, 16), guidance_scale_2=3.0, height=32, width=48, num_frames=1)


# ---- conversion of Wan 2.2 T2V-A14B --------------------------------------------------------------------------------


def _script():
    spec = importlib.util.spec_from_file_location("convert_wan_to_sora", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a14b_layouts_convert_to_two_experts_and_back(experts, tmp_path):
    """diffusers layout (transformer + transformer_2 + boundary_ratio) and the original release layout
    (high_noise_model/, low_noise_model/) both give the two-expert pipeline; --reverse gives diffusers' back."""
    from safetensors.torch import load_file

    from ..loaders.wan_layouts import (
        WAN21_VAE_TINY,
        original_model_config,
        save_sharded,
        tiny_wan_vae,
        wan_transformer_to_original,
        wan_vae_to_original,
    )

    high, low, _ = experts
    vae = tiny_wan_vae(WAN21_VAE_TINY)
    WanPipeline(None, None, vae, SCHEDULERS["unipc"](), high, low, boundary_ratio=0.9).save_pretrained(tmp_path / "d")
    original = tmp_path / "Wan2.2-T2V-A14B-tiny"
    for name, expert in (("high_noise_model", high), ("low_noise_model", low)):
        save_sharded(wan_transformer_to_original(expert.state_dict()), original / name, num_shards=2)
        (original / name / "config.json").write_text(json.dumps(original_model_config(expert)))
    torch.save(wan_vae_to_original(vae.state_dict()), original / "Wan2.1_VAE.pth")

    script = _script()
    assert script.main(["--source", str(tmp_path / "d"), "--output_dir", str(tmp_path / "from_d")]) == 0
    args = ["--source", str(original), "--output_dir", str(tmp_path / "from_o"), "--text_encoder", "none"]
    assert script.main(args) == 0
    from_d, from_o = (SoraPipeline.from_pretrained(tmp_path / n) for n in ("from_d", "from_o"))
    assert (from_d.config.boundary_ratio, from_o.config.boundary_ratio) == (0.9, 0.875)  # 0.875: Wan's T2V-A14B
    for pipe in (from_d, from_o):
        assert torch.equal(pipe.transformer.proj_out.weight, high.proj_out.weight)
        assert torch.equal(pipe.transformer_2.proj_out.weight, low.proj_out.weight)
        assert pipe.transformer.config.per_frame_timesteps is False
    assert "two " in (tmp_path / "from_o" / "README.md").read_text()

    assert (
        script.main(["--reverse", "--source", str(tmp_path / "from_d"), "--output_dir", str(tmp_path / "back")]) == 0
    )
    for name in ("transformer", "transformer_2"):
        before = load_file(tmp_path / "d" / name / "diffusion_pytorch_model.safetensors")
        after = load_file(tmp_path / "back" / name / "diffusion_pytorch_model.safetensors")
        assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before), name
    back = WanPipeline.from_pretrained(tmp_path / "back", tokenizer=None, text_encoder=None)  # none in the source
    assert back.config.boundary_ratio == 0.9 and type(back.transformer_2).__name__ == "WanTransformer3DModel"
