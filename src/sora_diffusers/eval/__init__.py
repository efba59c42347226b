"""Evaluation of shapes-world videos: colour, shape, motion, object permanence, first-frame PSNR, seam continuity."""

from .shapes_eval import (
    evaluate_clip,
    evaluate_many,
    first_frame_psnr,
    normalize_label,
    psnr,
    seam_continuity,
)


__all__ = ["evaluate_clip", "evaluate_many", "first_frame_psnr", "main", "normalize_label", "psnr", "seam_continuity"]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (`python -m sora_diffusers.eval`); see `sora_diffusers.eval.__main__`."""
    from .__main__ import main as _main

    return _main(argv)
