"""What the evaluator scores on a VAE's round trips of the held-out scenes: the ceiling of any DiT on that VAE.

    python benchmarks/eval_vae_ceiling.py                       # the embedded model's VAE, 12 clips, 33 x 256 x 256
    python benchmarks/eval_vae_ceiling.py --vae ../runs/vae --num_clips 32

A DiT generates latents and the VAE decodes them, so whatever the evaluator cannot read in `decode(encode(scene))`
(a colour shifted to another name, a triangle rounded into a blob, an object too faint to track) no denoiser can
give. Scenes are those of `eval_default_model.py` (same seeds and flags: one object, the 8 compass directions,
occluders as sampled). Prints the evaluator's scores on the round trips and on the rendered scenes, the PSNR of every
frame index averaged over the clips (a causal VAE trained on short clips can fall off after them), and the strict
shape reading frame by frame: of the frames behind a clip's shape score (the object whole; at most 17, evenly
spaced), the share that read as the scene's shape, for the first frame (encoded alone, as an image) and for the later
ones (4 to a latent frame), which tells a clip's shape score (80% of its frames) from what the VAE keeps in one frame.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from eval_default_model import MOTION_SETS, OBJECT_COUNTS, OCCLUDER_CHOICES, held_out_scenes
from tqdm.auto import tqdm

from sora_diffusers import SpacetimeVAE
from sora_diffusers.default_model import default_model_path
from sora_diffusers.eval import evaluate_clip


# The strict shape reading beside the lenient one used before 2026-12, so earlier figures stay comparable.
SCORES = ("color_correct", "shape_correct", "shape_correct_lenient", "shape_stable", "motion_correct", "permanence")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vae", default=None, help="a SpacetimeVAE folder (default: the embedded model's)")
    p.add_argument("--num_clips", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--num_frames", type=int, default=33)
    p.add_argument("--objects", choices=OBJECT_COUNTS, default="one")
    p.add_argument("--motions", choices=MOTION_SETS, default="directional")
    p.add_argument("--occluder", choices=OCCLUDER_CHOICES, default="sampled")
    args = p.parse_args(argv)
    if args.num_clips < 1:
        raise ValueError(f"--num_clips must be >= 1, got {args.num_clips}")
    return args


@torch.no_grad()
def round_trip(vae: SpacetimeVAE, frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 -> the VAE's reconstruction (posterior mode), (T, H, W, 3) uint8."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    out = vae.decode(vae.encode(video).latent_dist.mode()).sample[0].clamp(-1, 1)
    return ((out.permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


def frame_shape_reads(report: dict, shape: str, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of a clip: (judged, right) booleans of the strict shape reads behind `report`'s clip score."""
    judged, right = np.zeros(num_frames, bool), np.zeros(num_frames, bool)
    for frame, kind in report["shape_frame_reads"].items():
        judged[frame], right[frame] = True, kind == shape
    return judged, right


def main(argv=None) -> dict:
    args = parse_args(argv)
    vae = SpacetimeVAE.from_pretrained(args.vae or str(Path(default_model_path()) / "vae")).eval().float()
    size = {"height": args.height, "width": args.width, "num_frames": args.num_frames}
    recon_scores, truth_scores, frame_psnr, frame_reads = [], [], [], {"round trip": [], "rendered": []}
    for scene in tqdm(held_out_scenes(args, size), desc="clips"):
        rendered = scene["rendered"]
        recon = round_trip(vae, rendered)
        mse = ((recon.astype(np.float64) - rendered) ** 2).mean(axis=(1, 2, 3))
        frame_psnr.append(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10)))
        for video, scores, source in ((recon, recon_scores, "round trip"), (rendered, truth_scores, "rendered")):
            report = evaluate_clip(video, **scene["label"])
            scores.append([float(report[k]) for k in SCORES])
            frame_reads[source].append(frame_shape_reads(report, scene["label"]["shape"], len(video)))
    recon_mean, truth_mean = np.mean(recon_scores, 0), np.mean(truth_scores, 0)
    per_frame = np.mean(frame_psnr, 0)
    print(f"\n{args.num_clips} held-out scenes, {args.num_frames} x {args.height} x {args.width}\n")
    print("| metric | VAE round trip | rendered scene |\n|---|---:|---:|")
    print(f"| PSNR (dB, mean over frames) | {per_frame.mean():.2f} | inf |")
    for name, r, t in zip(SCORES, recon_mean, truth_mean):
        print(f"| {name} | {r:.2f} | {t:.2f} |")
    per_frame_shape = {}  # share of judged frames read as the scene's shape: first frame, later frames
    for source, reads in frame_reads.items():
        judged, right = (np.stack(r) for r in zip(*reads))  # (clips, frames) each
        per_frame_shape[source] = {
            part: (int(right[:, frames].sum()), int(judged[:, frames].sum()))
            for part, frames in (("first", slice(0, 1)), ("later", slice(1, None)))
        }
    for part in ("first", "later"):
        cells = [
            f"{r / max(j, 1):.2f} ({r}/{j})" for r, j in (per_frame_shape[source][part] for source in frame_reads)
        ]
        print(f"| shape per frame, strict: {part} frame{'s' if part == 'later' else ''} | " + " | ".join(cells) + " |")
    print("\nPSNR by frame index (dB): " + " ".join(f"{v:.1f}" for v in per_frame))
    return {
        "psnr": float(per_frame.mean()),
        "per_frame_psnr": per_frame.tolist(),
        "round_trip": dict(zip(SCORES, recon_mean.tolist())),
        "ground_truth": dict(zip(SCORES, truth_mean.tolist())),
        "shape_per_frame": {
            source: {part: r / max(j, 1) for part, (r, j) in parts.items()}
            for source, parts in per_frame_shape.items()
        },
    }


if __name__ == "__main__":
    main()
