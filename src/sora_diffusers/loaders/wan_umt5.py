"""Key map: the original Wan release's UMT5 text encoder (`models_t5_umt5-xxl-enc-bf16.pth`) -> transformers'
`UMT5EncoderModel`.

Wan 2.1 / 2.2 (`wan/modules/t5.py`, `umt5_xxl(encoder_only=True)`) keep the encoder in their own module layout: a
`T5Encoder` with `shared_pos=False`, i.e. UMT5, whose every block has its own relative position bias. Per block `N`:

    blocks.N.norm1.weight                     -> encoder.block.N.layer.0.layer_norm.weight
    blocks.N.attn.{q,k,v,o}.weight            -> encoder.block.N.layer.0.SelfAttention.{q,k,v,o}.weight
    blocks.N.pos_embedding.embedding.weight   -> encoder.block.N.layer.0.SelfAttention.relative_attention_bias.weight
    blocks.N.norm2.weight                     -> encoder.block.N.layer.1.layer_norm.weight
    blocks.N.ffn.gate.0.weight                -> encoder.block.N.layer.1.DenseReluDense.wi_0.weight
    blocks.N.ffn.fc1.weight                   -> encoder.block.N.layer.1.DenseReluDense.wi_1.weight
    blocks.N.ffn.fc2.weight                   -> encoder.block.N.layer.1.DenseReluDense.wo.weight

and `token_embedding.weight` -> `shared.weight` (= `encoder.embed_tokens.weight`, tied), `norm.weight` ->
`encoder.final_layer_norm.weight`. Wan's feed-forward is `fc2(fc1(x) * gelu_tanh(gate(x)))` and transformers' gated
one `wo(gelu_new(wi_0(x)) * wi_1(x))`: the activated branch is `gate` -> `wi_0`, the linear one `fc1` -> `wi_1`. Both
leave attention unscaled, bucket relative positions the same way (bidirectional, `max_dist` 128) and use RMS norms
with eps 1e-6.

The config is read from the tensor shapes (`wan_umt5_config_from_state_dict`); Wan's `umt5_xxl` gives vocab 256384,
d_model 4096, 64 heads of 64, d_ff 10240, 24 layers, 32 buckets.
"""

import re

import torch


# Fixed in Wan's code, not stored in the checkpoint (`T5RelativeEmbedding(max_dist=128)`, `T5LayerNorm(eps=1e-6)`).
WAN_UMT5_MAX_DISTANCE = 128
WAN_UMT5_LAYER_NORM_EPS = 1e-6

WAN_UMT5_TOP_LEVEL_RENAMES = {
    "token_embedding.weight": "shared.weight",
    "norm.weight": "encoder.final_layer_norm.weight",
}
WAN_UMT5_BLOCK_RENAMES = {
    "norm1.weight": "layer.0.layer_norm.weight",
    **{f"attn.{p}.weight": f"layer.0.SelfAttention.{p}.weight" for p in ("q", "k", "v", "o")},
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")
# The tensors whose shapes give the config.
_SHAPE_KEYS = (
    "token_embedding.weight",
    "blocks.0.attn.q.weight",
    "blocks.0.pos_embedding.embedding.weight",
    "blocks.0.ffn.fc1.weight",
)


def _listed(names: list[str], limit: int = 12) -> str:
    return f"{names[:limit]}" + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _num_layers(state_dict: dict[str, torch.Tensor]) -> int:
    indices = sorted({int(m.group(1)) for key in state_dict if (m := _BLOCK_KEY.fullmatch(key))})
    if indices != list(range(len(indices))):
        raise ValueError(f"Wan UMT5 encoder blocks are not numbered 0..n-1: {indices}.")
    return len(indices)


def wan_umt5_config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
    """The `transformers.UMT5Config` keyword arguments of an original-layout Wan UMT5 encoder state dict, read from its
    tensor shapes. Raises `ValueError` naming what is missing or inconsistent (not Wan's encoder, or a T5 encoder with
    one shared position bias instead of UMT5's per-layer ones)."""
    if "pos_embedding.embedding.weight" in state_dict:
        raise ValueError(
            "A T5 encoder with one shared relative position bias (`pos_embedding.embedding.weight`); Wan's UMT5 "
            "encoder has one per block (`blocks.N.pos_embedding.embedding.weight`), which is what converts."
        )
    absent = [key for key in _SHAPE_KEYS if key not in state_dict]
    if absent:
        raise ValueError(
            f"Not a Wan UMT5 encoder state dict (`T5Encoder` of Wan's wan/modules/t5.py): no {absent}. Its keys: "
            f"{_listed(sorted(state_dict))}."
        )
    not_2d = [f"{key} {tuple(state_dict[key].shape)}" for key in _SHAPE_KEYS if state_dict[key].ndim != 2]
    if not_2d:
        raise ValueError(f"Wan UMT5 encoder: these weights should be matrices: {not_2d}.")
    vocab_size, d_model = state_dict["token_embedding.weight"].shape
    inner_dim = state_dict["blocks.0.attn.q.weight"].shape[0]
    num_buckets, num_heads = state_dict["blocks.0.pos_embedding.embedding.weight"].shape
    d_ff = state_dict["blocks.0.ffn.fc1.weight"].shape[0]
    if inner_dim % num_heads:
        raise ValueError(f"Wan UMT5 encoder: attention width {inner_dim} is not a multiple of {num_heads} heads.")
    return {
        "vocab_size": vocab_size,
        "d_model": d_model,
        "d_kv": inner_dim // num_heads,
        "d_ff": d_ff,
        "num_layers": _num_layers(state_dict),
        "num_heads": num_heads,
        "relative_attention_num_buckets": num_buckets,
        "relative_attention_max_distance": WAN_UMT5_MAX_DISTANCE,
        "feed_forward_proj": "gated-gelu",  # GELU, tanh approximation (transformers' "gelu_new"), as Wan's `GELU`
        "layer_norm_epsilon": WAN_UMT5_LAYER_NORM_EPS,
    }


def _wan_umt5_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of Wan's `T5Encoder(shared_pos=False)` of this config, with its shape."""
    d_model, d_ff, inner_dim = config["d_model"], config["d_ff"], config["num_heads"] * config["d_kv"]
    block = {
        "norm1.weight": (d_model,),
        **{f"attn.{p}.weight": (inner_dim, d_model) for p in ("q", "k", "v")},
        "attn.o.weight": (d_model, inner_dim),
        "pos_embedding.embedding.weight": (config["relative_attention_num_buckets"], config["num_heads"]),
        "norm2.weight": (d_model,),
        "ffn.gate.0.weight": (d_ff, d_model),
        "ffn.fc1.weight": (d_ff, d_model),
        "ffn.fc2.weight": (d_model, d_ff),
    }
    assert set(block) == set(WAN_UMT5_BLOCK_RENAMES)
    shapes = {"token_embedding.weight": (config["vocab_size"], d_model), "norm.weight": (d_model,)}
    for i in range(config["num_layers"]):
        shapes.update({f"blocks.{i}.{suffix}": shape for suffix, shape in block.items()})
    return shapes


def convert_wan_umt5_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An original-layout Wan UMT5 encoder state dict (`torch.load("models_t5_umt5-xxl-enc-bf16.pth",
    weights_only=True)`) -> a transformers `UMT5EncoderModel` state dict (tensors shared, not copied; the token
    embedding under both `shared.weight` and its tied `encoder.embed_tokens.weight`).

    Every tensor is checked by its original name before renaming, against the config its shapes give
    (`wan_umt5_config_from_state_dict`): raises `ValueError` listing the missing, unexpected and misshapen ones.
    """
    config = wan_umt5_config_from_state_dict(state_dict)
    expected = _wan_umt5_shapes(config)
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    misshapen = [
        f"{key}: {tuple(value.shape)}, expected {expected[key]}"
        for key, value in sorted(state_dict.items())
        if key in expected and tuple(value.shape) != expected[key]
    ]
    if missing or unexpected or misshapen:
        raise ValueError(
            f"Not a Wan UMT5 encoder state dict ({len(state_dict)} keys; {config['num_layers']} blocks need "
            f"{len(expected)}): missing {_listed(missing)}, unexpected {_listed(unexpected)}, misshapen "
            f"{_listed(misshapen)}."
        )
    converted = {}
    for key, value in state_dict.items():
        if key in WAN_UMT5_TOP_LEVEL_RENAMES:
            converted[WAN_UMT5_TOP_LEVEL_RENAMES[key]] = value
        else:
            index, suffix = _BLOCK_KEY.fullmatch(key).groups()
            converted[f"encoder.block.{index}.{WAN_UMT5_BLOCK_RENAMES[suffix]}"] = value
    converted["encoder.embed_tokens.weight"] = converted["shared.weight"]  # tied in UMT5EncoderModel
    if len(converted) != len(state_dict) + 1:
        raise ValueError(f"Wan UMT5 renaming merged keys: {len(state_dict)} keys in, {len(converted)} out.")
    return converted
