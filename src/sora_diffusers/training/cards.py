"""Hugging Face model cards for the models the training scripts write.

`create_model_card` fills `MODEL_CARD_TEMPLATE` (a Jinja template, rendered by huggingface_hub's
`ModelCard.from_template`) with what a training run knows: the model, the base model it was fine-tuned from, the
command, the hardware, the steps, the data, the evaluation figures and the license. The card's YAML header carries
`library_name: diffusers`, `pipeline_tag: text-to-video` and the tags the Hub filters on. Save it as `README.md` in the
output folder before uploading it:

    card = create_model_card(
        "A text-to-video model of the shapes world.",
        training_command=["accelerate", "launch", "examples/train_text_to_video.py", *sys.argv[1:]],
        hardware=describe_hardware(accelerator.device, accelerator.num_processes),
        train_steps=global_step,
        dataset_description="2,880 clips of the procedural shapes world (`sora_diffusers.data`), rendered from seeds.",
        eval_results={"t2v adherence": 0.54},
    )
    card.save(os.path.join(args.output_dir, "README.md"))
"""

import shlex
from collections.abc import Mapping, Sequence

import torch
from diffusers.utils.hub_utils import populate_model_card
from huggingface_hub import ModelCard, ModelCardData


DEFAULT_TAGS = ("video-generation", "diffusers", "sora_diffusers")  # after the pipeline tag, when there is one
# What the training scripts save, a whole pipeline or one of its models, and the card's default title; the "How to
# use" snippet depends on it too.
MODEL_CLASSES = {
    "SoraPipeline": "sora_diffusers text-to-video model",
    "DiTVideoTransformer3D": "sora_diffusers video transformer",
    "SpacetimeVAE": "sora_diffusers spacetime VAE",
    "LoRA": "sora_diffusers LoRA",  # pytorch_lora_weights.safetensors for a SoraPipeline (`base_model`)
}
DEFAULT_EXAMPLE_PROMPT = "a red circle moves to the right on a black background"  # a shapes-world caption
DEFAULT_MODEL_PATH = "path/to/this/model"  # in the snippet, when the card does not know its repo id
# What diffusers' `load_or_create_model_card` (0.2x to 0.42) writes into the card it makes for a repo that has none.
DIFFUSERS_PLACEHOLDER = "This model card has been automatically generated."

# Rendered by `ModelCard.from_template` (plain jinja2.Template: no trim_blocks, so `{%-` and `-%}` strip newlines).
MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

<!-- This model card was written by sora_diffusers.training.cards from what the training script knew. Proofread and
complete it. -->

# {{ title }}

{{ model_description }}
{%- if base_model %}

Fine-tuned from [{{ base_model }}](https://huggingface.co/{{ base_model }}).
{%- endif %}

## How to use

```python
{%- if model_class == "SoraPipeline" %}
import torch
from sora_diffusers import SoraPipeline

pipe = SoraPipeline.from_pretrained("{{ model_path }}")
video = pipe("{{ example_prompt }}", generator=torch.manual_seed(0)).frames[0]
{%- elif model_class == "LoRA" %}
import torch
from sora_diffusers import SoraPipeline
{% if base_model %}
pipe = SoraPipeline.from_pretrained("{{ base_model }}")
{%- else %}
pipe = SoraPipeline.from_default_model()  # or the pipeline folder the LoRA was trained on
{%- endif %}
pipe.load_lora_weights("{{ model_path }}", adapter_name="lora")
pipe.set_adapters(["lora"], adapter_weights=[1.0])  # its scale: 0 is the base model
video = pipe("{{ example_prompt }}", generator=torch.manual_seed(0)).frames[0]
{%- else %}
from sora_diffusers import {{ model_class }}

model = {{ model_class }}.from_pretrained("{{ model_path }}")
{%- endif %}
```
{%- if limitations %}

## Limitations

{{ limitations }}
{%- endif %}

## Training data

{{ dataset_description }}

## Training procedure

| setting | value |
|---|---|
{%- if base_model %}
| base model | `{{ base_model }}` |
{%- endif %}
| hardware | {{ hardware }} |
| steps | {{ train_steps }} |
{%- if training_time %}
| wall time | {{ training_time }} |
{%- endif %}

```bash
{{ training_command }}
```

## Evaluation
{% if eval_rows %}
{%- if eval_command %}
`{{ eval_command }}`
{% endif %}
| metric | value |
|---|---:|
{%- for name, value in eval_rows %}
| {{ name }} | {{ value }} |
{%- endfor %}
{%- else %}
Not evaluated.
{%- endif %}

## License

`{{ license }}`
"""


def create_model_card(
    model_description: str,
    *,
    training_command: str | Sequence[str],
    hardware: str,
    train_steps: int,
    dataset_description: str,
    base_model: str | None = None,
    eval_results: Mapping[str, float | int | str] | None = None,
    eval_command: str | None = None,
    license: str = "apache-2.0",
    model_name: str | None = None,
    repo_id: str | None = None,
    model_class: str = "SoraPipeline",
    example_prompt: str = DEFAULT_EXAMPLE_PROMPT,
    training_time: str | None = None,
    limitations: str | None = None,
    tags: Sequence[str] = (),
    pipeline_tag: str | None = "text-to-video",
    template_str: str = MODEL_CARD_TEMPLATE,
) -> ModelCard:
    """A model card for a model a training script wrote, with the YAML header the Hugging Face Hub reads.

    Args:
        model_description (`str`):
            What the model is (components, sizes, what it generates); markdown.
        training_command (`str` or `list[str]`):
            The command that trained it; a list (e.g. `["python", *sys.argv]`) is shell-quoted with `shlex.join`.
        hardware (`str`):
            What it was trained on, e.g. `"1 x NVIDIA H100 80GB HBM3"` (see `describe_hardware`).
        train_steps (`int`):
            Optimizer steps the model was trained for.
        dataset_description (`str`):
            What it was trained on: the data, how captions were made, sizes and durations; markdown.
        base_model (`str`, *optional*):
            Hub id of the model it was fine-tuned from (goes into the header's `base_model`); `None` when trained from
            scratch.
        eval_results (`dict[str, float | int | str]`, *optional*):
            Evaluation figures, metric name -> value, shown as a table in the given order; `None`: "Not evaluated."
        eval_command (`str`, *optional*):
            The command that measured `eval_results`.
        license (`str`, defaults to `"apache-2.0"`):
            The license identifier for the header, e.g. `"apache-2.0"` or `"mit"`.
        model_name (`str`, *optional*):
            The card's title; defaults to the name part of `repo_id`, else a name for `model_class`.
        repo_id (`str`, *optional*):
            The Hub repo the model goes to; used in the "How to use" snippet.
        model_class (`str`, defaults to `"SoraPipeline"`):
            What the folder holds, one of `MODEL_CLASSES`; decides the "How to use" snippet.
        example_prompt (`str`):
            The prompt of the "How to use" snippet of a pipeline.
        training_time (`str`, *optional*):
            Wall time of the training, e.g. `"10 h"`.
        limitations (`str`, *optional*):
            Known limitations; the section is left out when `None`.
        tags (`list[str]`, *optional*):
            Tags added after `pipeline_tag` and `DEFAULT_TAGS` (duplicates dropped).
        pipeline_tag (`str`, *optional*, defaults to `"text-to-video"`):
            The Hub task; `None` for a folder that is not a pipeline (a VAE alone).
        template_str (`str`, *optional*):
            A Jinja template to render instead of `MODEL_CARD_TEMPLATE`, with the same variables.

    Returns:
        `huggingface_hub.ModelCard`: save it with `card.save(os.path.join(output_dir, "README.md"))`.
    """
    for name, value in (
        ("model_description", model_description),
        ("hardware", hardware),
        ("dataset_description", dataset_description),
        ("license", license),
    ):
        _check_text(name, value)
    for name, value in (
        ("base_model", base_model),
        ("eval_command", eval_command),
        ("model_name", model_name),
        ("repo_id", repo_id),
        ("training_time", training_time),
        ("limitations", limitations),
        ("pipeline_tag", pipeline_tag),
    ):
        if value is not None:
            _check_text(name, value)
    if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 0:
        raise ValueError(f"`train_steps` must be an int >= 0, got {train_steps!r}")
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"`model_class` must be one of {tuple(MODEL_CLASSES)}, got {model_class!r}")
    if isinstance(tags, str) or not all(isinstance(tag, str) and tag.strip() for tag in tags):
        raise TypeError(f"`tags` must be a list of non-empty strings, got {tags!r}")

    card_data = ModelCardData(
        license=license,
        library_name="diffusers",
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        tags=list(dict.fromkeys([*([pipeline_tag] if pipeline_tag else []), *DEFAULT_TAGS, *tags])),
    )
    return ModelCard.from_template(
        card_data,
        template_str=template_str,
        title=model_name or (repo_id.split("/")[-1] if repo_id else MODEL_CLASSES[model_class]),
        model_description=model_description.strip(),
        base_model=base_model,
        model_class=model_class,
        model_path=repo_id or DEFAULT_MODEL_PATH,
        example_prompt=example_prompt,
        limitations=limitations.strip() if limitations else None,
        dataset_description=dataset_description.strip(),
        hardware=hardware,
        train_steps=f"{train_steps:,}",
        training_time=training_time,
        training_command=_command_text(training_command),
        eval_command=eval_command,
        eval_rows=_eval_rows(eval_results),
        license=license,
    )


def complete_pipeline_card(
    card: ModelCard, pipeline, repo_id: str, pipeline_tag: str | None = "text-to-video"
) -> ModelCard:
    """The model card diffusers' `push_to_hub` writes for a pipeline, completed so the Hub lists it and a reader can
    load it: what `SoraPipeline.push_to_hub` and `save_pretrained(..., push_to_hub=True)` upload as README.md.

    The metadata gets `library_name: diffusers` (diffusers' `populate_model_card`), `pipeline_tag` unless the card has
    one, and whichever of `pipeline_tag` and `DEFAULT_TAGS` its tags lack. A card diffusers made for a repo without
    one (its placeholder description, `DIFFUSERS_PLACEHOLDER`) is rendered again from the same template
    (huggingface_hub's default model card) with what the pipeline holds and how to load it; a card the repo already
    had keeps its text.

    Args:
        card (`huggingface_hub.ModelCard`): the card diffusers wrote (`load_or_create_model_card`).
        pipeline (`SoraPipeline` or a subclass): the pipeline being pushed.
        repo_id (`str`): the repo it goes to, for the "How to Get Started" snippet.
        pipeline_tag (`str`, *optional*): the Hub task, e.g. `"text-to-video"` or `"image-to-video"`.
    """
    _check_text("repo_id", repo_id)
    tags = [*([pipeline_tag] if pipeline_tag else []), *DEFAULT_TAGS]
    card = populate_model_card(card, tags=[tag for tag in tags if tag not in (card.data.tags or [])])
    if card.data.pipeline_tag is None:
        card.data.pipeline_tag = pipeline_tag
    if DIFFUSERS_PLACEHOLDER in card.text:
        card = ModelCard.from_template(
            card.data,
            model_id=repo_id,
            model_description=_pipeline_description(pipeline, pipeline_tag),
            get_started_code=_pipeline_snippet(pipeline, repo_id),
        )
    return card


def _pipeline_description(pipeline, pipeline_tag: str | None) -> str:
    """Which pipeline, and each component's class (and parameter count), as markdown."""
    kind = f"A {pipeline_tag} pipeline" if pipeline_tag else "A pipeline"
    lines = [f"{kind} for 🧨 diffusers, written with `sora_diffusers` (`{type(pipeline).__name__}`). Components:", ""]
    for name, component in pipeline.components.items():
        if component is None:
            continue
        size = ""
        if isinstance(component, torch.nn.Module):
            size = f", {_count(sum(p.numel() for p in component.parameters()))} parameters in {component.dtype}"
        lines.append(f"- `{name}`: `{type(component).__name__}`{size}".replace("torch.", ""))
    package = pipeline.config.get("text_encoder_package")
    if pipeline.text_encoder is None and package:
        lines += ["", f"The tokenizer and text encoder are not stored here: `from_pretrained` loads them from the pip "
                  f"package `{package}` (`text_encoder_package` in model_index.json)."]  # fmt: skip
    elif pipeline.text_encoder is None:
        lines += ["", "There is no text encoder here: pass `prompt_embeds` (and `negative_prompt_embeds` when "
                  "`guidance_scale` > 1) instead of a prompt."]  # fmt: skip
    return "\n".join(lines)


def _pipeline_snippet(pipeline, repo_id: str) -> str:
    """How to load the pushed repo (in the transformer's dtype), and for a text-to-video pipeline, a call."""
    cls = type(pipeline).__name__
    dtype = pipeline.transformer.dtype if pipeline.transformer is not None else torch.float32
    dtype_arg = "" if dtype == torch.float32 else f", dtype={dtype}"
    lines = ["```python", "import torch", f"from sora_diffusers import {cls}", ""]
    lines.append(f'pipe = {cls}.from_pretrained("{repo_id}"{dtype_arg})')
    if cls == "SoraPipeline" and (pipeline.text_encoder is not None or pipeline.config.get("text_encoder_package")):
        lines.append(f'video = pipe("{DEFAULT_EXAMPLE_PROMPT}", generator=torch.manual_seed(0)).frames[0]')
    return "\n".join([*lines, "```"])


def _count(n: int) -> str:
    """A parameter count as the Hub shows one: 1.3B, 25.2M, 12.3K."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def describe_hardware(device: torch.device | str = "cpu", num_processes: int = 1) -> str:
    """A one-line description of the training hardware for `create_model_card`, e.g. `"2 x NVIDIA H100 80GB HBM3"`.

    Args:
        device (`torch.device` or `str`): the device the script trains on (`accelerator.device`).
        num_processes (`int`): processes training together (`accelerator.num_processes`), one device each.
    """
    device = torch.device(device)
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"`num_processes` must be an int >= 1, got {num_processes!r}")
    if device.type == "cuda":
        return f"{num_processes} x {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        threads = f"{torch.get_num_threads()} threads"
        return f"CPU ({threads})" if num_processes == 1 else f"CPU ({num_processes} processes x {threads})"
    return f"{num_processes} x {device.type}"


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"`{name}` must be a non-empty string, got {value!r}")


def _command_text(command: str | Sequence[str]) -> str:
    """The training command as one shell line; a list of arguments is quoted so it can be pasted back."""
    if isinstance(command, str):
        _check_text("training_command", command)
        return command.strip()
    if not command or not all(isinstance(arg, str) for arg in command):
        raise ValueError(f"`training_command` must be a string or a non-empty list of strings, got {command!r}")
    return shlex.join(command)


def _eval_rows(eval_results: Mapping[str, float | int | str] | None) -> list[tuple[str, str]]:
    """(metric, value as text) rows; floats in the shortest form that keeps 6 significant digits."""
    if eval_results is None:
        return []
    if not isinstance(eval_results, Mapping):
        raise TypeError(f"`eval_results` must be a mapping of metric name to value, got {type(eval_results).__name__}")
    rows = []
    for name, value in eval_results.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"`eval_results` keys must be non-empty strings, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"`eval_results[{name!r}]` must be a number or a string, got {value!r}")
        rows.append((name, f"{value:g}" if isinstance(value, float) else str(value)))
    return rows
