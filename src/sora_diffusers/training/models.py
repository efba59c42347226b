"""Models for training scripts: a `SpacetimeVAE` or `DiTVideoTransformer3D` from a model folder or from a pipeline
folder's subfolder, and a model config from a JSON file or a saved model folder."""

import json
from pathlib import Path


def load_vae(path: str | Path, **kwargs):
    """A `SpacetimeVAE` from a VAE folder (or Hub id), or from a pipeline folder's `vae/`; `kwargs` to from_pretrained."""
    from ..models.autoencoder_spacetime import SpacetimeVAE

    return _load_component(SpacetimeVAE, path, "vae", **kwargs)


def load_transformer(path: str | Path, **kwargs):
    """A `DiTVideoTransformer3D` from a model folder (or Hub id), or from a pipeline folder's `transformer/`."""
    from ..models.transformer_sora import DiTVideoTransformer3D

    return _load_component(DiTVideoTransformer3D, path, "transformer", **kwargs)


def _load_component(cls, path: str | Path, subfolder: str, **kwargs):
    found = subfolder if (Path(path) / subfolder / "config.json").is_file() else None
    return cls.from_pretrained(path, subfolder=found, **kwargs)


def load_json_config(path: str | None) -> dict:
    """A model config from a JSON file or a saved model folder's config.json (keys starting with "_" dropped)."""
    if not path:
        return {}
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    with open(path, encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}
