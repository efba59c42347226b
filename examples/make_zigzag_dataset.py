"""Write the training folder of the worked LoRA example: shapes-world clips of the opt-in zig-zag motion, plus some
ordinary clips of the default world so the LoRA keeps what the base model does (`examples/train_example_lora.sh`).

    python examples/make_zigzag_dataset.py --output_dir ../runs/lora_zigzag/data              # 160 + 40 clips

The folder is what `examples/train_lora.py --data_dir` reads: `zigzag/clip_*.mp4` and `base/clip_*.mp4` (each with
its `.txt` caption), and a `metadata.jsonl` at the top that lists both (`file_name`, `text`, `label`, `spec`). Clip
`i` of each part is item `i` of `ShapesWorldDataset(..., seed)`: zig-zags with `--seed`, the base clips with
`--seed + 1`, both far from the held-out scenes of `benchmarks/eval_default_model.py` (seeds from 10,000,000).
"""

import argparse
import json
from pathlib import Path

from sora_diffusers.data import ZIGZAG_MOTIONS, make_buckets, write_dataset
from sora_diffusers.data.shapes import ZIGZAG_MIN_FRAMES
from sora_diffusers.training.buckets import ASPECT_RATIOS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_zigzag", type=int, default=160, help="zig-zag clips (default 160)")
    p.add_argument("--num_base", type=int, default=40, help="ordinary default-world clips (default 40)")
    p.add_argument("--resolution", type=int, default=256, help="long side, as the base model was trained (256)")
    p.add_argument("--resolution_multiple", type=int, default=32)
    p.add_argument(
        "--num_frames", type=int, nargs="+", default=[33], help=f"clip lengths, each >= {ZIGZAG_MIN_FRAMES}"
    )
    p.add_argument("--aspect_ratios", nargs="+", choices=list(ASPECT_RATIOS), default=list(ASPECT_RATIOS))
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.num_zigzag < 1 or args.num_base < 0:
        raise ValueError(f"--num_zigzag must be >= 1 and --num_base >= 0, got {args.num_zigzag}, {args.num_base}")
    short = [n for n in args.num_frames if n < ZIGZAG_MIN_FRAMES]
    if short:
        raise ValueError(f"--num_frames must be >= {ZIGZAG_MIN_FRAMES} (a zig-zag turns 3 times), got {short}")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    out = Path(args.output_dir)
    buckets = make_buckets(args.resolution, args.num_frames, args.aspect_ratios, args.resolution_multiple)
    parts = [("zigzag", args.num_zigzag, args.seed, {"motions": ZIGZAG_MOTIONS})]
    if args.num_base:
        parts.append(("base", args.num_base, args.seed + 1, None))
    rows = []
    for name, count, seed, spec_kwargs in parts:
        write_dataset(out / name, count, buckets, seed=seed, spec_kwargs=spec_kwargs)
        with open(out / name / "metadata.jsonl", encoding="utf-8") as part:
            rows += [{**row, "file_name": f"{name}/{row['file_name']}"} for row in map(json.loads, part)]
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as metadata:
        metadata.writelines(json.dumps(row) + "\n" for row in rows)
    print(f"{len(rows)} clips in {out} ({args.num_zigzag} zig-zags, {args.num_base} of the default world)")
    return out


if __name__ == "__main__":
    main()
