"""The original Wan release's UMT5 text encoder (`models_t5_umt5-xxl-enc-bf16.pth`) -> transformers'
`UMT5EncoderModel` (`sora_diffusers.loaders.wan_umt5`).

Two independent references: a minimal re-implementation of Wan's own `T5Encoder` forward (tests/loaders/
_wan_t5_reference.py, Wan's module names, no transformers), and a random transformers `UMT5EncoderModel` written out in
Wan's layout by an inverse map written here. Criterion, fp32: max |ours - reference| <= 1e-5 * max |reference|.
"""

import re

import pytest
import torch
from transformers import UMT5Config, UMT5EncoderModel

from sora_diffusers.loaders.checkpoint_files import CheckpointError
from sora_diffusers.loaders.wan_conversion import convert_text_encoder_file
from sora_diffusers.loaders.wan_umt5 import convert_wan_umt5_state_dict, wan_umt5_config_from_state_dict

from ._wan_t5_reference import tiny_wan_umt5


RTOL = 1e-5
pytestmark = pytest.mark.usefixtures("one_torch_thread")
PTH = "models_t5_umt5-xxl-enc-bf16.pth"


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, rtol: float = RTOL) -> None:
    assert ours.shape == reference.shape
    assert reference.std() > 0.1, "reference output is degenerate"
    error, scale = (ours - reference).abs().max().item(), reference.abs().max().item()
    assert error <= rtol * scale, f"max error {error:.3g} vs scale {scale:.3g}"


def _inputs(vocab: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sequences of 40 tokens (distances up to 39: the logarithmic position buckets take part), the second with
    its last 15 padded."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (2, 40), generator=generator)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 25:] = 0
    ids[1, 25:] = 0
    return ids, mask


def _save(state_dict: dict[str, torch.Tensor], path) -> None:
    torch.save({k: v.contiguous() for k, v in state_dict.items()}, path)


def test_converted_encoder_matches_wans_own_forward(tmp_path):
    reference = tiny_wan_umt5()
    _save(reference.state_dict(), tmp_path / PTH)
    ours = convert_text_encoder_file(tmp_path / PTH)
    assert type(ours).__name__ == "UMT5EncoderModel" and not ours.training
    assert (ours.config.d_model, ours.config.d_kv, ours.config.num_heads) == (16, 8, 3)
    assert (ours.config.d_ff, ours.config.num_layers, ours.config.relative_attention_num_buckets) == (40, 2, 32)
    assert ours.shared.weight is ours.encoder.embed_tokens.weight
    ids, mask = _inputs()
    with torch.no_grad():
        expected = reference(ids, mask)
        _assert_close(ours(ids, attention_mask=mask).last_hidden_state, expected)
        _assert_close(ours(ids[:1]).last_hidden_state, reference(ids[:1]))  # no mask at all


def _swap(state_dict: dict, a: str, b: str) -> dict:
    swapped = dict(state_dict)
    swapped[a], swapped[b] = state_dict[b], state_dict[a]
    return swapped


@pytest.mark.parametrize(
    "a, b",
    [
        ("blocks.0.ffn.gate.0.weight", "blocks.0.ffn.fc1.weight"),  # the GELU branch and the linear one
        ("blocks.0.pos_embedding.embedding.weight", "blocks.1.pos_embedding.embedding.weight"),  # per-layer biases
        ("blocks.1.attn.q.weight", "blocks.1.attn.k.weight"),
        ("blocks.0.norm1.weight", "blocks.0.norm2.weight"),
    ],
)
def test_the_parity_check_catches_swapped_tensors(tmp_path, a, b):
    """What a wrong map would do (same shapes, so no shape check stops it) moves the output well past the tolerance."""
    reference = tiny_wan_umt5()
    _save(_swap(reference.state_dict(), a, b), tmp_path / PTH)
    ours = convert_text_encoder_file(tmp_path / PTH)
    ids, mask = _inputs()
    with torch.no_grad(), pytest.raises(AssertionError, match="max error"):
        _assert_close(ours(ids, attention_mask=mask).last_hidden_state, reference(ids, mask), rtol=1e-2)


# Written here, independently of the converter: transformers' UMT5 names -> Wan's.
_TO_WAN = [
    (r"shared\.weight", "token_embedding.weight"),
    (r"encoder\.final_layer_norm\.weight", "norm.weight"),
    (r"encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight", r"blocks.\1.norm1.weight"),
    (r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight", r"blocks.\1.attn.\2.weight"),
    (
        r"encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
        r"blocks.\1.pos_embedding.embedding.weight",
    ),
    (r"encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight", r"blocks.\1.norm2.weight"),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.weight", r"blocks.\1.ffn.gate.0.weight"),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.weight", r"blocks.\1.ffn.fc1.weight"),
    (r"encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.weight", r"blocks.\1.ffn.fc2.weight"),
]


def _umt5_to_wan(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    wan = {}
    for key, value in state_dict.items():
        if key == "encoder.embed_tokens.weight":  # tied to shared.weight: Wan has one token embedding
            continue
        new = next(re.fullmatch(p, key).expand(t) for p, t in _TO_WAN if re.fullmatch(p, key))
        wan[new] = value
    return wan


def test_a_transformers_umt5_written_in_wans_layout_comes_back_exactly(tmp_path):
    config = UMT5Config(vocab_size=48, d_model=16, d_kv=6, d_ff=28, num_layers=3, num_heads=4)
    torch.manual_seed(0)
    umt5 = UMT5EncoderModel(config).eval()
    original = _umt5_to_wan(umt5.state_dict())
    assert len(original) == 2 + 10 * 3
    _save(original, tmp_path / PTH)
    ours = convert_text_encoder_file(tmp_path / PTH)
    expected = umt5.state_dict()
    assert set(ours.state_dict()) == set(expected)
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in expected.items())
    ids, mask = _inputs()
    with torch.no_grad():
        out = ours(ids, attention_mask=mask).last_hidden_state
        assert torch.equal(out, umt5(ids, attention_mask=mask).last_hidden_state)
        _assert_close(out, tiny_reference_from(original, config)(ids, mask))  # both references agree


def tiny_reference_from(original: dict, config: UMT5Config):
    """Wan's forward (the reference module) on the same tensors."""
    from ._wan_t5_reference import WanUMT5EncoderReference

    reference = WanUMT5EncoderReference(
        config.vocab_size, config.d_model, config.num_heads * config.d_kv, config.d_ff, config.num_heads,
        config.num_layers, config.relative_attention_num_buckets,
    ).eval()  # fmt: skip
    reference.load_state_dict(original, strict=True)
    return reference


def test_the_release_config_is_read_from_the_shapes():
    """umt5_xxl(encoder_only=True) of Wan's t5.py, as meta tensors: 5.68 B parameters, 10.6 GiB in bfloat16."""
    meta = {"token_embedding.weight": torch.empty(256384, 4096, device="meta")}
    meta["norm.weight"] = torch.empty(4096, device="meta")
    for i in range(24):
        block = {
            "norm1.weight": (4096,), "norm2.weight": (4096,), "pos_embedding.embedding.weight": (32, 64),
            **{f"attn.{p}.weight": (4096, 4096) for p in "qkvo"},
            "ffn.gate.0.weight": (10240, 4096), "ffn.fc1.weight": (10240, 4096), "ffn.fc2.weight": (4096, 10240),
        }  # fmt: skip
        meta.update({f"blocks.{i}.{k}": torch.empty(shape, device="meta") for k, shape in block.items()})
    config = wan_umt5_config_from_state_dict(meta)
    assert config == {
        "vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
        "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6,
    }  # fmt: skip
    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**config))
    converted = convert_wan_umt5_state_dict(meta)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 5.68
    assert model.config.dense_act_fn == "gelu_new"  # Wan's GELU is the tanh approximation


def test_a_bfloat16_file_stays_bfloat16(tmp_path):
    _save({k: v.to(torch.bfloat16) for k, v in tiny_wan_umt5().state_dict().items()}, tmp_path / PTH)
    ours = convert_text_encoder_file(tmp_path / PTH)
    assert {p.dtype for p in ours.parameters()} == {torch.bfloat16}


class _Payload:
    def __init__(self):
        self.code = "runs on unpickling"


def _broken(state_dict: dict, how: str) -> dict:
    broken = dict(state_dict)
    if how == "missing":
        del broken["blocks.1.ffn.fc1.weight"]
    elif how == "unexpected":
        broken["blocks.0.attn.norm_q.weight"] = torch.ones(24)
    elif how == "misshapen":
        broken["blocks.1.attn.o.weight"] = torch.zeros(16, 12)
    elif how == "shared position bias":
        broken["pos_embedding.embedding.weight"] = broken.pop("blocks.0.pos_embedding.embedding.weight")
        del broken["blocks.1.pos_embedding.embedding.weight"]
    elif how == "another architecture":
        broken = {"encoder.conv1.weight": torch.zeros(4, 3, 3, 3, 3), "decoder.head.0.gamma": torch.ones(4, 1, 1, 1)}
    return broken


@pytest.mark.parametrize(
    "how, match",
    [
        ("missing", r"\(21 keys; 2 blocks need 22\): missing \['blocks\.1\.ffn\.fc1\.weight'\], unexpected \[\]"),
        ("unexpected", r"missing \[\], unexpected \['blocks\.0\.attn\.norm_q\.weight'\], misshapen \[\]"),
        (
            "misshapen",
            r"missing \[\], unexpected \[\], misshapen \['blocks\.1\.attn\.o\.weight: \(16, 12\), expected "
            r"\(16, 24\)'\]",
        ),
        ("shared position bias", r"A T5 encoder with one shared relative position bias"),
        ("another architecture", r"no \['token_embedding\.weight'.*Its keys: \['decoder\.head\.0\.gamma', 'encoder"),
    ],
)
def test_wrong_tensors_are_named_with_the_file(tmp_path, how, match):
    _save(_broken(tiny_wan_umt5().state_dict(), how), tmp_path / PTH)
    with pytest.raises(CheckpointError, match=rf"{re.escape(PTH)}: .*{match}"):
        convert_text_encoder_file(tmp_path / PTH)


def test_unreadable_files_are_named(tmp_path):
    path = tmp_path / PTH
    _save(tiny_wan_umt5().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"{re.escape(PTH)}: not a readable PyTorch checkpoint"):
        convert_text_encoder_file(path)
    torch.save({"token_embedding.weight": torch.zeros(2, 2), "payload": _Payload()}, path)
    with pytest.raises(CheckpointError, match=rf"{re.escape(PTH)}: refused by torch\.load\(weights_only=True\)"):
        convert_text_encoder_file(path)
