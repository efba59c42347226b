"""Convert a public Wan checkpoint into a `SoraPipeline` folder (`DiTVideoTransformer3D` + `SpacetimeVAE` + Wan's text
encoder, tokenizer and scheduler), or back (`--reverse`) into diffusers' `WanPipeline` layout.

    python conversion_scripts/convert_wan_to_sora.py --source Wan-AI/Wan2.1-T2V-1.3B-Diffusers \\
        --output_dir wan21-t2v-1.3b-sora --dtype bfloat16 [--push_to_hub --hub_model_id you/wan21-t2v-1.3b-sora]

Sources: Wan 2.1 T2V (1.3B, 14B), Wan 2.2 TI2V-5B and Wan 2.2 T2V-A14B (two experts), each in the diffusers layout
(`*-Diffusers`: model_index.json) or the original release layout (sharded `diffusion_pytorch_model*.safetensors` with
original keys, `Wan2.x_VAE.pth`). The layout is detected. A Hub id resolves from the local Hugging Face cache only.
The original layout's UMT5 text encoder (`models_t5_umt5-xxl-enc-bf16.pth`, Wan's own module names) is converted to a
transformers `UMT5EncoderModel` (text_encoder/, in the file's bfloat16) and the release's `google/umt5-xxl/` tokenizer
is saved as tokenizer/. `--text_encoder` takes a transformers text encoder folder or cached Hub id instead (e.g.
`Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, whose text_encoder/ is taken, or `google/umt5-xxl`); `--text_encoder none`
converts without one.

Weights are read with safetensors or `torch.load(weights_only=True, mmap=True)` (never unpickled code). The key maps
live in `sora_diffusers.loaders.original_checkpoint` and `loaders.wan_umt5`; this script is a command line around
`loaders.wan_conversion`. Every tensor is checked for count and shape before anything is written, and the output
folder is written under a temporary name and renamed into place: a failed conversion (exit code 2) leaves no partial
output.
"""

import argparse
import sys

import torch

from sora_diffusers.loaders.checkpoint_files import CheckpointError
from sora_diffusers.loaders.wan_conversion import convert_sora_to_wan, convert_wan_to_sora


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # the flag's earlier spellings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--source", help="Wan checkpoint folder or Hub id (local cache only), either layout")
    source.add_argument("--wan", dest="source", help=argparse.SUPPRESS)  # the earlier name of --source
    parser.add_argument("--output_dir", required=True, help="folder to write (replaced atomically if it exists)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=[*DTYPES, *DTYPE_ALIASES],
        help="transformer weights dtype (VAE: float32)",
    )
    parser.add_argument(
        "--text_encoder",
        default=None,
        help="transformers text encoder folder or cached Hub id to use instead of the source's (an original-layout "
        "source's UMT5 .pth is converted by default), or 'none'",
    )
    parser.add_argument("--reverse", action="store_true", help="SoraPipeline folder -> diffusers WanPipeline folder")
    parser.add_argument("--push_to_hub", action="store_true", help="upload the output folder to the Hub")
    parser.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub, e.g. you/wan21-sora")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    args = parser.parse_args(argv)
    args.dtype = DTYPE_ALIASES.get(args.dtype, args.dtype)
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id (the repo to create or update).")
    if args.reverse and (args.text_encoder is not None or args.dtype != "float32"):
        parser.error("--reverse keeps the folder's text encoder and dtypes; --text_encoder and --dtype do not apply.")
    return args


def push_to_hub(folder: str, repo_id: str, private: bool = False) -> str:
    """Create (or reuse) the Hub repo and upload the whole folder in one commit; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=folder, commit_message="Add Wan weights converted to sora_diffusers"
    )
    return str(url)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.reverse:
            path = convert_sora_to_wan(args.source, args.output_dir)
        else:
            path = convert_wan_to_sora(args.source, args.output_dir, DTYPES[args.dtype], args.text_encoder)
    except (CheckpointError, ValueError, OSError) as error:
        print(f"convert_wan_to_sora: error: {error}", file=sys.stderr)
        return 2
    print(path)
    if args.push_to_hub:
        print(push_to_hub(str(path), args.hub_model_id, args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
