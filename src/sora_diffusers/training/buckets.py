"""Native-shape training: buckets (frame size x clip length), the bucket a clip belongs to, and batches that stay in
one bucket.

A bucket is a shape every clip of a batch shares. `make_buckets` lays them out per aspect ratio and length,
`nearest_bucket` picks a clip's bucket without decoding it, and `BucketBatchSampler` cuts a dataset's bucket ids into
batches of one bucket each, reshuffled per epoch from `(seed, epoch)` so a resumed run sees the same order.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler


ASPECT_RATIOS: dict[str, tuple[int, int]] = {"landscape": (16, 9), "portrait": (9, 16), "square": (1, 1)}
NUM_FRAMES_CHOICES = (17, 33, 49)  # 1 + 4k, so a causal 4x temporal VAE maps them to 5, 9, 13 latent frames
DEFAULT_LONG_SIDE = 64
DEFAULT_MULTIPLE_OF = 16


@dataclass(frozen=True)
class Bucket:
    """A native training shape: frame size and clip length."""

    width: int
    height: int
    num_frames: int


def make_buckets(
    long_side: int = DEFAULT_LONG_SIDE,
    num_frames: Sequence[int] = NUM_FRAMES_CHOICES,
    aspect_ratios: Sequence[str] = tuple(ASPECT_RATIOS),
    multiple_of: int = DEFAULT_MULTIPLE_OF,
) -> list[Bucket]:
    """Buckets for each aspect ratio (`ASPECT_RATIOS` names) and clip length; the short side is rounded to `multiple_of`.

    Example: `make_buckets(256, (33,))` -> 256x144 (landscape), 144x256 (portrait) and 256x256 (square), 33 frames.
    """
    buckets = []
    for name in aspect_ratios:
        if name not in ASPECT_RATIOS:
            raise ValueError(f"aspect ratio {name!r} is not one of {tuple(ASPECT_RATIOS)}")
        ratio_w, ratio_h = ASPECT_RATIOS[name]
        short = max(
            multiple_of,
            int(long_side * min(ratio_w, ratio_h) / max(ratio_w, ratio_h) / multiple_of + 0.5) * multiple_of,
        )
        width, height = (long_side, short) if ratio_w >= ratio_h else (short, long_side)
        buckets.extend(Bucket(width, height, t) for t in num_frames)
    return buckets


def nearest_bucket(width: int, height: int, num_frames: int, buckets: Sequence[Bucket]) -> int | None:
    """Index of the bucket closest in aspect ratio whose length fits the clip (the longest such), or `None` when the
    clip is shorter than every bucket of that aspect ratio."""
    log_ratio = math.log(width / height)
    distance = [abs(math.log(b.width / b.height) - log_ratio) for b in buckets]
    best = min(distance)
    fitting = [i for i, b in enumerate(buckets) if distance[i] - best < 1e-6 and b.num_frames <= num_frames]
    return max(fitting, key=lambda i: (buckets[i].num_frames, buckets[i].width * buckets[i].height), default=None)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices that all share one bucket, reshuffled every epoch from `(seed, epoch)`.

    Each epoch visits every index exactly once (with `drop_last=False`): the indices of each bucket are shuffled and cut
    into batches, then the batches of all buckets are shuffled together. Call `set_epoch` before iterating, so a
    resumed run sees the same order as the run it continues.

    Args:
        bucket_ids (`Sequence[int]`): the bucket of each dataset index.
        batch_size (`int`): items per batch (a bucket's last batch may be smaller unless `drop_last`).
        shuffle (`bool`): shuffle within buckets and across batches; `False` keeps index order.
        drop_last (`bool`): drop each bucket's incomplete last batch.
        seed (`int`): base of the per-epoch shuffle.
    """

    def __init__(
        self, bucket_ids: Sequence[int], batch_size: int, shuffle: bool = True, drop_last: bool = False, seed: int = 0
    ):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, got {batch_size}")
        self.bucket_ids = np.asarray(bucket_ids, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for bucket in np.unique(self.bucket_ids):
            indices = np.flatnonzero(self.bucket_ids == bucket)
            if self.shuffle:
                indices = rng.permutation(indices)
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        for batch in self._batches():
            yield batch.tolist()

    def __len__(self) -> int:
        counts = np.bincount(self.bucket_ids) if len(self.bucket_ids) else np.array([], dtype=np.int64)
        rounding = np.floor if self.drop_last else np.ceil
        return int(sum(rounding(c / self.batch_size) for c in counts if c))
