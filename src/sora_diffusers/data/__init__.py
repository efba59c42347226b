"""The procedural shapes world: seeded captioned clips for training the embedded default model and for evaluation."""

from ..training.buckets import ASPECT_RATIOS, NUM_FRAMES_CHOICES
from .captions import canonical_caption, caption_clip
from .dataset import Bucket, ShapesWorldDataset, collate_shapes, make_buckets, video_to_tensor, write_dataset
from .shapes import (
    ALL_MOTIONS,
    BACKGROUND_COLORS,
    COLORS,
    DIRECTIONS,
    MOTIONS,
    OCCLUDER_RGB,
    PALETTE,
    SHAPES,
    SIZES,
    ZIGZAG_MOTIONS,
    BackgroundSpec,
    ClipSpec,
    ObjectSpec,
    OccluderSpec,
    object_trajectory,
    render_clip,
    sample_clip_spec,
)
from .video_io import read_video, write_video


__all__ = [
    "ALL_MOTIONS",
    "ASPECT_RATIOS",
    "BACKGROUND_COLORS",
    "COLORS",
    "DIRECTIONS",
    "MOTIONS",
    "NUM_FRAMES_CHOICES",
    "OCCLUDER_RGB",
    "PALETTE",
    "SHAPES",
    "SIZES",
    "ZIGZAG_MOTIONS",
    "BackgroundSpec",
    "Bucket",
    "ClipSpec",
    "ObjectSpec",
    "OccluderSpec",
    "ShapesWorldDataset",
    "canonical_caption",
    "caption_clip",
    "collate_shapes",
    "make_buckets",
    "object_trajectory",
    "read_video",
    "render_clip",
    "sample_clip_spec",
    "video_to_tensor",
    "write_dataset",
    "write_video",
]
