"""The model benchmarks in one run: DiT forward vs diffusers' Wan transformer, VAE long-clip decode vs
diffusers' AutoencoderKLWan (time and peak memory). Each part prints its own table; see bench_transformer.py and
bench_vae.py for what they measure and how.

    python benchmarks/bench_models.py                    # CPU defaults, ~3-4 minutes on 2 cores
    python benchmarks/bench_models.py --device cuda
"""

import argparse

import bench_transformer
import bench_vae


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    dit = bench_transformer.main(["--device", args.device])
    vae = bench_vae.main(["--device", args.device])
    print("\n## Summary (targets: DiT ratio <= 1.0; VAE peak memory <= 0.5x at <= 1.1x time)\n")
    print("| measure | ours / diffusers |")
    print("|---|---:|")
    print(f"| DiT forward time | {dit['ratio']:.2f} |")
    print(f"| VAE decode time | {vae['ratios']['time']:.2f} |")
    print(f"| VAE decode peak memory | {vae['ratios']['memory']:.2f} |")
    if "mp4" in vae:  # decode a long clip to an mp4 file: ours streams, diffusers returns the whole video first
        print(f"| VAE decode-to-mp4 time | {vae['mp4']['ratios']['time']:.2f} |")
        print(f"| VAE decode-to-mp4 peak memory | {vae['mp4']['ratios']['memory']:.2f} |")
    return {"dit": dit, "vae": vae}


if __name__ == "__main__":
    main()
