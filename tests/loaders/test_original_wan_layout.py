"""Original (non-diffusers) Wan layouts -> ours, against diffusers' own converters.

Each tiny random checkpoint is written in the release's layout (tests/loaders/wan_layouts.py reverses diffusers'
original -> diffusers converters and checks the reversal with them), read back from disk as the release ships it
(sharded safetensors, `.pth` through `torch.load(weights_only=True)`), converted by
`sora_diffusers.loaders.original_checkpoint`, and compared with diffusers' `WanTransformer3DModel` /
`AutoencoderKLWan` loaded from the same original tensors by diffusers' converters.

Criterion, fp32: max |ours - diffusers| <= 1e-5 * max |diffusers|. VAE comparisons run with oneDNN off, so both sides
use the same convolution kernels (with it on, CPU kernel choice alone differs by ~1e-5; see test_vae_conversion.py).
"""

import pytest
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers, convert_wan_vae_to_diffusers

from sora_diffusers import DiTVideoTransformer3D, SpacetimeVAE
from sora_diffusers.loaders.checkpoint_files import (
    CheckpointError,
    load_sharded_safetensors,
    load_torch_state_dict,
)
from sora_diffusers.loaders.original_checkpoint import (
    convert_original_wan_vae_state_dict,
    convert_wan_transformer_state_dict,
    convert_wan_vae_state_dict,
    load_converted_state_dict,
    wan_original_transformer_config_to_diffusers,
    wan_transformer_config_to_sora,
    wan_vae_config_from_state_dict,
    wan_vae_config_to_spacetime,
)

from .wan_layouts import (
    WAN21_VAE_TINY,
    WAN22_VAE_TINY,
    assert_close_to_reference,
    original_model_config,
    save_sharded,
    tiny_wan_transformer,
    tiny_wan_vae,
    wan_transformer_to_original,
    wan_vae_to_original,
)


pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN"),
]


@pytest.fixture(scope="module")
def original_transformer(tmp_path_factory):
    """A tiny Wan transformer saved as the 14B release is: original keys, 3 safetensors shards and their index."""
    wan = tiny_wan_transformer()
    folder = tmp_path_factory.mktemp("wan_original")
    save_sharded(wan_transformer_to_original(wan.state_dict()), folder, num_shards=3)
    return wan, folder


def test_original_transformer_matches_diffusers_converter(original_transformer):
    wan, folder = original_transformer
    original = load_sharded_safetensors(folder)
    config = wan_original_transformer_config_to_diffusers(original_model_config(wan))
    assert {k: config[k] for k in wan.config if k in config} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in wan.config.items() if k in config
    }
    reference = WanTransformer3DModel.from_config(config).eval()
    reference.load_state_dict(convert_wan_transformer_to_diffusers(dict(original)), strict=True)
    ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(config)).eval()
    load_converted_state_dict(ours, convert_wan_transformer_state_dict(original))
    assert len(original) == len(ours.state_dict())
    x, text = torch.randn(2, 4, 3, 6, 8), torch.randn(2, 7, 16)
    with torch.no_grad():
        for t in (torch.tensor([999.0, 10.0]), torch.tensor([[0.0, 500.0, 999.0], [250.0, 250.0, 10.0]])):
            t_ref = t if t.ndim == 1 else t.repeat_interleave(3 * 4, dim=1)  # diffusers: one timestep per token
            assert_close_to_reference(ours(x, t, text).sample, reference(x, t_ref, text).sample)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_original_transformer_keys_convert_one_to_one(original_transformer, prefix):
    """Every original key lands on one of ours, with or without a single-file repack's prefix."""
    wan, folder = original_transformer
    original = {prefix + k: v for k, v in load_sharded_safetensors(folder).items()}
    converted = convert_wan_transformer_state_dict(original)
    assert len(converted) == len(original)
    assert set(converted) == set(
        DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config))).state_dict()
    )


@pytest.mark.parametrize("model_type, match", [("i2v", "model_type.*'i2v'"), ("flf2v", "'flf2v'")])
def test_original_transformer_config_refuses_other_model_types(original_transformer, model_type, match):
    with pytest.raises(ValueError, match=match):
        wan_original_transformer_config_to_diffusers(original_model_config(original_transformer[0], model_type))


def _vae_parity(wan: AutoencoderKLWan, ours: SpacetimeVAE, video: torch.Tensor) -> None:
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        posterior_wan, posterior_ours = wan.encode(video).latent_dist, ours.encode(video).latent_dist
        assert_close_to_reference(posterior_ours.mean, posterior_wan.mean)
        assert_close_to_reference(posterior_ours.logvar, posterior_wan.logvar)
        z = posterior_wan.mean
        assert_close_to_reference(ours.decode(z).sample, wan.decode(z).sample)


def test_original_wan21_vae_pth_matches_diffusers_converter(tmp_path):
    """`Wan2.1_VAE.pth` (original keys, read with weights_only=True) -> SpacetimeVAE == diffusers' AutoencoderKLWan."""
    wan = tiny_wan_vae(WAN21_VAE_TINY)
    torch.save(wan_vae_to_original(wan.state_dict()), tmp_path / "Wan2.1_VAE.pth")
    original = load_torch_state_dict(tmp_path / "Wan2.1_VAE.pth")
    assert set(convert_original_wan_vae_state_dict(original)) == set(convert_wan_vae_to_diffusers(dict(original)))

    config = wan_vae_config_from_state_dict(original)  # the release ships no VAE config: read from the shapes
    assert {k: config[k] for k in ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample")} == {
        k: wan.config[k] for k in ("base_dim", "z_dim", "dim_mult", "num_res_blocks", "temperal_downsample")
    }
    assert (config["is_residual"], config["patch_size"], config["latents_mean"]) == (False, None, None)
    reference = AutoencoderKLWan(**{**config, **WAN21_VAE_TINY}).eval()
    reference.load_state_dict(convert_wan_vae_to_diffusers(dict(original)), strict=True)
    ours = SpacetimeVAE(**wan_vae_config_to_spacetime({**config, **WAN21_VAE_TINY})).eval()
    load_converted_state_dict(ours, convert_wan_vae_state_dict(original))
    _vae_parity(reference, ours, torch.rand(1, 3, 9, 16, 24) * 2 - 1)


def test_original_wan22_vae_pth_converts_to_the_residual_vae(tmp_path):
    """`Wan2.2_VAE.pth` layout (nested levels) -> SpacetimeVAE(is_residual=True) == AutoencoderKLWan(is_residual)."""
    wan = tiny_wan_vae(WAN22_VAE_TINY)
    torch.save(wan_vae_to_original(wan.state_dict(), num_res_blocks=1), tmp_path / "Wan2.2_VAE.pth")
    original = load_torch_state_dict(tmp_path / "Wan2.2_VAE.pth")
    assert any(k.startswith("encoder.downsamples.1.downsamples.1.time_conv") for k in original)
    config = wan_vae_config_from_state_dict(original)
    expected = {k: WAN22_VAE_TINY[k] for k in ("base_dim", "decoder_base_dim", "z_dim", "dim_mult", "is_residual")}
    expected.update(num_res_blocks=1, patch_size=2, in_channels=12, temperal_downsample=[False, True, True])
    assert {k: config[k] for k in expected} == expected
    assert config["scale_factor_spatial"] == 16 and config["scale_factor_temporal"] == 4
    ours = SpacetimeVAE(**wan_vae_config_to_spacetime({**config, **WAN22_VAE_TINY})).eval()
    load_converted_state_dict(ours, convert_wan_vae_state_dict(original))
    _vae_parity(wan, ours, torch.rand(1, 3, 9, 32, 48) * 2 - 1)


def test_wan22_release_vae_config_is_inferred_from_shapes():
    """The real Wan2.2_VAE.pth sizes (meta tensors: no memory): base 160, decoder 256, 48 channels, Wan 2.2 stats."""
    from diffusers import AutoencoderKLWan as Wan

    with torch.device("meta"):
        wan = Wan(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, patch_size=2, in_channels=12,
                  out_channels=12, latents_mean=[0.0] * 48, latents_std=[1.0] * 48)  # fmt: skip
    original = wan_vae_to_original(wan.state_dict())
    config = wan_vae_config_from_state_dict(original)
    assert (config["base_dim"], config["decoder_base_dim"], config["z_dim"], config["num_res_blocks"]) == (
        160,
        256,
        48,
        2,
    )
    assert config["latents_mean"][:2] == [-0.2289, -0.0052] and len(config["latents_std"]) == 48
    with torch.device("meta"):
        ours = SpacetimeVAE(**wan_vae_config_to_spacetime(config))
    converted = convert_wan_vae_state_dict(original)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_original_vae_rejects_unknown_keys_by_name():
    wan = tiny_wan_vae(WAN21_VAE_TINY)
    original = {**wan_vae_to_original(wan.state_dict()), "decoder.upsamples.3.extra.weight": torch.zeros(1)}
    original["encoder.middle.0.residual.9.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError,
        match=r"2 of \d+ keys are not part of a Wan VAE: \['decoder\.upsamples\.3\.extra\.weight', 'encoder\.middle\.0\.resi",
    ):
        convert_original_wan_vae_state_dict(original)


class _NotATensor:
    def __init__(self):
        self.payload = "code"


def test_pickles_that_hold_code_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": _NotATensor()}, path)
    with pytest.raises(
        CheckpointError,
        match=r"Wan2\.1_VAE\.pth: refused by torch\.load\(weights_only=True\).*safetensors\.torch\.save_file",
    ):
        load_torch_state_dict(path)


def test_truncated_files_are_reported(tmp_path, original_transformer):
    _, folder = original_transformer
    torch.save({"a": torch.zeros(100)}, tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "w.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"w\.pth: not a readable PyTorch checkpoint"):
        load_torch_state_dict(tmp_path / "w.pth")
    shard = sorted(folder.glob("*.safetensors"))[0]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:-100] if f == shard else f.read_bytes())
    with pytest.raises(CheckpointError, match=rf"{shard.name}: not a readable safetensors file"):
        load_sharded_safetensors(broken)
