"""SpacetimeVAE vs diffusers' AutoencoderKLWan on a long clip: wall time and peak memory of two tasks.

1. Decode to a tensor: `decode(z)` on both sides, which returns the whole video.
2. Decode to an mp4 file, as each is used for it. diffusers: `AutoencoderKLWan.decode(z)` returns the whole video,
   which `export_to_video` then writes. Ours: `SpacetimeVAE.decode_frames(z)` yields the frames chunk by chunk and
   `export_to_video` sends each chunk to the encoder as it comes, so the video is never in memory at once. Both
   outputs go through the same in-place conversion to [0, 1] and the same `export_to_video` (libx264, its default
   quality, 16 fps), which turns any video into uint8 16 frames at a time.

Both decoders get the same random weights (diffusers' model, converted with `convert_wan_vae_state_dict`) and the
same latents; the architecture is Wan 2.1's at a reduced width (`--base-dim`, 96 in Wan) so that the whole script
runs in about 3.5 minutes on 2 CPU cores. Ours decodes `--chunk` latent frames at a time and never lets a layer hold
more than that many frames at its resolution; diffusers decodes one latent frame at a time (4 frames at full size).
The script checks that the outputs agree: the decoded tensors, the uint8 frames sent to the encoder, and the frames
decoded back from the two mp4 files.

How it measures. Each decoder's measurements run in fresh subprocesses (`--worker`), so nothing one decoder
allocated or cached can lower or raise the other's numbers. A worker builds the model, loads weights and latents and
runs both tasks once on a short clip (oneDNN primitive creation, lazy initialisations, imageio and ffmpeg start-up)
before it measures; it then runs the two tasks in turn.
- Peak memory (one worker per decoder, one run per task). CPU: before each run the worker resets the kernel's
  peak-RSS counter (writing "5" to /proc/self/clear_refs resets VmHWM) and reads VmRSS; after it, it reads VmHWM.
  Peak = VmHWM - VmRSS before: the extra resident memory the run needed on top of model, latents and warm-up,
  PyTorch's and oneDNN's workspaces included, and for the mp4 task the uint8 conversion and the pipe to ffmpeg.
  glibc is told to serve every allocation over 64 KiB with mmap (MALLOC_MMAP_THRESHOLD_, both sides) so that freed
  tensors leave RSS at once instead of staying in malloc's free lists: RSS then follows what is really live
  (repeated runs agree to 0.1 MiB). Where clear_refs is not writable it falls back to the growth of `ru_maxrss`,
  which can only under-count. CUDA: `torch.cuda.max_memory_allocated()` after `reset_peak_memory_stats()`, minus the
  allocation before. ffmpeg encodes in a process of its own, the same settings for both sides; its peak RSS (VmHWM,
  polled from /proc) is reported beside, not in, the peak.
- Wall time (one more worker per decoder, `--repeats` runs per task, median). `time.perf_counter()` around the call,
  synchronised on CUDA, with glibc's default settings: the mmap setting above costs a system call and fresh zeroed
  pages per allocation, which would penalise whichever decoder allocates more often.
Workers run one after the other; on a machine shared with other jobs, compare times from a quiet moment only
(`--repeats 3` for steadier medians). On CUDA, cuDNN's default TF32 convolutions round differently for our
per-frame shapes: outputs differ by ~1e-3.

Measured (defaults, 129 frames; 2 CPU cores, quiet VM, `--repeats 3`), after the per-tap channels-last CPU path
of `CausalConv3d` (2026-11-23). Decode to an mp4: peak 0.47x (134.6 vs 63.4 MiB) at time 0.73x (14.75
vs 10.81 s); beyond the 49.3 MiB causal cache 0.17x. Decode to a tensor: peak 0.64x (136.5 vs 86.9 MiB) at time
0.70x (14.44 vs 10.04 s). The tensor task cannot reach 0.5x here for an exact decoder: the causal cache (49.3 MiB,
which diffusers holds too) plus the returned video (24.2 MiB) are 0.54x of diffusers' peak before any activation.
Before that change (same VM): mp4 0.58x (135 vs 79 MiB), tensor 0.75x (137 vs 102 MiB), both at ~1.0x time.
The mp4 task's peak by clip length, before the change (diffusers vs ours, MiB; `--latent-frames` 17 / 33 / 65):
65 frames 122 vs 79 (0.65x), 129 frames 135 vs 79 (0.58x), 257 frames 159 vs 79 (0.49x): ours stays flat,
diffusers' grows by about one output video (12 MiB per 64 frames). The mp4 files differ only through the decoders'
float rounding (up to 6e-6, which flips 0.01% of the uint8 values by one level). CUDA, tensor task, full Wan 2.1
VAE (base_dim 96), 81 frames of 240 x 416, H100 (the CUDA path is unchanged by the CPU work): time 1.13x (0.84 vs
0.95 s), peak 0.69x (2246 vs 1557 MiB), beyond the 900 MiB cache 0.49x.

    python benchmarks/bench_vae.py                      # 129 frames of 128 x 128, base_dim 32, ~3.5 min
    python benchmarks/bench_vae.py --latent-frames 65   # 257 frames, ~6 min
    python benchmarks/bench_vae.py --latent-frames 30 --height 96 --width 160 --base-dim 48
    python benchmarks/bench_vae.py --device cuda --base-dim 96 --latent-frames 21 --height 480 --width 832
"""

import argparse
import filecmp
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch


# glibc: allocations above 64 KiB are mmapped and returned to the OS when freed, so RSS tracks live tensors.
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}
_WARMUP_LATENT_FRAMES = 2
MIB = 2**20
TASKS = ("tensor", "mp4")  # decode to a tensor; decode to an mp4 file
MP4_FPS = 16  # every other mp4 setting is export_to_video's default, the same for both decoders


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dim", type=int, default=32, help="VAE width (Wan 2.1: 96); default 32")
    parser.add_argument("--latent-frames", type=int, default=33, help="T'; the clip has 1 + 4 (T' - 1) frames (129)")
    parser.add_argument("--height", type=int, default=128, help="output height in pixels, a multiple of 8")
    parser.add_argument("--width", type=int, default=128, help="output width in pixels, a multiple of 8")
    parser.add_argument("--chunk", type=int, default=1, help="SpacetimeVAE latent frames per chunk (default 1)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per decoder and task (median)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["diffusers", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["memory", "time"], default="time", help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- worker: one decoder in this process --------------------------------------------------------------------------


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


def _unit_frames(video: torch.Tensor) -> torch.Tensor:
    """A decoder's (1, 3, t, H, W) output in [-1, 1] -> (t, 3, H, W) in [0, 1] for `export_to_video`, in place (a
    view, no copy): both decoders' outputs go through this same conversion."""
    return video[0].transpose(0, 1).add_(1.0).mul_(0.5)


def _task(vae: torch.nn.Module, kind: str, task: str, path: str) -> Callable[[torch.Tensor], object]:
    """The measured call. "tensor": `decode(z)`, returning the video. "mp4": decode `z` and write it to `path` as
    each decoder is used for that: diffusers' `decode` returns the whole video, which is then written; ours streams
    `decode_frames` chunks into the mp4 encoder."""
    from sora_diffusers.utils.export import export_to_video

    if task == "tensor":
        return lambda z: vae.decode(z).sample
    if kind == "diffusers":
        return lambda z: export_to_video(_unit_frames(vae.decode(z).sample), path, fps=MP4_FPS)
    return lambda z: export_to_video((_unit_frames(chunk) for chunk in vae.decode_frames(z)), path, fps=MP4_FPS)


def _measured(task: Callable[[torch.Tensor], object], z: torch.Tensor, device: str) -> tuple[object, float, int]:
    """Run `task(z)`; return its result, the wall time and the peak extra memory in bytes."""
    use_hwm = device == "cpu" and _reset_peak_rss()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()["VmRSS"] if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    result = task(z)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_bytes()["VmHWM"] if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result, seconds, peak - before


class _ChildPeakRss:
    """Peak RSS of the ffmpeg processes started while in this context, polled from /proc every few ms.

    Reads each child's VmHWM, the kernel's own high-water mark, so a peak between two polls still counts (only what
    happens after the last poll before it exits can be missed). `ru_maxrss` of RUSAGE_CHILDREN would not do: it
    keeps the high-water mark from before `exec`, i.e. this whole Python process as the forked child saw it.
    """

    def __init__(self) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "_ChildPeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            for children in glob.glob("/proc/self/task/*/children"):
                try:
                    with open(children) as file:
                        pids = file.read().split()
                    for pid in pids:
                        with open(f"/proc/{pid}/status") as status:
                            fields = dict(line.split(":", 1) for line in status if ":" in line)
                        if "ffmpeg" in fields["Name"] and "VmHWM" in fields:  # after exec, not the forked Python
                            self.peak_bytes = max(self.peak_bytes, int(fields["VmHWM"].split()[0]) * 1024)
                except (OSError, KeyError):  # the process or thread has just exited
                    continue


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
    """Print one JSON line: per task, the wall times and peaks of its runs (and for mp4 ffmpeg's peak RSS); for ours
    the causal cache size. With `--output-dir`, save the outputs there as {kind}.pt and {kind}.mp4."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    vae = _build_decoder(args)
    generator = torch.Generator().manual_seed(args.seed + 1)
    latent_shape = (1, 16, args.latent_frames, args.height // 8, args.width // 8)  # (B, C, T', H', W')
    z = torch.randn(latent_shape, generator=generator).to(args.device)
    warmup = z[:, :, :_WARMUP_LATENT_FRAMES]
    report = {"cache_bytes": _causal_cache_bytes(vae, warmup) if args.worker == "ours" else None}
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.output_dir or tmp
        tasks = {task: _task(vae, args.worker, task, f"{directory}/{args.worker}.mp4") for task in TASKS}
        for name, task in tasks.items():
            task(warmup)  # the warm-up, mp4 writer (imageio, ffmpeg) included
            report[name] = {"seconds": [], "peak_bytes": []}
        for _ in range(1 if args.measure == "memory" else args.repeats):
            for name, task in tasks.items():  # interleaved, so that a slow spell hits both tasks
                with _ChildPeakRss() if args.measure == "memory" and name == "mp4" else nullcontext() as ffmpeg:
                    result, seconds, peak = _measured(task, z, args.device)
                report[name]["seconds"].append(seconds)
                report[name]["peak_bytes"].append(peak)
                if ffmpeg is not None:
                    report[name]["ffmpeg_bytes"] = ffmpeg.peak_bytes
                if args.output_dir and name == "tensor":
                    torch.save(result.cpu(), f"{directory}/{args.worker}.pt")
                del result  # not alive during the next run
    print(json.dumps(report))


# ---- driver: two workers per decoder (memory, time), then the tables ------------------------------------------------


def _run_worker(kind: str, measure: str, args: argparse.Namespace, output_dir: str | None = None) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--measure", measure]
    argv += ["--output-dir", output_dir] if output_dir else []
    for name in ("base_dim", "latent_frames", "height", "width", "chunk", "repeats", "device", "seed", "threads"):
        if getattr(args, name) is not None:
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = {**os.environ, **(_MALLOC_ENV if measure == "memory" else {})}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _summary(task: str, memory_runs: dict, time_runs: dict) -> dict:
    """Median wall time, peak memory (MiB) and their ours / diffusers ratios for one task."""
    kinds = ("diffusers", "ours")
    for kind in kinds:
        peaks, seconds = memory_runs[kind][task]["peak_bytes"], time_runs[kind][task]["seconds"]
        print(f"  {task} {kind}: peak bytes {peaks}, seconds {[round(s, 2) for s in seconds]}", file=sys.stderr)
    summary = {
        "seconds": {kind: statistics.median(time_runs[kind][task]["seconds"]) for kind in kinds},
        "peak_mib": {kind: memory_runs[kind][task]["peak_bytes"][0] / MIB for kind in kinds},
        "cache_mib": memory_runs["ours"]["cache_bytes"] / MIB,  # diffusers' feat_cache holds the same frames
    }
    if task == "mp4":
        summary["ffmpeg_mib"] = {kind: memory_runs[kind][task]["ffmpeg_bytes"] / MIB for kind in kinds}
    summary["ratios"] = {
        "time": summary["seconds"]["ours"] / summary["seconds"]["diffusers"],
        "memory": summary["peak_mib"]["ours"] / summary["peak_mib"]["diffusers"],
    }
    return summary


def _print_table(r: dict, names: dict[str, str]) -> None:
    """A markdown table of wall time, peak memory, peak beyond the causal cache (and ffmpeg's peak when measured)."""
    cache, peak, seconds, ffmpeg = r["cache_mib"], r["peak_mib"], r["seconds"], r.get("ffmpeg_mib")
    header = "| decoder | wall time (s) | peak memory over loaded model (MiB) | peak minus causal cache (MiB) |"
    print(header + (" ffmpeg process peak RSS (MiB) |" if ffmpeg else ""))
    print("|---|---:|---:|---:|" + ("---:|" if ffmpeg else ""))
    for kind, name in names.items():
        extra = f" {ffmpeg[kind]:.1f} |" if ffmpeg else ""
        print(f"| {name} | {seconds[kind]:.2f} | {peak[kind]:.1f} | {peak[kind] - cache:.1f} |{extra}")
    ratios = r["ratios"]
    ratios["memory_beyond_cache"] = (peak["ours"] - cache) / (peak["diffusers"] - cache)
    print(f"| **ours / diffusers** | **{ratios['time']:.2f}x** | **{ratios['memory']:.2f}x** | "
          f"**{ratios['memory_beyond_cache']:.2f}x** |" + (" |" if ffmpeg else ""))  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    from sora_diffusers.utils.export import frames_to_uint8, load_video_frames

    num_frames = 1 + 4 * (args.latent_frames - 1)
    kinds = ("diffusers", "ours")
    with tempfile.TemporaryDirectory() as tmp:
        memory_runs = {kind: _run_worker(kind, "memory", args, output_dir=tmp) for kind in kinds}
        time_runs = {kind: _run_worker(kind, "time", args) for kind in kinds}
        tensor, mp4 = (_summary(task, memory_runs, time_runs) for task in TASKS)
        tensors = {kind: os.path.join(tmp, f"{kind}.pt") for kind in kinds}
        videos = {kind: os.path.join(tmp, f"{kind}.mp4") for kind in kinds}
        decoded = {kind: torch.load(path, weights_only=True) for kind, path in tensors.items()}
        max_diff = (decoded["ours"] - decoded["diffusers"]).abs().max().item()
        uint8 = {kind: frames_to_uint8(_unit_frames(video)).astype(int) for kind, video in decoded.items()}
        uint8_diff = abs(uint8["ours"] - uint8["diffusers"])
        frames = {kind: load_video_frames(path).astype(int) for kind, path in videos.items()}
        frame_diffs = abs(frames["ours"] - frames["diffusers"])
        frame_diff, frame_mean_diff = int(frame_diffs.max()), float(frame_diffs.mean())
        identical = filecmp.cmp(videos["ours"], videos["diffusers"], shallow=False)
        assert frames["ours"].shape == (num_frames, args.height, args.width, 3), frames["ours"].shape

    threads = args.threads or torch.get_num_threads()
    print(
        f"\nDecode of {num_frames} frames of {args.height}x{args.width} ({args.latent_frames} latent frames), Wan 2.1 "
        f"VAE at base_dim {args.base_dim}, {args.device}, {threads} threads, time: median of {args.repeats} runs."
    )
    print("\n1. Decode to a tensor (`decode(z)` returns the whole video).\n")
    _print_table(
        tensor,
        {"diffusers": "diffusers `AutoencoderKLWan.decode`", "ours": f"`SpacetimeVAE.decode`, chunk {args.chunk}"},
    )
    video_mib = 3 * num_frames * args.height * args.width * 4 / MIB
    print(
        f"\nmax |ours - diffusers| over the decoded video: {max_diff:.2e}. Causal cache: {tensor['cache_mib']:.1f} MiB "
        "(the last 2 input frames of every 3x3x3 conv, at its resolution), held by both decoders and needed by any "
        f"exact streaming decoder; output video: {video_mib:.1f} MiB (ours writes it once, diffusers grows it by "
        "torch.cat)."
    )
    print(f"\n2. Decode to an mp4 file (libx264, `export_to_video` defaults, {MP4_FPS} fps).\n")
    _print_table(
        mp4,
        {
            "diffusers": "diffusers `AutoencoderKLWan.decode`, then `export_to_video(video)`",
            "ours": f"`SpacetimeVAE.decode_frames` (chunk {args.chunk}) streamed into `export_to_video`",
        },
    )
    peak, ffmpeg = mp4["peak_mib"], mp4["ffmpeg_mib"]
    mp4["ratios"]["memory_with_ffmpeg"] = (peak["ours"] + ffmpeg["ours"]) / (peak["diffusers"] + ffmpeg["diffusers"])
    print(
        f"\nThe two mp4 files: {'byte-identical' if identical else 'not byte-identical'}; max |ours - diffusers| over "
        f"their decoded frames: {frame_diff} (0-255 levels; mean {frame_mean_diff:.4f}). The uint8 frames sent to the encoder differ in "
        f"{(uint8_diff > 0).mean():.4%} of their values (max {uint8_diff.max()}): float differences up to "
        f"{max_diff:.1e} move values next to a rounding boundary, and the encoder spreads them (libx264 is "
        "deterministic: identical frames give identical files). The peak counts this process (decode, uint8 "
        "conversion, pipe to ffmpeg); with ffmpeg's process added to both sides the ratio is "
        f"{mp4['ratios']['memory_with_ffmpeg']:.2f}x."
    )
    # The tensor task's numbers at the top level, as bench_models.py reads them; the mp4 task's under "mp4".
    mp4.update(frame_max_diff=frame_diff, frame_mean_diff=frame_mean_diff, identical_files=identical)
    return {**tensor, "max_diff": max_diff, "mp4": mp4}


if __name__ == "__main__":
    main()
