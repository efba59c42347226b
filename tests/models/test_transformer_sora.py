import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry, attention_backend

from sora_diffusers.loaders.original_checkpoint import (
    WAN_TRANSFORMER_BLOCK_RENAMES,
    WAN_TRANSFORMER_TOP_LEVEL_RENAMES,
    convert_wan_transformer_state_dict,
    load_converted_state_dict,
    wan_transformer_config_to_sora,
)
from sora_diffusers.models.transformer_sora import DiTVideoTransformer3D

from ..conftest import TINY_TRANSFORMER_CONFIG, perturb_


# Parity criterion: max |ours - wan| <= PARITY_RTOL * max |wan| (fp32). Measured: 0 to 5e-7 relative.
PARITY_RTOL = 1e-5
WAN_TINY_CONFIG = {**TINY_TRANSFORMER_CONFIG, "qk_norm": "rms_norm_across_heads", "cross_attn_norm": True}
# (B, C, T', H', W') latent shapes: single frame, odd latent lengths, non-square both ways, odd token grids
PARITY_SHAPES = [(1, 4, 1, 4, 4), (2, 4, 3, 6, 8), (2, 4, 5, 10, 6), (1, 4, 7, 6, 14)]


def _inputs(shape, text_len=7, text_dim=16):
    B = shape[0]
    return torch.randn(shape), torch.tensor([700.0, 30.0][:B]), torch.randn(B, text_len, text_dim)


@pytest.fixture(scope="module")
def wan_and_ours():
    torch.manual_seed(0)
    wan = perturb_(WanTransformer3DModel(**WAN_TINY_CONFIG)).eval()
    ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config))).eval()
    load_converted_state_dict(ours, convert_wan_transformer_state_dict(wan.state_dict()))
    return wan, ours


def _assert_parity(ours_out, wan_out):
    err = (ours_out - wan_out).abs().max().item()
    scale = wan_out.abs().max().item()
    assert scale > 0.1, "reference output is degenerate"
    assert err <= PARITY_RTOL * scale, f"max abs error {err:.3e} > {PARITY_RTOL} x output scale {scale:.3f}"


# ---- parity with diffusers' WanTransformer3DModel ------------------------------------------------------------------


@pytest.mark.parametrize("shape", PARITY_SHAPES)
@torch.no_grad()
def test_parity_with_wan_transformer(wan_and_ours, shape):
    wan, ours = wan_and_ours
    x, t, text = _inputs(shape)
    _assert_parity(ours(x, t, text).sample, wan(x, t, text).sample)


@torch.no_grad()
def test_per_frame_timesteps_match_wan_per_token_timesteps(wan_and_ours):
    """Our (B, T') timesteps == Wan 2.2's (B, S) per-token timesteps with each frame's value on its tokens."""
    wan, ours = wan_and_ours
    x, _, text = _inputs((2, 4, 3, 6, 8))
    t_frames = torch.tensor([[0.0, 500.0, 999.0], [250.0, 250.0, 10.0]])
    t_tokens = t_frames.repeat_interleave(3 * 4, dim=1)  # H'*W' = 3*4 tokens per latent frame
    _assert_parity(ours(x, t_frames, text).sample, wan(x, t_tokens, text).sample)


@torch.no_grad()
def test_original_wan_layout_converts_to_the_same_model(wan_and_ours):
    """An original-layout (Wan2.1 repo) state dict, built from the diffusers one, converts to identical outputs."""
    wan, ours = wan_and_ours
    to_original = {v: k for k, v in WAN_TRANSFORMER_TOP_LEVEL_RENAMES.items()}
    block_to_original = {v: k for k, v in WAN_TRANSFORMER_BLOCK_RENAMES.items()}
    original = {}
    for key, value in wan.state_dict().items():
        if key.startswith("blocks."):
            _, i, *rest = key.split(".")
            module, param = ".".join(rest[:-1]), rest[-1]
            if module == "":  # blocks.i.scale_shift_table is a parameter, not a module
                module, param = param, None
            name = block_to_original[module]
            original[f"blocks.{i}.{name}" + (f".{param}" if param else "")] = value
        else:
            module, _, param = key.rpartition(".")
            if key == "scale_shift_table":
                original["head.modulation"] = value
            else:
                original[f"{to_original[module]}.{param}"] = value
    converted = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config))).eval()
    load_converted_state_dict(converted, convert_wan_transformer_state_dict(original))
    x, t, text = _inputs((1, 4, 3, 4, 6))
    assert torch.equal(converted(x, t, text).sample, ours(x, t, text).sample)


def test_conversion_rejects_unknown_and_image_to_video_checkpoints(wan_and_ours):
    wan, ours = wan_and_ours
    with pytest.raises(ValueError, match="Not a Wan transformer state dict"):
        convert_wan_transformer_state_dict({"foo.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="image-to-video weights"):
        convert_wan_transformer_state_dict({**wan.state_dict(), "condition_embedder.image_embedder.ff.weight": 0})
    state = convert_wan_transformer_state_dict(wan.state_dict())
    state.pop("proj_out.bias")
    with pytest.raises(ValueError, match=r"missing \['proj_out.bias'\]"):
        load_converted_state_dict(ours, state)


# ---- behaviour ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch_size, shape", [((1, 2, 2), (2, 4, 3, 6, 10)), ((2, 2, 2), (1, 4, 4, 8, 4)), ((1, 1, 1), (1, 4, 2, 3, 5))]
)
@torch.no_grad()
def test_output_shape_for_any_grid(patch_size, shape):
    model = DiTVideoTransformer3D(**{**TINY_TRANSFORMER_CONFIG, "patch_size": patch_size}).eval()
    out = model(torch.randn(shape), torch.full((shape[0],), 500.0), torch.randn(shape[0], 5, 16)).sample
    assert out.shape == shape
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_per_frame_timesteps_equal_broadcast_timestep(tiny_transformer):
    x, _, text = _inputs((2, 4, 3, 4, 4))
    per_sample = tiny_transformer(x, torch.tensor([321.0, 321.0]), text).sample
    per_frame = tiny_transformer(x, torch.full((2, 3), 321.0), text).sample
    scalar = tiny_transformer(x, 321.0, text).sample
    torch.testing.assert_close(per_frame, per_sample, atol=1e-6, rtol=0)
    torch.testing.assert_close(scalar, per_sample, atol=1e-6, rtol=0)


@torch.no_grad()
def test_per_frame_timesteps_change_each_frame(tiny_transformer):
    """A clean conditioning frame (t=0) is modulated differently from the same frame at t=900."""
    x, _, text = _inputs((1, 4, 3, 4, 4))
    a = tiny_transformer(x, torch.tensor([[900.0, 900.0, 900.0]]), text).sample
    b = tiny_transformer(x, torch.tensor([[0.0, 900.0, 900.0]]), text).sample
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-3


@torch.no_grad()
def test_text_padding_mask_ignores_padded_tokens(tiny_transformer):
    x, t, text = _inputs((2, 4, 2, 4, 4))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    other = text.clone()
    other[0, 3:] = torch.randn(4, 16) * 10  # change only the padded tokens of sample 0
    a = tiny_transformer(x, t, text, encoder_attention_mask=mask).sample
    b = tiny_transformer(x, t, other, encoder_attention_mask=mask).sample
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    unmasked = tiny_transformer(x, t, other).sample
    assert (unmasked[0] - a[0]).abs().max() > 1e-3
    # an all-ones mask is the same as no mask
    torch.testing.assert_close(
        tiny_transformer(x, t, text, torch.ones(2, 7)).sample, tiny_transformer(x, t, text).sample
    )


def test_save_pretrained_round_trip(tiny_transformer, tmp_path):
    tiny_transformer.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = DiTVideoTransformer3D.from_pretrained(tmp_path).eval()
    assert tuple(loaded.config.patch_size) == tuple(tiny_transformer.config.patch_size) == (1, 2, 2)
    x, t, text = _inputs((1, 4, 3, 4, 6))
    with torch.no_grad():
        assert torch.equal(loaded(x, t, text).sample, tiny_transformer(x, t, text).sample)


def test_gradient_checkpointing_gives_identical_gradients(tiny_transformer):
    x, t, text = _inputs((2, 4, 3, 4, 4))
    tiny_transformer.train()

    def grads():
        tiny_transformer.zero_grad()
        tiny_transformer(x, t, text).sample.square().mean().backward()
        return {n: p.grad.clone() for n, p in tiny_transformer.named_parameters()}

    plain = grads()
    tiny_transformer.enable_gradient_checkpointing()
    assert tiny_transformer.gradient_checkpointing
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


@torch.no_grad()
def test_native_attention_backend_matches_math_reference(tiny_transformer):
    """The dispatch path ("native" SDPA) == softmax(q k^T / sqrt(D)) v written out, for one attention layer."""
    attn = tiny_transformer.blocks[0].attn1
    hidden = torch.randn(2, 24, 24)
    with attention_backend("native"):
        got = attn(hidden)

    q = attn.norm_q(attn.to_q(hidden)).unflatten(2, (2, -1)).transpose(1, 2)  # (B, N, S, D)
    k = attn.norm_k(attn.to_k(hidden)).unflatten(2, (2, -1)).transpose(1, 2)
    v = attn.to_v(hidden).unflatten(2, (2, -1)).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
    expected = attn.to_out[0]((weights @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["_native_math"])  # _native_efficient/_cudnn/_flash: CUDA only (tests/gpu)
@torch.no_grad()
def test_other_sdpa_backends_match_native_with_padding_mask(tiny_transformer, backend):
    """Whole model, text padding mask included: every CPU-capable SDPA backend gives the native result."""
    x, t, text = _inputs((2, 4, 2, 4, 4))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    with attention_backend("native"):
        native = tiny_transformer(x, t, text, mask).sample
    with attention_backend(backend):
        other = tiny_transformer(x, t, text, mask).sample
    torch.testing.assert_close(other, native, atol=1e-5, rtol=1e-5)


def test_set_attention_backend_routes_every_layer(tiny_transformer):
    try:
        tiny_transformer.set_attention_backend("_native_math")
        backends = {m.processor._attention_backend for m in tiny_transformer.modules() if hasattr(m, "processor")}
        assert {b.value for b in backends} == {"_native_math"}
    finally:
        tiny_transformer.reset_attention_backend()  # also resets diffusers' process-wide active backend
        _AttentionBackendRegistry.set_active_backend(AttentionBackendName.NATIVE)


@torch.no_grad()
def test_fused_qkv_projections_give_same_output(tiny_transformer):
    x, t, text = _inputs((1, 4, 2, 4, 4))
    before = tiny_transformer(x, t, text).sample
    tiny_transformer.fuse_qkv_projections()
    assert tiny_transformer.blocks[0].attn1.fused_projections
    torch.testing.assert_close(tiny_transformer(x, t, text).sample, before, atol=1e-5, rtol=1e-5)


# ---- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, timestep, text, match",
    [
        ((1, 4, 8, 8), [1.0], (1, 5, 16), r"`hidden_states` must be 5-D"),
        ((1, 3, 2, 8, 8), [1.0], (1, 5, 16), r"`hidden_states` has 3 channels; this model takes in_channels=4"),
        ((1, 4, 2, 7, 8), [1.0], (1, 5, 16), r"height=7 must be a positive multiple of the patch size 2"),
        ((2, 4, 3, 8, 8), [[1.0, 2.0]] * 2, (2, 5, 16), r"`timestep` must have shape \(2,\) or \(2, 3\)"),
        ((2, 4, 3, 8, 8), [1.0, 2.0, 3.0], (2, 5, 16), r"`timestep` must have shape"),
        ((1, 4, 2, 8, 8), [1.0], (1, 5, 12), r"`encoder_hidden_states` width 12 != text_dim=16"),
        ((2, 4, 2, 8, 8), [1.0, 1.0], (1, 5, 16), r"`encoder_hidden_states` must have shape \(2, sequence_length"),
    ],
)
def test_bad_forward_input_raises_value_error(tiny_transformer, shape, timestep, text, match):
    with pytest.raises(ValueError, match=match):
        tiny_transformer(torch.randn(shape), torch.tensor(timestep), torch.randn(text))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patch_size": (1, 2)}, r"`patch_size` must be three positive ints"),
        ({"attention_head_dim": 11}, r"`attention_head_dim` even"),
        ({"rope_axes_dim": (4, 4, 2)}, r"`rope_axes_dim` must be three even ints summing to attention_head_dim=12"),
    ],
)
def test_bad_config_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiTVideoTransformer3D(**{**TINY_TRANSFORMER_CONFIG, **kwargs})


# ---- diffusers integrations: LoRA (the caches run through the pipeline: tests/pipelines/test_caches.py) -------------


def test_lora_adapter_targets_diffusers_module_names(tiny_transformer):
    """peft LoRA on diffusers' usual targets (to_q/to_k/to_v/to_out.0) attaches to every attention layer and, once
    its B matrices are non-zero, changes the output; scale 0 via attention_kwargs switches it off."""
    from peft import LoraConfig

    x, t, text = _inputs((1, 4, 2, 4, 4))
    with torch.no_grad():
        base = tiny_transformer(x, t, text).sample
    tiny_transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    lora_b = [p for n, p in tiny_transformer.named_parameters() if "lora_B" in n]
    assert len(lora_b) == 2 * 2 * 4  # 2 blocks x (attn1, attn2) x 4 projections
    with torch.no_grad():
        for p in lora_b:
            p.normal_(std=0.5)
        adapted = tiny_transformer(x, t, text).sample
        off = tiny_transformer(x, t, text, attention_kwargs={"scale": 0.0}).sample
    assert (adapted - base).abs().max() > 1e-3
    torch.testing.assert_close(off, base, atol=1e-6, rtol=0)
