"""Convert a diffusers-layout Wan 2.1 text-to-video checkpoint (e.g. `Wan-AI/Wan2.1-T2V-1.3B-Diffusers`) into a
`SoraPipeline` folder: `DiTVideoTransformer3D` + `SpacetimeVAE` + the original text encoder, tokenizer and scheduler.

    python conversion_scripts/convert_wan_to_sora.py --wan PATH_OR_REPO_ID --output_dir wan-sora [--dtype bf16]

Weights are read with safetensors only (never unpickled). The key maps live in
`sora_diffusers.loaders.original_checkpoint`; this script is a thin command line around them. Every tensor is
checked for count and shape before anything is written, and the output folder is written under a temporary name and
renamed into place, so a failed conversion never leaves a half-written checkpoint.
"""

import argparse
import os
import shutil
import sys
import tempfile

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel

from sora_diffusers import DiTVideoTransformer3D, SoraPipeline, SpacetimeVAE
from sora_diffusers.loaders.original_checkpoint import (
    convert_wan_transformer_state_dict,
    convert_wan_vae_state_dict,
    load_converted_state_dict,
    wan_transformer_config_to_sora,
    wan_vae_config_to_spacetime,
)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def convert_transformer(wan: WanTransformer3DModel) -> DiTVideoTransformer3D:
    ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config)))
    load_converted_state_dict(ours, convert_wan_transformer_state_dict(wan.state_dict()))
    return ours


def convert_vae(wan_vae: AutoencoderKLWan) -> SpacetimeVAE:
    ours = SpacetimeVAE(**wan_vae_config_to_spacetime(dict(wan_vae.config)))
    load_converted_state_dict(ours, convert_wan_vae_state_dict(wan_vae.state_dict()))
    return ours


def convert_pipeline(wan_path: str, output_dir: str, dtype: torch.dtype = torch.float32) -> str:
    """Load a diffusers Wan pipeline folder (or Hub id in the local cache), convert it and save a SoraPipeline."""
    from diffusers import WanPipeline

    wan = WanPipeline.from_pretrained(wan_path, use_safetensors=True)
    pipe = SoraPipeline(
        tokenizer=wan.tokenizer,
        text_encoder=wan.text_encoder,
        transformer=convert_transformer(wan.transformer),
        vae=convert_vae(wan.vae),
        scheduler=wan.scheduler,
    )
    pipe.transformer.to(dtype)
    output_dir = os.path.abspath(output_dir)
    staging = tempfile.mkdtemp(prefix=".converting-", dir=os.path.dirname(output_dir) or ".")
    try:
        pipe.save_pretrained(staging, safe_serialization=True)
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wan", required=True, help="diffusers-layout Wan 2.1 T2V folder or Hub id (local cache)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="transformer weights dtype")
    args = parser.parse_args(argv)
    if args.wan.endswith((".pth", ".pt", ".ckpt")):
        parser.error("--wan: pickled checkpoints are not read (unsafe); convert the original release with diffusers' "
                     "scripts/convert_wan_to_diffusers.py first, or pass its *-Diffusers folder.")  # fmt: skip
    try:
        path = convert_pipeline(args.wan, args.output_dir, DTYPES[args.dtype])
    except (OSError, ValueError) as error:
        print(f"convert_wan_to_sora: error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
