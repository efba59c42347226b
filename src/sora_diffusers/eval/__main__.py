"""`python -m sora_diffusers.eval VIDEO [VIDEO ...] --color red --shape circle --motion right` prints a JSON report.

One video prints its `evaluate_clip` report; several print the `evaluate_many` summary (the same label for all).
"""

import argparse
import json
import math
import sys

from ..data.shapes import ALL_MOTIONS, COLORS, SHAPES
from .shapes_eval import evaluate_clip, evaluate_many


def _json_ready(value):
    """Non-finite floats (an identical frame's PSNR is inf) become strings, which strict JSON parsers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sora_diffusers.eval", description=__doc__.split("\n")[0])
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="mp4 or gif file(s)")
    parser.add_argument("--color", help=f"intended colour: {', '.join(COLORS)}")
    parser.add_argument("--shape", help=f"intended shape: {', '.join(SHAPES)}")
    parser.add_argument("--motion", help=f"intended motion: {', '.join(ALL_MOTIONS)}")
    parser.add_argument("--image", help="conditioning image: adds the first frame's PSNR")
    parser.add_argument("--seam", type=int, help="first frame of an extension: adds seam continuity")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` (default: `sys.argv[1:]`), evaluate, print JSON to stdout; returns the exit status."""
    args = build_parser().parse_args(argv)
    label = {"color": args.color, "shape": args.shape, "motion": args.motion}
    image = None
    if args.image:
        from PIL import Image

        image = Image.open(args.image).convert("RGB")
    try:
        if len(args.videos) == 1:
            report = evaluate_clip(args.videos[0], **label, image=image, seam_index=args.seam)
        else:
            count = len(args.videos)
            report = evaluate_many(
                args.videos, [label] * count, images=[image] * count, seam_indices=[args.seam] * count
            )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(_json_ready(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
