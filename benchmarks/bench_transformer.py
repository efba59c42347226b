"""DiTVideoTransformer3D vs diffusers' WanTransformer3DModel: forward time at the same config, same weights.

Both models get identical (converted) weights and inputs; runs alternate between the two so that machine noise hits
both alike; the table reports medians and the ratio ours / Wan (< 1 means we are faster).

    python benchmarks/bench_transformer.py                 # CPU, fp32, tiny-but-not-trivial config
    python benchmarks/bench_transformer.py --device cuda --dtype bfloat16 --layers 8 --frames 21 --height 60 --width 104
"""

import argparse
import statistics
import time

import torch
from diffusers import WanTransformer3DModel

from sora_diffusers.loaders.original_checkpoint import (
    convert_wan_transformer_state_dict,
    load_converted_state_dict,
    wan_transformer_config_to_sora,
)
from sora_diffusers.models.transformer_sora import DiTVideoTransformer3D


def build_models(args) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": args.heads,
        "attention_head_dim": args.head_dim,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": args.text_dim,
        "freq_dim": 256,
        "ffn_dim": args.heads * args.head_dim * 4,
        "num_layers": args.layers,
    }
    wan = WanTransformer3DModel(**config, qk_norm="rms_norm_across_heads", cross_attn_norm=True)
    ours = DiTVideoTransformer3D(**wan_transformer_config_to_sora(dict(wan.config)))
    load_converted_state_dict(ours, convert_wan_transformer_state_dict(wan.state_dict()))
    dtype = getattr(torch, args.dtype)
    return wan.to(args.device, dtype).eval(), ours.to(args.device, dtype).eval()


def time_forward(model, inputs, device) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        model(*inputs)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--text-dim", type=int, default=384)
    parser.add_argument("--frames", type=int, default=9, help="latent frames")
    parser.add_argument("--height", type=int, default=24, help="latent height")
    parser.add_argument("--width", type=int, default=40, help="latent width")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    wan, ours = build_models(args)
    dtype = getattr(torch, args.dtype)
    x = torch.randn(1, 16, args.frames, args.height, args.width, device=args.device, dtype=dtype)
    t = torch.tensor([500.0], device=args.device)
    text = torch.randn(1, 64, args.text_dim, device=args.device, dtype=dtype)
    with torch.no_grad():
        err = (ours(x, t, text).sample.float() - wan(x, t, text).sample.float()).abs().max().item()

    times = {"wan": [], "ours": []}
    for _ in range(args.repeats):  # alternate so drift in machine load hits both
        times["wan"].append(time_forward(wan, (x, t, text), args.device))
        times["ours"].append(time_forward(ours, (x, t, text), args.device))
    med = {k: statistics.median(v) for k, v in times.items()}
    tokens = args.frames * (args.height // 2) * (args.width // 2)
    params = sum(p.numel() for p in ours.parameters()) / 1e6

    print(f"\nDiT forward, {params:.1f} M params, {args.layers} layers, width {args.heads * args.head_dim}, ")
    print(f"{tokens} tokens (latent {args.frames}x{args.height}x{args.width}), {args.device} {args.dtype}, ")
    print(f"median of {args.repeats} alternating runs; max |ours - wan| = {err:.2e}\n")
    print("| model | forward (s) | ratio vs Wan |")
    print("|---|---|---|")
    print(f"| diffusers WanTransformer3DModel | {med['wan']:.4f} | 1.00 |")
    print(f"| sora_diffusers DiTVideoTransformer3D | {med['ours']:.4f} | {med['ours'] / med['wan']:.2f} |")
    return {"wan_s": med["wan"], "ours_s": med["ours"], "ratio": med["ours"] / med["wan"], "max_abs_err": err}


if __name__ == "__main__":
    main()
