"""`SoraPipeline.from_pretrained` of a diffusers `WanPipeline` folder (what `Wan-AI/*-Diffusers` repos hold): its
`WanTransformer3DModel`s and `AutoencoderKLWan` become this package's models on the same tensors, and the pipeline
makes what diffusers' `WanPipeline` makes from that folder (tiny random weights, the same noise and prompt
embeddings, fp32, <= 1e-5 relative)."""

import json
import logging

import pytest
import torch
from diffusers import UniPCMultistepScheduler, WanPipeline

from sora_diffusers import DiTVideoTransformer3D, SoraPipeline, SpacetimeVAE

from ..conftest import TINY_TRANSFORMER_CONFIG
from ..hub import add_to_hub_cache, use_hub_cache
from ..loaders.wan_layouts import WAN21_VAE_TINY, tiny_wan_transformer, tiny_wan_vae


RTOL = 1e-5
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN"),
]


def _scheduler():
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=3.0
    )


@pytest.fixture(scope="module")
def wan_folders(tmp_path_factory):
    """Wan 2.1-like (one transformer), Wan 2.2 A14B-like (two experts) and TI2V-like (`expand_timesteps`) folders."""
    root = tmp_path_factory.mktemp("wan")
    vae = tiny_wan_vae(WAN21_VAE_TINY)
    high, low = tiny_wan_transformer(**TINY_TRANSFORMER_CONFIG), tiny_wan_transformer(1, **TINY_TRANSFORMER_CONFIG)
    WanPipeline(None, None, vae, _scheduler(), high).save_pretrained(root / "t2v")
    WanPipeline(None, None, vae, _scheduler(), high, low, boundary_ratio=0.875).save_pretrained(root / "a14b")
    WanPipeline(None, None, vae, _scheduler(), high, expand_timesteps=True).save_pretrained(root / "ti2v")
    return root


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("name", ["t2v", "a14b"])
def test_wan_pipeline_folder_loads_converted_and_matches_wan_pipeline(wan_folders, name):
    records, pipeline_logger = _Records(), logging.getLogger("diffusers.pipelines.pipeline_utils")
    pipeline_logger.addHandler(records)
    try:
        ours = SoraPipeline.from_pretrained(wan_folders / name)
    finally:
        pipeline_logger.removeHandler(records)
    assert not [m for m in records.messages if m.startswith("Expected types")], records.messages
    assert type(ours.transformer) is DiTVideoTransformer3D and type(ours.vae) is SpacetimeVAE
    assert (type(ours.transformer_2) is DiTVideoTransformer3D) == (name == "a14b")
    assert ours.config.boundary_ratio == (0.875 if name == "a14b" else None)
    assert (ours.config.default_height, ours.config.default_width, ours.config.default_num_frames) == (
        (720, 1280, 81) if name == "a14b" else (480, 832, 81)
    )
    reference = WanPipeline.from_pretrained(wan_folders / name, tokenizer=None, text_encoder=None)
    assert torch.equal(ours.transformer.proj_out.weight, reference.transformer.proj_out.weight)
    torch.manual_seed(1)
    call = dict(prompt_embeds=torch.randn(1, 7, 16), negative_prompt_embeds=torch.randn(1, 7, 16), height=32,
                width=48, num_frames=5, num_inference_steps=4, guidance_scale=5.0, latents=torch.randn(1, 4, 2, 4, 6),
                output_type="pt")  # fmt: skip
    for pipe in (ours, reference):
        pipe.set_progress_bar_config(disable=True)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        expected, got = reference(**call).frames, ours(**call).frames
    error, scale = (got - expected).abs().max().item(), expected.abs().max().item()
    assert expected.std() > 0.01 and error <= RTOL * scale, f"max error {error:.3g} vs scale {scale:.3g}"


def test_wan_ti2v_folder_reads_as_per_frame_timesteps_and_saves_as_ours(wan_folders, tmp_path):
    ours = SoraPipeline.from_pretrained(wan_folders / "ti2v")
    assert ours.transformer.config.per_frame_timesteps is True
    assert (ours.config.default_height, ours.config.default_width, ours.config.default_num_frames) == (704, 1280, 121)
    ours.save_pretrained(tmp_path / "sora")
    index = json.loads((tmp_path / "sora" / "model_index.json").read_text())
    assert (index["_class_name"], index["transformer"][1], index["vae"][1]) == (
        "SoraPipeline",
        "DiTVideoTransformer3D",
        "SpacetimeVAE",
    )
    again = SoraPipeline.from_pretrained(tmp_path / "sora")
    assert again.transformer.config.per_frame_timesteps is True and again.config.default_num_frames == 121
    assert torch.equal(again.transformer.proj_out.weight, ours.transformer.proj_out.weight)


def test_wan_folder_with_a_passed_transformer_keeps_it(wan_folders, tiny_transformer):
    """A component passed to `from_pretrained` is used as given; the folder's others are still converted."""
    ours = SoraPipeline.from_pretrained(wan_folders / "t2v", transformer=tiny_transformer)
    assert ours.transformer is tiny_transformer and type(ours.vae) is SpacetimeVAE


def test_from_pipe_of_a_wan_pipeline_converts_its_models(wan_folders):
    wan = WanPipeline.from_pretrained(wan_folders / "ti2v", tokenizer=None, text_encoder=None)
    ours = SoraPipeline.from_pipe(wan)
    assert type(ours.transformer) is DiTVideoTransformer3D and type(ours.vae) is SpacetimeVAE
    assert (
        ours.transformer.config.per_frame_timesteps is True
        and type(wan.transformer).__name__ != "DiTVideoTransformer3D"
    )
    ours_q, wan_q = ours.transformer.blocks[0].attn1.to_q.weight, wan.transformer.blocks[0].attn1.to_q.weight
    assert ours_q.data_ptr() == wan_q.data_ptr() and torch.equal(ours_q, wan_q)  # the same memory
    assert ours.config.default_num_frames == 121 and ours.scheduler is wan.scheduler


def test_wan_repo_id_from_the_hub_cache_loads_converted(wan_folders, tmp_path, monkeypatch):
    """The README's `SoraPipeline.from_pretrained("Wan-AI/Wan2.1-T2V-1.3B-Diffusers")`, on a real (offline) cache."""
    cache = use_hub_cache(monkeypatch, tmp_path / "cache")
    add_to_hub_cache(cache, "Wan-AI/tiny-T2V-Diffusers", wan_folders / "t2v")
    ours = SoraPipeline.from_pretrained("Wan-AI/tiny-T2V-Diffusers", dtype=torch.bfloat16)
    assert type(ours.transformer) is DiTVideoTransformer3D and type(ours.vae) is SpacetimeVAE
    assert ours.transformer.proj_out.weight.dtype == torch.bfloat16 and ours.config.default_width == 832


def test_models_from_pretrained_of_wan_subfolders(wan_folders, tmp_path, monkeypatch):
    """`DiTVideoTransformer3D.from_pretrained(repo, subfolder="transformer")` of a Wan repo, as diffusers users load
    one model: converted, in the dtype asked for; the TI2V width reads as per-frame timesteps."""
    reference = WanPipeline.from_pretrained(wan_folders / "t2v", tokenizer=None, text_encoder=None)
    transformer = DiTVideoTransformer3D.from_pretrained(wan_folders / "t2v", subfolder="transformer")
    assert type(transformer) is DiTVideoTransformer3D and not transformer.config.per_frame_timesteps
    x, t, text = torch.randn(1, 4, 2, 4, 6), torch.tensor([500.0]), torch.randn(1, 7, 16)
    with torch.no_grad():
        expected = reference.transformer(x, t, text).sample
        error = (transformer(x, t, text).sample - expected).abs().max().item()
    assert error <= RTOL * expected.abs().max().item()
    vae = SpacetimeVAE.from_pretrained(wan_folders / "t2v", subfolder="vae", torch_dtype=torch.bfloat16)
    assert type(vae) is SpacetimeVAE and vae.decoder.conv_in.weight.dtype == torch.bfloat16
    cache = use_hub_cache(monkeypatch, tmp_path / "cache")
    add_to_hub_cache(cache, "Wan-AI/tiny-T2V-Diffusers", wan_folders / "t2v")
    hub = DiTVideoTransformer3D.from_pretrained("Wan-AI/tiny-T2V-Diffusers", subfolder="transformer")
    assert torch.equal(hub.proj_out.weight, transformer.proj_out.weight)
    ours = SoraPipeline.from_pretrained(wan_folders / "t2v")
    ours.transformer.save_pretrained(tmp_path / "ours")  # our own folders still load as before
    assert torch.equal(DiTVideoTransformer3D.from_pretrained(tmp_path / "ours").proj_out.weight, hub.proj_out.weight)


def test_a_wan_transformer_given_to_the_constructor_is_converted(wan_folders):
    """`SoraPipeline(transformer=WanTransformer3DModel(...), ...)`: converted on the same tensors, so the loop (which
    calls it with a timestep per latent frame) runs it; it failed inside diffusers' model before."""
    wan = WanPipeline.from_pretrained(wan_folders / "t2v", tokenizer=None, text_encoder=None)
    ours = SoraPipeline(None, None, wan.transformer, wan.vae, wan.scheduler)
    assert type(ours.transformer) is DiTVideoTransformer3D and ours.vae is wan.vae  # AutoencoderKLWan runs as it is
    assert ours.transformer.proj_out.weight.data_ptr() == wan.transformer.proj_out.weight.data_ptr()
    call = dict(prompt_embeds=torch.randn(1, 7, 16), negative_prompt_embeds=torch.randn(1, 7, 16), height=32, width=48,
                num_frames=5, num_inference_steps=3, latents=torch.randn(1, 4, 2, 4, 6), output_type="latent")  # fmt: skip
    for pipe in (ours, wan):
        pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        expected, got = wan(**call).frames, ours(**call).frames
    assert (got - expected).abs().max().item() <= RTOL * expected.abs().max().item() and expected.std() > 0.1
