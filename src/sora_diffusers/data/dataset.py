"""Shapes-world clips as a torch `Dataset` (rendered on the fly) or written to disk as mp4 + caption files.

Clip `i` of a dataset with seed `s` is a pure function of `(s, i)` and the bucket list, so every worker, epoch and
machine sees the same clip at the same index, and `write_dataset` writes exactly what the `Dataset` yields.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# Bucketing lives in `training.buckets`; `Bucket` and `make_buckets` stay importable from here and `sora_diffusers.data`.
from ..training.buckets import DEFAULT_LONG_SIDE, DEFAULT_MULTIPLE_OF, Bucket, make_buckets  # noqa: F401
from ..utils.atomic import write_text
from .captions import caption_clip
from .shapes import ClipSpec, render_clip, sample_clip_spec


# Independent random streams per index: the bucket (shared by a group of indices) and the clip itself.
_BUCKET_STREAM, _CLIP_STREAM = 0, 1


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (C, T, H, W) float32 in [-1, 1], the layout the VAE and the training scripts take."""
    return torch.from_numpy(video).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)  # (C, T, H, W)


class ShapesWorldDataset(torch.utils.data.Dataset):
    """Procedural captioned clips, rendered when indexed.

    Each item is `{"video": (C, T, H, W) float32 in [-1, 1], "caption": str, "spec": dict}` (`spec` is
    `ClipSpec.to_dict()`; `ClipSpec.from_dict(item["spec"]).label` gives the main object's colour, shape and motion).
    Clips of different buckets cannot be stacked: batch with `collate_shapes` and keep each batch inside one bucket by
    setting `bucket_group_size` to the batch size and loading in order (indices `k * group ... (k + 1) * group - 1`
    share a bucket; the clips themselves are random, so no shuffling is needed).

    Args:
        num_samples (`int`): the dataset length.
        buckets (`Sequence[Bucket]`, *optional*): shapes to draw from; defaults to `make_buckets()` (64 px long side,
            landscape/portrait/square, 17/33/49 frames).
        seed (`int`): the dataset seed.
        bucket_group_size (`int`): how many consecutive indices share a bucket.
        spec_kwargs (`dict`, *optional*): pinned scene attributes passed to `sample_clip_spec` (e.g. `{"motion": "left"}`).
    """

    def __init__(
        self,
        num_samples: int,
        buckets: Sequence[Bucket] | None = None,
        seed: int = 0,
        bucket_group_size: int = 1,
        spec_kwargs: dict | None = None,
    ):
        if num_samples < 1 or bucket_group_size < 1:
            raise ValueError(
                f"num_samples and bucket_group_size must be positive, got {num_samples}, {bucket_group_size}"
            )
        self.num_samples = num_samples
        self.buckets = list(buckets) if buckets else make_buckets()
        self.seed = seed
        self.bucket_group_size = bucket_group_size
        self.spec_kwargs = dict(spec_kwargs or {})

    def __len__(self) -> int:
        return self.num_samples

    def bucket(self, index: int) -> Bucket:
        rng = np.random.default_rng([self.seed, index // self.bucket_group_size, _BUCKET_STREAM])
        return self.buckets[int(rng.integers(len(self.buckets)))]

    def sample(self, index: int) -> tuple[ClipSpec, str]:
        """The spec and caption of clip `index`, without rendering it."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        bucket = self.bucket(index)
        rng = np.random.default_rng([self.seed, index, _CLIP_STREAM])
        spec = sample_clip_spec(rng, bucket.width, bucket.height, bucket.num_frames, **self.spec_kwargs)
        return spec, caption_clip(spec, rng)

    def __getitem__(self, index: int) -> dict:
        spec, caption = self.sample(index)
        return {"video": video_to_tensor(render_clip(spec)), "caption": caption, "spec": spec.to_dict()}


def collate_shapes(items: list[dict]) -> dict:
    """Stack videos (one bucket per batch) into (B, C, T, H, W); keep captions and specs as lists."""
    shapes = {tuple(item["video"].shape) for item in items}
    if len(shapes) > 1:
        raise ValueError(f"a batch mixes clip shapes {sorted(shapes)}: set bucket_group_size to the batch size")
    return {
        "video": torch.stack([item["video"] for item in items]),
        "caption": [item["caption"] for item in items],
        "spec": [item["spec"] for item in items],
    }


def write_dataset(
    out_dir: str | Path,
    num_videos: int,
    buckets: Sequence[Bucket] | None = None,
    seed: int = 0,
    spec_kwargs: dict | None = None,
    quality: int | None = None,
) -> Path:
    """Write `num_videos` clips as `clip_000000.mp4` + `clip_000000.txt` (the caption) and a `metadata.jsonl`.

    The folder is what the training scripts accept for any set of videos; each metadata line holds `file_name`,
    `text` (the caption), `label` (main object's colour/shape/motion) and the full `spec`. Clip `i` is item `i` of
    `ShapesWorldDataset(num_videos, buckets, seed, spec_kwargs=spec_kwargs)`.
    """
    from .video_io import DEFAULT_MP4_QUALITY, write_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = ShapesWorldDataset(num_videos, buckets, seed, spec_kwargs=spec_kwargs)
    # every file atomic (`utils.atomic`); metadata.jsonl last, so a folder that has it is complete
    lines = []
    for index in range(num_videos):
        spec, caption = dataset.sample(index)
        name = f"clip_{index:06d}"
        write_video(out_dir / f"{name}.mp4", render_clip(spec), spec.fps, quality or DEFAULT_MP4_QUALITY)
        write_text(out_dir / f"{name}.txt", caption + "\n")
        record = {"file_name": f"{name}.mp4", "text": caption, "label": spec.label, "spec": spec.to_dict()}
        lines.append(json.dumps(record) + "\n")
    write_text(out_dir / "metadata.jsonl", "".join(lines))
    return out_dir
