"""`SoraPipeline` and the Hugging Face Hub, up to the network: Hub ids load from a real huggingface_hub cache (offline,
with `revision`, `variant` and `dtype`), and a push sends a complete repo (model_index.json, every component, a model
card the Hub lists as a diffusers text-to-video model).

The cache is laid out by `tests.hub.add_to_hub_cache` from folders `save_pretrained` wrote; what a push sends is read
from the commit operations huggingface_hub would send (`tests.hub.HubRecorder`)."""

import copy
import json
import warnings
from pathlib import Path

import diffusers
import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard, constants
from safetensors.torch import load_file

from sora_diffusers import SoraFlowMatchScheduler, SoraImageToVideoPipeline, SoraPipeline
from sora_diffusers.training.cards import DIFFUSERS_PLACEHOLDER

from ..conftest import perturb_
from ..hub import add_to_hub_cache, use_hub_cache
from .conftest import HEIGHT, SCHEDULER_SHIFT, WIDTH, seed


REPO = "me/tiny-sora"
STEPS = 2
MODELS = ("text_encoder", "transformer", "vae")
WEIGHTS = "diffusion_pytorch_model"


def run(pipe, prompt="a red circle", **kwargs):
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": STEPS, "generator": seed(0), "output_type": "pt", **kwargs}
    with torch.no_grad():
        return pipe(prompt, **kwargs).frames


def run_from_embeds(pipe, embeds):
    prompt_embeds, prompt_mask, negative_embeds, negative_mask = embeds
    return run(
        pipe, prompt=None, prompt_embeds=prompt_embeds, prompt_attention_mask=prompt_mask,
        negative_prompt_embeds=negative_embeds, negative_prompt_attention_mask=negative_mask,
    )  # fmt: skip


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make(components, **overrides) -> SoraPipeline:
    """The fixture pipeline (as `make_pipe` makes it, for a module-scoped fixture) with `overrides`."""
    parts = {**components, "scheduler": SoraFlowMatchScheduler(shift=SCHEDULER_SHIFT), **overrides}
    return SoraPipeline(**parts, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)


@pytest.fixture(scope="module")
def saved(components, tmp_path_factory):
    """Folders `save_pretrained` wrote, and one huggingface_hub cache holding them as snapshots of `REPO`:
    - main: the fixture pipeline in float32, and its float16 variant (`*.fp16.safetensors`) beside it (refs/main);
    - v2: the same with other transformer weights (refs/v2);
    - "me/tiny-sora-embeds": saved without its tokenizer and text encoder (runs from `prompt_embeds`).
    """
    root = tmp_path_factory.mktemp("hub")
    pipe = make(components)
    main = root / "main"
    half = copy.deepcopy(pipe)
    for name in MODELS:  # what `.to(torch.float16)` does, without diffusers' warning about the float32 islands
        getattr(half, name).half()
    half.save_pretrained(main, variant="fp16")
    # then float32, whose config.json stays (transformers loads a text encoder in its config's dtype by default)
    pipe.save_pretrained(main)
    v2 = root / "v2"
    make(components, transformer=perturb_(copy.deepcopy(pipe.transformer))).save_pretrained(v2)
    embeds_only = root / "embeds-only"
    make(components, tokenizer=None, text_encoder=None).save_pretrained(embeds_only)

    cache = root / "cache"
    commits = {"main": add_to_hub_cache(cache, REPO, main), "v2": add_to_hub_cache(cache, REPO, v2, revision="v2")}
    add_to_hub_cache(cache, f"{REPO}-embeds", embeds_only)
    reference = SoraPipeline.from_pretrained(main)
    return {
        "cache": cache, "commits": commits, "main": main, "v2": v2,
        "video": run(reference), "embeds": reference.encode_prompt("a red circle"),
    }  # fmt: skip


@pytest.fixture
def hub_cache(saved, monkeypatch):
    """`saved`'s cache as the huggingface_hub cache, offline."""
    return use_hub_cache(monkeypatch, saved["cache"])


# ---- loading a Hub id from the cache ---------------------------------------------------------------------------------


def test_hub_id_loads_from_the_cache_as_the_folder_does(saved, hub_cache):
    for loaded in (SoraPipeline.from_pretrained(REPO), diffusers.DiffusionPipeline.from_pretrained(REPO)):
        assert type(loaded) is SoraPipeline and loaded.name_or_path == REPO
        assert all(getattr(loaded, name).dtype == torch.float32 for name in MODELS)
        assert torch.equal(run(loaded), saved["video"])


def test_cache_dir_names_the_cache_instead_of_the_environment(saved, offline_hub_cache):
    """`offline_hub_cache` (HF_HUB_CACHE) is empty: the repo is found through `cache_dir` alone."""
    loaded = SoraPipeline.from_pretrained(REPO, cache_dir=saved["cache"])
    assert torch.equal(run(loaded), saved["video"])
    with pytest.raises(OSError, match=REPO):
        SoraPipeline.from_pretrained(REPO)


def test_revision_picks_the_snapshot_of_a_branch_or_a_commit(saved, hub_cache):
    v2 = load_file(saved["v2"] / "transformer" / f"{WEIGHTS}.safetensors")
    main = load_file(saved["main"] / "transformer" / f"{WEIGHTS}.safetensors")
    key = "blocks.0.attn1.to_q.weight"
    assert not torch.equal(v2[key], main[key])

    for revision in ("v2", saved["commits"]["v2"]):
        loaded = SoraPipeline.from_pretrained(REPO, revision=revision)
        assert all(torch.equal(value, v2[name]) for name, value in loaded.transformer.state_dict().items()), revision
        assert not torch.equal(run(loaded), saved["video"])
    loaded = SoraPipeline.from_pretrained(REPO, revision=saved["commits"]["main"])
    assert torch.equal(loaded.transformer.state_dict()[key], main[key])
    assert torch.equal(run(loaded), saved["video"])


@pytest.mark.parametrize("dtype", [torch.float16, None])
def test_variant_loads_the_variant_files(saved, hub_cache, dtype):
    """`variant="fp16"` loads `*.fp16.safetensors`, in `dtype` (float16 here; float32, diffusers' default, without)."""
    loaded = SoraPipeline.from_pretrained(REPO, variant="fp16", dtype=dtype)
    for name in MODELS:
        files = sorted((saved["main"] / name).glob("*.fp16.safetensors"))
        assert len(files) == 1, files
        half, full = load_file(files[0]), load_file(str(files[0]).replace(".fp16", ""))
        weights = getattr(loaded, name).state_dict()
        assert {v.dtype for v in half.values() if v.is_floating_point()} == {torch.float16}
        # the variant's values (float32 islands are kept in float32, `_keep_in_fp32_modules`), not the float32 files'
        assert all(torch.equal(weights[k].half(), v) for k, v in half.items()), name
        assert not all(torch.equal(weights[k].float(), v) for k, v in full.items()), name
        assert getattr(loaded, name).dtype == (dtype or torch.float32), name
    keep = loaded.transformer._keep_in_fp32_modules
    islands = {p.dtype for n, p in loaded.transformer.named_parameters() if any(k in n.split(".") for k in keep)}
    assert islands == {torch.float32}
    assert torch.isfinite(run(loaded)).all()


def test_float32_files_load_in_float32_after_a_variant_saved_beside_them(components, tmp_path):
    """diffusers' order, float32 first and the fp16 variant second, leaves float16 in the text encoder's shared
    config.json; without `dtype` every component still loads in float32, the text encoder's float32 files included."""
    pipe = make(components)
    pipe.save_pretrained(tmp_path)
    half = copy.deepcopy(pipe)
    for name in MODELS:
        getattr(half, name).half()
    half.save_pretrained(tmp_path, variant="fp16")
    assert json.loads((tmp_path / "text_encoder" / "config.json").read_text())["dtype"] == "float16"

    loaded = SoraPipeline.from_pretrained(tmp_path)
    assert {name: getattr(loaded, name).dtype for name in MODELS} == dict.fromkeys(MODELS, torch.float32)
    assert torch.equal(run(loaded), run(pipe))
    variant = SoraPipeline.from_pretrained(tmp_path, variant="fp16", dtype=torch.float16)
    assert {name: getattr(variant, name).dtype for name in MODELS} == dict.fromkeys(MODELS, torch.float16)


def test_a_variant_the_repo_lacks_is_an_error_naming_it(hub_cache):
    with pytest.raises(ValueError, match="bf16"):
        SoraPipeline.from_pretrained(REPO, variant="bf16")


@pytest.mark.parametrize("argument", ["dtype", "torch_dtype"])
def test_dtype_sets_the_models_dtype(saved, hub_cache, argument):
    """`dtype` (diffusers 0.36+) and its earlier name `torch_dtype`, which diffusers 0.42 still takes with a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = SoraPipeline.from_pretrained(REPO, **{argument: torch.bfloat16})
    assert loaded.transformer.dtype == loaded.text_encoder.dtype == torch.bfloat16
    assert loaded.transformer.scale_shift_table.dtype == torch.float32  # `_keep_in_fp32_modules`
    full = load_file(saved["main"] / "transformer" / f"{WEIGHTS}.safetensors")
    weights = loaded.transformer.state_dict()
    assert all(torch.equal(weights[k], v.to(weights[k].dtype)) for k, v in full.items())
    video = run(loaded)
    assert video.dtype == torch.bfloat16 and video.shape == saved["video"].shape
    assert (video.float() - saved["video"]).abs().max() < 0.1  # bfloat16's rounding (0.026 measured)


def test_a_repo_or_revision_not_in_the_cache_is_an_error_naming_it(hub_cache):
    with pytest.raises(OSError, match="me/not-cached"):
        SoraPipeline.from_pretrained("me/not-cached")
    with pytest.raises(OSError, match=REPO):
        SoraPipeline.from_pretrained(REPO, revision="no-such-branch")


def test_repo_saved_without_text_components_loads_and_runs_from_embeddings(saved, hub_cache):
    for loaded in (
        SoraPipeline.from_pretrained(f"{REPO}-embeds"),
        diffusers.DiffusionPipeline.from_pretrained(f"{REPO}-embeds"),
        SoraPipeline.from_pretrained(REPO, text_encoder=None, tokenizer=None),
    ):
        assert loaded.text_encoder is None and loaded.tokenizer is None
        assert torch.equal(run_from_embeds(loaded, saved["embeds"]), saved["video"])


def test_repo_naming_a_text_encoder_package_gets_its_text_components(saved, text_package, make_pipe, tmp_path):
    """The embedded default model's layout: no text_encoder/ or tokenizer/ folder, `text_encoder_package` in
    model_index.json; the package ships them."""
    folder = tmp_path / "folder"
    pipe = make_pipe(tokenizer=None, text_encoder=None, text_encoder_package=text_package)
    pipe.text_encoder = pipe.tokenizer = None  # filled from the package; diffusers then records [null, null]
    pipe.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["model_index.json", "scheduler", "transformer", "vae"]
    cache = tmp_path / "cache"
    add_to_hub_cache(cache, f"{REPO}-package", folder)
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_hub_cache(monkeypatch, cache)
        for loaded in (
            SoraPipeline.from_pretrained(f"{REPO}-package"),
            diffusers.DiffusionPipeline.from_pretrained(f"{REPO}-package"),
        ):
            assert loaded.text_encoder is not None and loaded.config.text_encoder_package == text_package
            assert torch.equal(run(loaded), saved["video"])


# ---- pushing to the Hub --------------------------------------------------------------------------------------------


def _saved_files(folder) -> set[str]:
    """What `save_pretrained` wrote into `folder` without a variant."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and ".fp16." not in p.name}


def _assert_listed_card(card: ModelCard, pipeline_tag: str) -> None:
    assert card.data.library_name == "diffusers" and card.data.pipeline_tag == pipeline_tag
    assert {pipeline_tag, "sora_diffusers", "diffusers", "video-generation"} <= set(card.data.tags)
    assert DIFFUSERS_PLACEHOLDER not in card.text


@pytest.mark.parametrize("how", ["push_to_hub", "save_pretrained"])
def test_a_push_sends_a_complete_repo_with_a_listed_model_card(saved, make_pipe, hub_push, tmp_path, how):
    pipe = make_pipe()
    if how == "push_to_hub":
        pipe.push_to_hub("me/x")
    else:
        pipe.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id="me/x")
    commit = hub_push.only_commit("me/x")

    # every file save_pretrained writes (model_index.json, each component's config and weights), and the card
    assert set(commit.files) == _saved_files(saved["main"]) | {"README.md"}
    index = commit.json("model_index.json")
    assert index["_class_name"] == "SoraPipeline" and index["transformer"] == [
        "sora_diffusers.models.transformer_sora", "DiTVideoTransformer3D"
    ]  # fmt: skip
    assert commit.deleted == [] and commit.commit_message == "Upload SoraPipeline"
    if how == "save_pretrained":  # the card is also left in the folder, as diffusers leaves its own
        assert (tmp_path / "out" / "README.md").read_bytes() == commit.files["README.md"]

    card = commit.card()
    _assert_listed_card(card, "text-to-video")
    assert 'pipe = SoraPipeline.from_pretrained("me/x")\nvideo = pipe("' in card.text
    assert "- `transformer`: `DiTVideoTransformer3D`" in card.text and "- `vae`: `SpacetimeVAE`" in card.text

    # the repo as the Hub would then serve it loads back into the same pipeline
    add_to_hub_cache(Path(constants.HF_HUB_CACHE), "me/x", commit.files)
    assert torch.equal(run(SoraPipeline.from_pretrained("me/x")), saved["video"])


def test_a_push_keeps_the_card_the_repo_has_and_adds_the_listing(make_pipe, hub_push, offline_hub_cache):
    readme = "---\nlicense: mit\ntags:\n- shapes\n---\n\n# Shapes model\n\nTrained on circles.\n"
    add_to_hub_cache(offline_hub_cache, "me/x", {"README.md": readme.encode()})
    make_pipe().push_to_hub("me/x")
    card = hub_push.only_commit("me/x").card()
    _assert_listed_card(card, "text-to-video")
    assert card.text.strip() == "# Shapes model\n\nTrained on circles." and card.data.license == "mit"
    assert card.data.tags == ["shapes", "text-to-video", "video-generation", "diffusers", "sora_diffusers"]


@pytest.mark.parametrize("xet", [True, False])
def test_an_image_to_video_pipeline_is_listed_as_image_to_video(make_pipe, hub_push, monkeypatch, xet):
    """With and without `hf_xet`: `upload_folder` then commits through `create_commit` instead of its pipeline."""
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: xet)
    SoraImageToVideoPipeline.from_pipe(make_pipe()).push_to_hub("me/i2v")
    commit = hub_push.only_commit("me/i2v")
    assert commit.json("model_index.json")["_class_name"] == "SoraImageToVideoPipeline"
    card = commit.card()
    _assert_listed_card(card, "image-to-video")
    assert 'pipe = SoraImageToVideoPipeline.from_pretrained("me/i2v")\n```' in card.text
