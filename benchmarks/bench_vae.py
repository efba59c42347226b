"""SpacetimeVAE.decode vs diffusers' AutoencoderKLWan.decode on a long clip: wall time and peak memory.

Both decoders get the same random weights (diffusers' model, converted with `convert_wan_vae_state_dict`) and the
same latents; the architecture is Wan 2.1's at a reduced width (`--base-dim`, 96 in Wan) so that the whole script
runs in about 2 minutes on 2 CPU cores. Ours decodes `--chunk` latent frames at a time and never lets a layer hold
more than that many frames at its resolution; diffusers decodes one latent frame at a time (4 frames at full size).

How it measures. Every measurement runs in a fresh subprocess (`--worker`), so nothing one decoder allocated or
cached can lower or raise the other's numbers. A worker builds the model, loads weights and latents and runs a short
warm-up decode (oneDNN primitive creation, lazy initialisations) before it measures.
- Peak memory (one worker per decoder, one decode). CPU: the worker resets the kernel's peak-RSS counter (writing
  "5" to /proc/self/clear_refs resets VmHWM), reads VmRSS, decodes and reads VmHWM. Peak = VmHWM - VmRSS before:
  the extra resident memory the decode needed on top of model, latents and warm-up, PyTorch's and oneDNN's
  workspaces included. glibc is told to serve every allocation over 64 KiB with mmap (MALLOC_MMAP_THRESHOLD_, both
  sides) so that freed tensors leave RSS at once instead of staying in malloc's free lists: RSS then follows what is
  really live (repeated runs agree to 0.1 MiB). Where clear_refs is not writable it falls back to the growth of
  `ru_maxrss`, which can only under-count. CUDA: `torch.cuda.max_memory_allocated()` after
  `reset_peak_memory_stats()`, minus the allocation before.
- Wall time (one more worker per decoder, `--repeats` decodes, median). `time.perf_counter()` around the decode
  call, synchronised on CUDA, with glibc's default settings: the mmap setting above costs a system call and fresh
  zeroed pages per allocation, which would penalise whichever decoder allocates more often.
Workers run one after the other; on a machine shared with other jobs, compare times from a quiet moment only.
On CUDA, cuDNN's default TF32 convolutions round differently for our per-frame shapes: outputs differ by ~1e-3.

Measured (defaults; 2 CPU cores): time 0.81x, peak 0.73x, peak beyond the causal cache 0.55x (Xeon, 2 pinned
cores, 11.2 s vs 9.1 s, 124 vs 90 MiB). CUDA, full Wan 2.1 VAE (base_dim 96), 81 frames of 240 x 416, H100: time
1.13x (0.84 vs 0.95 s), peak 0.69x (2246 vs 1557 MiB), beyond the 900 MiB cache 0.49x. Both decoders keep the same
causal cache, which any exact streaming decoder needs: on the CPU default, cache plus output video (49 + 12 MiB)
alone are 0.50x of diffusers' peak; on the CUDA config they are 0.44x.

    python benchmarks/bench_vae.py                      # 65 frames of 128 x 128, base_dim 32, ~2 min
    python benchmarks/bench_vae.py --latent-frames 30 --height 96 --width 160 --base-dim 48
    python benchmarks/bench_vae.py --device cuda --base-dim 96 --latent-frames 21 --height 480 --width 832
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch


# glibc: allocations above 64 KiB are mmapped and returned to the OS when freed, so RSS tracks live tensors.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}
_WARMUP_LATENT_FRAMES = 2
MIB = 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dim", type=int, default=32, help="VAE width (Wan 2.1: 96); default 32")
    parser.add_argument("--latent-frames", type=int, default=17, help="T'; the clip has 1 + 4 (T' - 1) frames (65)")
    parser.add_argument("--height", type=int, default=128, help="output height in pixels, a multiple of 8")
    parser.add_argument("--width", type=int, default=128, help="output width in pixels, a multiple of 8")
    parser.add_argument("--chunk", type=int, default=1, help="SpacetimeVAE latent frames per chunk (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per decoder (median)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["diffusers", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["memory", "time"], default="time", help=argparse.SUPPRESS)
    parser.add_argument("--save-output", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- worker: one decode in this process ---------------------------------------------------------------------------


def _build_decoder(args: argparse.Namespace) -> torch.nn.Module:
    from diffusers import AutoencoderKLWan

    from sora_diffusers.loaders.original_checkpoint import (
        convert_wan_vae_state_dict,
        load_converted_state_dict,
        wan_vae_config_to_spacetime,
    )
    from sora_diffusers.models.autoencoder_spacetime import SpacetimeVAE

    torch.manual_seed(args.seed)
    wan = AutoencoderKLWan(base_dim=args.base_dim)  # Wan 2.1 layout: dim_mult (1, 2, 4, 4), 16 latent channels
    if args.worker == "diffusers":
        return wan.to(args.device).eval()
    ours = SpacetimeVAE(**wan_vae_config_to_spacetime(dict(wan.config)))
    load_converted_state_dict(ours, convert_wan_vae_state_dict(wan.state_dict()))
    ours.enable_temporal_chunking(args.chunk)
    return ours.to(args.device).eval()


def _rss_bytes() -> dict[str, int]:
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith(("VmRSS", "VmHWM")))
    return {name: int(value.split()[0]) * 1024 for name, value in fields.items()}  # kB -> bytes


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _measured_decode(vae: torch.nn.Module, z: torch.Tensor, device: str) -> tuple[torch.Tensor, float, int]:
    """Decode `z`; return the video, the wall time and the peak extra memory in bytes."""
    use_hwm = device == "cpu" and _reset_peak_rss()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()["VmRSS"] if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    video = vae.decode(z).sample
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_bytes()["VmHWM"] if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return video, seconds, peak - before


def _causal_cache_bytes(vae: torch.nn.Module, z: torch.Tensor) -> int:
    """Decode `z` and return what a CausalCache holds for it: the last `context_frames` input frames of every causal
    conv of the decoder. diffusers' `feat_cache` keeps the same frames of the same layers."""
    from sora_diffusers.models.causal_conv import CausalConv3d

    sizes = {}

    def record(module: CausalConv3d, inputs: tuple[torch.Tensor, ...]) -> None:
        B, C, _, H, W = inputs[0].shape
        sizes[module] = module.context_frames * B * C * H * W * inputs[0].element_size()

    convs = [m for m in vae.decoder.modules() if isinstance(m, CausalConv3d) and m.context_frames > 0]
    handles = [conv.register_forward_pre_hook(record) for conv in convs]
    vae.decode(z)
    for handle in handles:
        handle.remove()
    return sum(sizes.values())


def worker(args: argparse.Namespace) -> None:
    """Print one JSON line: per-decode wall times and peaks, the output size and (ours) the causal cache size."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    vae = _build_decoder(args)
    generator = torch.Generator().manual_seed(args.seed + 1)
    latent_shape = (1, 16, args.latent_frames, args.height // 8, args.width // 8)  # (B, C, T', H', W')
    z = torch.randn(latent_shape, generator=generator).to(args.device)
    warmup = z[:, :, :_WARMUP_LATENT_FRAMES]
    cache_bytes = None
    if args.worker == "ours":
        cache_bytes = _causal_cache_bytes(vae, warmup)  # doubles as the warm-up
    else:
        vae.decode(warmup)
    seconds, peaks = [], []
    for _ in range(1 if args.measure == "memory" else args.repeats):
        video, time_s, peak = _measured_decode(vae, z, args.device)
        seconds.append(time_s)
        peaks.append(peak)
    if args.save_output:
        torch.save(video.cpu(), args.save_output)
    video_bytes = video.numel() * video.element_size()
    print(
        json.dumps({"seconds": seconds, "peak_bytes": peaks, "video_bytes": video_bytes, "cache_bytes": cache_bytes})
    )


# ---- driver: one worker per decoder, then the table ----------------------------------------------------------------


def _run_worker(kind: str, measure: str, args: argparse.Namespace, save_output: str | None = None) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--measure", measure]
    argv += ["--save-output", save_output] if save_output else []
    for name in ("base_dim", "latent_frames", "height", "width", "chunk", "repeats", "device", "seed", "threads"):
        if getattr(args, name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = {**os.environ, **(_MALLOC_ENV if measure == "memory" else {})}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    num_frames = 1 + 4 * (args.latent_frames - 1)
    kinds = ("diffusers", "ours")
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {kind: os.path.join(tmp, f"{kind}.pt") for kind in kinds}
        memory_runs = {kind: _run_worker(kind, "memory", args, outputs[kind]) for kind in kinds}
        max_diff = (torch.load(outputs["ours"]) - torch.load(outputs["diffusers"])).abs().max().item()
    time_runs = {kind: _run_worker(kind, "time", args) for kind in kinds}
    for kind in kinds:
        print(
            f"  {kind}: peak bytes {memory_runs[kind]['peak_bytes']}, seconds {time_runs[kind]['seconds']}",
            file=sys.stderr,
        )

    seconds = {kind: statistics.median(time_runs[kind]["seconds"]) for kind in kinds}
    peak = {kind: memory_runs[kind]["peak_bytes"][0] / MIB for kind in kinds}
    cache = memory_runs["ours"]["cache_bytes"] / MIB  # diffusers' feat_cache holds the same frames of the same layers
    video = memory_runs["ours"]["video_bytes"] / MIB
    threads = args.threads or torch.get_num_threads()
    print(
        f"\nDecode of {num_frames} frames of {args.height}x{args.width} ({args.latent_frames} latent frames), Wan 2.1 "
        f"VAE at base_dim {args.base_dim}, {args.device}, {threads} threads, time: median of {args.repeats} decodes.\n"
    )
    print("| decoder | wall time (s) | peak memory over loaded model (MiB) | peak minus causal cache (MiB) |")
    print("|---|---:|---:|---:|")
    names = {"diffusers": "diffusers `AutoencoderKLWan.decode`", "ours": f"`SpacetimeVAE.decode`, chunk {args.chunk}"}
    for kind, name in names.items():
        print(f"| {name} | {seconds[kind]:.2f} | {peak[kind]:.1f} | {peak[kind] - cache:.1f} |")
    ratios = {
        "time": seconds["ours"] / seconds["diffusers"],
        "memory": peak["ours"] / peak["diffusers"],
        "memory_beyond_cache": (peak["ours"] - cache) / (peak["diffusers"] - cache),
    }
    print(f"| **ours / diffusers** | **{ratios['time']:.2f}x** | **{ratios['memory']:.2f}x** | "
          f"**{ratios['memory_beyond_cache']:.2f}x** |")  # fmt: skip
    print(
        f"\nmax |ours - diffusers| over the decoded video: {max_diff:.2e}. Causal cache: {cache:.1f} MiB (the last 2 "
        "input frames of every 3x3x3 conv, at its resolution), held by both decoders and needed by any exact "
        f"streaming decoder; output video: {video:.1f} MiB (ours writes it once, diffusers grows it by torch.cat)."
    )
    return {"seconds": seconds, "peak_mib": peak, "cache_mib": cache, "ratios": ratios, "max_diff": max_diff}


if __name__ == "__main__":
    main()
