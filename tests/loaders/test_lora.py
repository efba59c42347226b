"""LoRA on `SoraPipeline`: a LoRA made on diffusers' `WanTransformer3DModel` and saved by diffusers' `WanPipeline`
loads into our converted transformer and computes what Wan computes with it; diffusers' adapter API works on top."""

import copy
import logging
import os

import pytest
import safetensors.torch
import torch
from diffusers import WanPipeline, WanTransformer3DModel
from peft import LoraConfig, get_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer

from sora_diffusers import SoraPipeline
from sora_diffusers.loaders.original_checkpoint import (
    WAN_TRANSFORMER_BLOCK_RENAMES,
    convert_wan_transformer_state_dict,
    load_converted_state_dict,
    wan_transformer_config_to_sora,
)
from sora_diffusers.models.transformer_sora import DiTVideoTransformer3D

from ..conftest import TINY_TRANSFORMER_CONFIG, perturb_
from ..hub import add_to_hub_cache


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# max |ours - reference| <= PARITY_RTOL * max |reference|, as the Wan transformer parity tests use.
PARITY_RTOL = 1e-5
WAN_TINY_CONFIG = {**TINY_TRANSFORMER_CONFIG, "qk_norm": "rms_norm_across_heads", "cross_attn_norm": True}
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
RANK, ALPHA = 4, 8  # PEFT scales the LoRA by alpha / rank = 2
FILE = "pytorch_lora_weights.safetensors"


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 4, 3, 4, 6, generator=g), torch.tensor([700.0, 30.0]), torch.randn(2, 5, 16, generator=g)


def _assert_parity(got: torch.Tensor, reference: torch.Tensor, rtol: float = PARITY_RTOL) -> None:
    err, scale = (got - reference).abs().max().item(), reference.abs().max().item()
    assert scale > 0.1, "reference output is degenerate"
    assert err <= rtol * scale, f"max abs error {err:.3e} > {rtol} x output scale {scale:.3f}"


def _assert_differs(a: torch.Tensor, b: torch.Tensor) -> None:
    assert (a - b).abs().max() > 0.05 * b.abs().max(), "the LoRA changed nothing"


@torch.no_grad()
def _run(model: torch.nn.Module, **kwargs) -> torch.Tensor:
    return model(*_inputs(), **kwargs).sample


def _wan_with_lora(wan: WanTransformer3DModel, target_modules: list[str], seed: int) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    wan = copy.deepcopy(wan)
    wan.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=target_modules, init_lora_weights=False))
    return wan.eval()


@pytest.fixture(scope="module")
def wan():
    """A tiny Wan 2.1 transformer, our conversion of it, and its outputs without a LoRA."""
    torch.manual_seed(0)
    wan = perturb_(WanTransformer3DModel(**WAN_TINY_CONFIG)).eval()
    ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config))).eval()
    load_converted_state_dict(ours, convert_wan_transformer_state_dict(wan.state_dict()))
    base = _run(wan)
    _assert_parity(_run(ours), base)
    return wan, ours, base


@pytest.fixture(scope="module")
def lora(wan, tmp_path_factory):
    """A rank-4 attention LoRA trained-as-if on the tiny Wan, saved by diffusers' `WanPipeline.save_lora_weights`
    with its config (as diffusers' training scripts save it, so `lora_alpha` survives)."""
    wan_model, _, base = wan
    wan_lora = _wan_with_lora(wan_model, ATTENTION, seed=1)
    state_dict = get_peft_model_state_dict(wan_lora)  # bare PEFT keys: blocks.0.attn1.to_q.lora_A.weight
    folder = tmp_path_factory.mktemp("wan_lora")
    WanPipeline.save_lora_weights(
        folder,
        transformer_lora_layers=state_dict,
        transformer_lora_adapter_metadata=wan_lora.peft_config["default"].to_dict(),
    )
    out = _run(wan_lora)
    _assert_differs(out, base)
    return {"folder": folder, "state_dict": state_dict, "out": out, "wan": wan_lora}


@pytest.fixture
def pipe(wan):
    """A `SoraPipeline` around a fresh copy of the converted transformer (the other components play no part)."""
    return SoraPipeline(tokenizer=None, text_encoder=None, transformer=copy.deepcopy(wan[1]), vae=None, scheduler=None)


def _diffusers_wan_loading(wan_model, source) -> torch.Tensor:
    """What diffusers' own `WanPipeline.load_lora_weights` makes of `source` on the tiny Wan."""
    wan_pipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=copy.deepcopy(wan_model)
    )
    wan_pipe.load_lora_weights(source)
    return _run(wan_pipe.transformer)


def _lora_modules(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


# ---- parity with diffusers' Wan -------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["folder", "file"])
def test_wan_lora_saved_by_diffusers_matches_wan(pipe, lora, source):
    path = lora["folder"] / FILE if source == "file" else lora["folder"]
    pipe.load_lora_weights(path, adapter_name="wan")

    _assert_parity(_run(pipe.transformer), lora["out"])
    assert pipe.get_list_adapters() == {"transformer": ["wan"]} and pipe.get_active_adapters() == ["wan"]


def test_lora_on_every_kind_of_layer_matches_wan(pipe, wan, tmp_path):
    """Feed-forward, condition embedders, output projection and the patch embedding, which is a Conv3d in Wan and a
    Linear here: its LoRA factors are reshaped on loading."""
    targets = [*ATTENTION, "ffn.net.0.proj", "ffn.net.2", "linear_1", "linear_2", "time_proj", "proj_out"]
    wan_lora = _wan_with_lora(wan[0], [*targets, "patch_embedding"], seed=2)
    assert isinstance(wan_lora.patch_embedding.lora_A["default"], torch.nn.Conv3d)
    WanPipeline.save_lora_weights(
        tmp_path,
        transformer_lora_layers=get_peft_model_state_dict(wan_lora),
        transformer_lora_adapter_metadata=wan_lora.peft_config["default"].to_dict(),
    )

    pipe.load_lora_weights(tmp_path)

    _assert_parity(_run(pipe.transformer), _run(wan_lora))
    assert {"patch_embedding", "proj_out", "blocks.1.ffn.net.2"} <= set(_lora_modules(pipe.transformer))


@pytest.mark.parametrize("style", ["diffusers", "peft", "peft_saved"])
def test_key_styles_without_stored_config_load_as_diffusers_loads_them(pipe, wan, lora, style):
    """Without the stored config PEFT takes lora_alpha = r (diffusers' rule); all three key styles give what
    diffusers' `WanPipeline.load_lora_weights` gives for the diffusers-style dict."""
    prefix = {"diffusers": "transformer.", "peft": "", "peft_saved": "base_model.model."}[style]
    state_dict = {prefix + key: value for key, value in lora["state_dict"].items()}

    pipe.load_lora_weights(state_dict)

    reference = _diffusers_wan_loading(wan[0], {f"transformer.{k}": v for k, v in lora["state_dict"].items()})
    _assert_parity(_run(pipe.transformer), reference)
    _assert_differs(reference, lora["out"])  # alpha 8 was lost: the reference is not the trained LoRA


def _original_wan_style(state_dict: dict[str, torch.Tensor], alpha: float, prefix: str) -> dict[str, torch.Tensor]:
    """diffusers-style attention LoRA keys -> the original Wan trainers' (`self_attn.q.lora_down` + `.alpha`)."""
    to_original = {ours: theirs for theirs, ours in WAN_TRANSFORMER_BLOCK_RENAMES.items()}
    converted = {}
    for key, value in state_dict.items():  # blocks.0.attn1.to_q.lora_A.weight
        module, factor, _ = key.rsplit(".", 2)
        _, block, name = module.split(".", 2)
        original = f"{prefix}blocks.{block}.{to_original[name]}"
        converted[f"{original}.{'lora_down' if factor == 'lora_A' else 'lora_up'}.weight"] = value.clone()
        converted[f"{original}.alpha"] = torch.tensor(alpha)
    return converted


@pytest.mark.parametrize("prefix", ["diffusion_model.", ""])
def test_original_wan_trainer_keys_match_wan(pipe, lora, tmp_path, prefix):
    original = _original_wan_style(lora["state_dict"], ALPHA, prefix)
    assert f"{prefix}blocks.0.self_attn.q.lora_down.weight" in original
    kept = {key: value.clone() for key, value in original.items()}
    safetensors.torch.save_file(original, tmp_path / "wan_lora.safetensors")

    pipe.load_lora_weights(tmp_path / "wan_lora.safetensors")

    _assert_parity(_run(pipe.transformer), lora["out"])  # alpha / rank carried into the factors
    pipe.unload_lora_weights()
    pipe.load_lora_weights(original)  # from a dict: the caller's tensors are left as they were
    assert all(torch.equal(original[key], kept[key]) for key in kept)
    _assert_parity(_run(pipe.transformer), lora["out"])


def test_musubi_tuner_keys_match_wan(pipe, wan):
    """musubi-tuner names modules `lora_unet_blocks_0_self_attn_q` and covers attention and feed-forward."""
    wan_lora = _wan_with_lora(wan[0], [*ATTENTION, "ffn.net.0.proj", "ffn.net.2"], seed=4)
    to_original = {ours: theirs for theirs, ours in WAN_TRANSFORMER_BLOCK_RENAMES.items()}
    musubi = {}
    for key, value in get_peft_model_state_dict(wan_lora).items():
        module, factor, _ = key.rsplit(".", 2)
        _, block, name = module.split(".", 2)
        original = f"lora_unet_blocks_{block}_{to_original[name].replace('.', '_')}"
        musubi[f"{original}.{'lora_down' if factor == 'lora_A' else 'lora_up'}.weight"] = value
        musubi[f"{original}.alpha"] = torch.tensor(float(ALPHA))
    assert "lora_unet_blocks_1_ffn_2.lora_up.weight" in musubi

    pipe.load_lora_weights(musubi)

    _assert_parity(_run(pipe.transformer), _run(wan_lora))


# ---- save / load ----------------------------------------------------------------------------------------------------


def test_save_then_load_gives_identical_outputs(pipe, wan, lora, tmp_path):
    pipe.load_lora_weights(lora["folder"], adapter_name="style")
    expected = _run(pipe.transformer)

    SoraPipeline.save_lora_weights(
        tmp_path,
        transformer_lora_layers=get_peft_model_state_dict(pipe.transformer, adapter_name="style"),
        transformer_lora_adapter_metadata=pipe.transformer.peft_config["style"].to_dict(),
    )

    assert sorted(os.listdir(tmp_path)) == [FILE]  # no staging folder left behind
    saved = safetensors.torch.load_file(tmp_path / FILE)
    original = safetensors.torch.load_file(lora["folder"] / FILE)
    assert sorted(saved) == sorted(original) and all(key.startswith("transformer.blocks.") for key in saved)
    assert all(torch.equal(saved[key], original[key]) for key in saved)
    other = SoraPipeline(None, None, copy.deepcopy(wan[1]), None, None)
    other.load_lora_weights(tmp_path)
    assert torch.equal(_run(other.transformer), expected)


def test_save_is_atomic(lora, tmp_path):
    """A save that fails half way leaves the previous file as it was, and no partial file or staging folder."""
    SoraPipeline.save_lora_weights(tmp_path, transformer_lora_layers=lora["state_dict"])
    before = (tmp_path / FILE).read_bytes()

    def fail_half_way(weights, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        SoraPipeline.save_lora_weights(
            tmp_path, transformer_lora_layers=lora["state_dict"], save_function=fail_half_way
        )

    assert sorted(os.listdir(tmp_path)) == [FILE] and (tmp_path / FILE).read_bytes() == before
    with pytest.raises(ValueError, match="transformer_lora_layers"):
        SoraPipeline.save_lora_weights(tmp_path, transformer_lora_layers={})


def test_hub_id_loads_from_the_local_cache_offline(pipe, lora, offline_hub_cache):
    content = (lora["folder"] / FILE).read_bytes()
    add_to_hub_cache(offline_hub_cache, "sora-test/tiny-lora", {FILE: content, "v2/style.safetensors": content})

    pipe.load_lora_weights("sora-test/tiny-lora", adapter_name="guessed")  # no weight_name: the cached snapshot's
    _assert_parity(_run(pipe.transformer), lora["out"])
    pipe.delete_adapters("guessed")

    pipe.load_lora_weights(
        "sora-test/tiny-lora", weight_name="style.safetensors", subfolder="v2", adapter_name="named"
    )
    _assert_parity(_run(pipe.transformer), lora["out"])

    with pytest.raises(OSError, match="sora-test/not-cached"):
        pipe.load_lora_weights("sora-test/not-cached")
    assert pipe.get_list_adapters() == {"transformer": ["named"]}


# ---- adapters: scale, set_adapters, fuse, several adapters, unload --------------------------------------------------


def test_attention_kwargs_scale_equals_set_adapters_weight(pipe, wan, lora):
    pipe.load_lora_weights(lora["folder"], adapter_name="style")
    half_by_scale = _run(pipe.transformer, attention_kwargs={"scale": 0.5})
    assert torch.equal(_run(pipe.transformer, attention_kwargs={"scale": 0.0}), _run(wan[1]))  # LoRA x 0 == base

    pipe.set_adapters(["style"], adapter_weights=[0.5])
    half_by_weight = _run(pipe.transformer)

    _assert_parity(half_by_weight, half_by_scale)
    _assert_differs(half_by_weight, lora["out"])
    _assert_differs(half_by_weight, wan[2])
    # diffusers' `apply_lora_scale` reset the adapters to weight 1 after a scale-0 call; ours restores 0.5
    _run(pipe.transformer, attention_kwargs={"scale": 0.0})
    assert torch.equal(_run(pipe.transformer), half_by_weight)


def test_fuse_then_unfuse_restores_the_base_model(pipe, wan, lora):
    base = _run(pipe.transformer)
    pipe.load_lora_weights(lora["folder"])

    pipe.fuse_lora(lora_scale=1.0)
    assert pipe.num_fused_loras == 1
    _assert_parity(_run(pipe.transformer), lora["out"])
    to_q = pipe.transformer.blocks[0].attn1.to_q
    _assert_differs(to_q.base_layer.weight, wan[1].blocks[0].attn1.to_q.weight)  # merged into the weight

    pipe.unfuse_lora()
    assert pipe.num_fused_loras == 0
    torch.testing.assert_close(to_q.base_layer.weight, wan[1].blocks[0].attn1.to_q.weight, rtol=0, atol=1e-6)
    _assert_parity(_run(pipe.transformer), lora["out"])  # unfused: the adapter acts again, unmerged
    pipe.disable_lora()
    _assert_parity(_run(pipe.transformer), base)


def test_fuse_with_scale_equals_scaled_adapter(pipe, lora):
    pipe.load_lora_weights(lora["folder"])
    half = _run(pipe.transformer, attention_kwargs={"scale": 0.5})
    pipe.fuse_lora(lora_scale=0.5)
    pipe.unload_lora_weights()  # keeps what was fused, drops the adapter layers
    assert _lora_modules(pipe.transformer) == []
    _assert_parity(_run(pipe.transformer), half)


def test_two_adapters_then_delete(pipe, wan, lora):
    """Adapter "minus" has the same lora_A and the negated lora_B: together at weight 1 they cancel to the base."""
    pipe.load_lora_weights(lora["folder"], adapter_name="plus")
    minus = {key: (-value if ".lora_B." in key else value) for key, value in lora["state_dict"].items()}
    pipe.load_lora_weights(minus, adapter_name="minus")
    assert pipe.get_list_adapters() == {"transformer": ["plus", "minus"]}

    pipe.set_adapters(["plus", "minus"], adapter_weights=[1.0, 2.0])  # minus loaded with lora_alpha = r: half scale
    assert sorted(pipe.get_active_adapters()) == ["minus", "plus"]
    _assert_parity(_run(pipe.transformer), wan[2])

    pipe.set_adapters("plus")
    _assert_parity(_run(pipe.transformer), lora["out"])

    pipe.delete_adapters("minus")
    assert pipe.get_list_adapters() == {"transformer": ["plus"]}
    _assert_parity(_run(pipe.transformer), lora["out"])


def test_unload_gives_the_base_output_exactly(pipe, wan, lora):
    base = _run(pipe.transformer)
    pipe.load_lora_weights(lora["folder"], adapter_name="a")
    pipe.load_lora_weights(lora["state_dict"], adapter_name="b")

    pipe.unload_lora_weights()

    assert _lora_modules(pipe.transformer) == []
    assert torch.equal(_run(pipe.transformer), base)


# ---- LoRAs that do not fit ------------------------------------------------------------------------------------------


def _loaded_nothing(pipe) -> bool:
    return _lora_modules(pipe.transformer) == [] and not getattr(pipe.transformer, "peft_config", {})


def test_lora_for_another_architecture_names_the_keys(pipe):
    flux_like = {
        "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(4, 24),
        "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(24, 4),
        "transformer.blocks.0.attn1.to_q.lora_A.weight": torch.zeros(4, 24),
        "transformer.blocks.0.attn1.to_q.lora_B.weight": torch.zeros(24, 4),
        "text_encoder.encoder.layer.0.query.lora_A.weight": torch.zeros(4, 16),
    }
    with pytest.raises(ValueError) as error:
        pipe.load_lora_weights(flux_like)

    message = str(error.value)
    assert "2 keys that name no Linear layer of DiTVideoTransformer3D" in message
    assert "'transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight'" in message
    assert "1 keys for components other than `transformer`" in message
    assert "text_encoder.encoder.layer.0.query.lora_A.weight" in message
    assert "'transformer.blocks.0.attn1.to_q" not in message  # the keys that fit are not listed
    assert _loaded_nothing(pipe)


def test_state_dict_without_lora_factors_loads_nothing_with_diffusers_warning(pipe, caplog):
    """As diffusers' loaders: no key is a LoRA factor, so nothing is loaded and the output stays the same."""
    before = _run(pipe.transformer)
    with caplog.at_level(logging.WARNING, logger="sora_diffusers.loaders.lora"):
        pipe.load_lora_weights({"lora_foo": torch.tensor(2.0), "lora_bar": torch.tensor(3.0)})
    assert "No LoRA keys associated to DiTVideoTransformer3D found with the prefix='transformer'" in caplog.text
    assert "none of the 2 keys is a LoRA factor" in caplog.text
    assert _loaded_nothing(pipe) and torch.equal(_run(pipe.transformer), before)


def test_lora_for_a_wider_model_or_with_a_wrong_rank_names_the_keys(pipe, lora):
    state_dict = {f"transformer.{k}": v for k, v in lora["state_dict"].items()}
    state_dict["transformer.blocks.1.attn2.to_k.lora_A.weight"] = torch.zeros(RANK, 48)  # in_features are 24
    state_dict["transformer.blocks.0.attn1.to_v.lora_B.weight"] = torch.zeros(24, 8)  # lora_A has rank 4
    del state_dict["transformer.blocks.1.attn1.to_q.lora_B.weight"]

    with pytest.raises(ValueError) as error:
        pipe.load_lora_weights(state_dict)

    message = str(error.value)
    assert "transformer.blocks.1.attn2.to_k.lora_A.weight: (4, 48), layer blocks.1.attn2.to_k needs (r, 24)" in message
    assert "transformer.blocks.0.attn1.to_v: lora_A rank 4, lora_B rank 8" in message
    assert "1 missing keys" in message and "transformer.blocks.1.attn1.to_q.lora_B.weight" in message
    assert _loaded_nothing(pipe)


def test_rank_that_contradicts_the_stored_config_is_refused(pipe, lora, tmp_path):
    config = lora["wan"].peft_config["default"].to_dict()
    SoraPipeline.save_lora_weights(
        tmp_path, transformer_lora_layers=lora["state_dict"], transformer_lora_adapter_metadata={**config, "r": 8}
    )
    with pytest.raises(
        ValueError, match=r"blocks.0.attn1.to_k: lora_A rank 4, lora_B rank 4, the stored config says r=8"
    ):
        pipe.load_lora_weights(tmp_path)
    assert _loaded_nothing(pipe)


def test_original_wan_keys_the_converter_does_not_know_are_named(pipe, lora):
    original = _original_wan_style(lora["state_dict"], ALPHA, "diffusion_model.")
    original["diffusion_model.vace_blocks.0.proj.lora_down.weight"] = torch.zeros(4, 24)
    with pytest.raises(ValueError, match=r"original Wan-style LoRA .*vace_blocks"):
        pipe.load_lora_weights(original)
    assert _loaded_nothing(pipe)
