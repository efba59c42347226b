"""Training data: the shapes world rendered on the fly, or any folder of captioned videos, batched so that every batch
holds one (num_frames, height, width) bucket.

A dataset here is a torch `Dataset` plus `bucket_ids` (one bucket index per item, known without decoding anything);
`buckets.BucketBatchSampler` groups the items by bucket and `build_dataloader` wires both into a `DataLoader` whose
workers render or decode the clips.
"""

import csv
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.dataset import ShapesWorldDataset
from .buckets import Bucket, BucketBatchSampler, make_buckets, nearest_bucket


logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # one-frame clips, for buckets of 1 frame
METADATA_FILES = ("metadata.jsonl", "metadata.csv")


# ---------------------------------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------------------------------


def resize_crop(video: np.ndarray, width: int, height: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, height, width) float in [-1, 1]: scaled to cover the bucket, then center-cropped."""
    frames = torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    H, W = frames.shape[-2:]
    if (H, W) != (height, width):
        scale = max(height / H, width / W)
        size = (max(height, round(H * scale)), max(width, round(W * scale)))
        frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", antialias=True)
        top, left = (size[0] - height) // 2, (size[1] - width) // 2
        frames = frames[:, :, top : top + height, left : left + width]
    return (frames / 127.5 - 1.0).clamp(-1, 1).permute(1, 0, 2, 3).contiguous()  # (3, T, height, width)


def shapes_dataset(
    num_samples: int, buckets: Sequence[Bucket], seed: int, group_size: int
) -> tuple[ShapesWorldDataset, np.ndarray]:
    """The shapes world rendered on the fly; `group_size` consecutive indices share a bucket (so bucket ids cost
    `num_samples / group_size` draws, not one per index)."""
    dataset = ShapesWorldDataset(num_samples, buckets, seed=seed, bucket_group_size=group_size)
    index = {bucket: i for i, bucket in enumerate(dataset.buckets)}
    group_buckets = [index[dataset.bucket(start)] for start in range(0, num_samples, group_size)]
    return dataset, np.repeat(group_buckets, group_size)[:num_samples]


def _read_metadata(root: Path) -> list[dict]:
    """Rows with `file_name` and `text` from metadata.jsonl / metadata.csv, else every video with its same-name .txt."""
    if (root / "metadata.jsonl").is_file():
        with open(root / "metadata.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    elif (root / "metadata.csv").is_file():
        with open(root / "metadata.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = []
        suffixes = VIDEO_SUFFIXES + IMAGE_SUFFIXES
        for path in sorted(p for p in root.iterdir() if p.suffix.lower() in suffixes):
            caption = path.with_suffix(".txt")
            text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
            rows.append({"file_name": path.name, "text": text})
    missing = [row for row in rows if "file_name" not in row]
    if missing:
        raise ValueError(f"{root}: metadata rows need a `file_name` column; first bad row: {missing[0]}")
    if not rows:
        suffixes = ", ".join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        raise ValueError(f"{root} holds no videos or images ({suffixes}) and no {' / '.join(METADATA_FILES)}")
    return rows


def _probe(path: Path, row: dict) -> tuple[int, int, int]:
    """(width, height, num_frames) from the metadata row (`width`/`height`/`num_frames`, or inside `spec`), else from
    the file's header (mp4: duration x fps, without decoding)."""
    for source in (row, row.get("spec") or {}):
        if all(k in source for k in ("width", "height", "num_frames")):
            return int(source["width"]), int(source["height"]), int(source["num_frames"])
    if path.suffix.lower() in IMAGE_SUFFIXES + (".gif",):
        from PIL import Image

        with Image.open(path) as image:
            return image.width, image.height, getattr(image, "n_frames", 1)
    import imageio.v2 as imageio

    with imageio.get_reader(str(path)) as reader:
        meta = reader.get_meta_data()
    num_frames = meta.get("nframes", math.inf)
    if not math.isfinite(num_frames):
        num_frames = round(meta["duration"] * meta["fps"])
    return int(meta["size"][0]), int(meta["size"][1]), int(num_frames)


def read_frames(path: Path, start: int, count: int) -> np.ndarray:
    """Frames start .. start + count - 1 as (count, H, W, 3) uint8; a clip that ends early repeats its last frame (an
    image is a clip of one frame)."""
    import imageio.v2 as imageio

    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image

        with Image.open(path) as image:
            frame = np.asarray(image.convert("RGB"))
        return np.stack([frame] * count)

    frames = []
    with imageio.get_reader(str(path)) as reader:
        for i, frame in enumerate(reader):
            if i >= start:
                frame = np.asarray(frame)
                frames.append(np.repeat(frame[..., None], 3, -1) if frame.ndim == 2 else frame[..., :3])
            if len(frames) == count:
                break
    if not frames:
        raise ValueError(f"{path}: no frames from frame {start}")
    return np.stack(frames + [frames[-1]] * (count - len(frames)))


class VideoFolderDataset(Dataset):
    """Captioned videos and images from a folder: mp4/gif/png/... with same-name .txt captions, or a metadata.jsonl /
    metadata.csv with `file_name` and `text` columns. Each clip goes to its nearest bucket (`nearest_bucket`; an image
    is a clip of one frame, for buckets of 1 frame); it is cut to the bucket's length at a random start
    (`random_start`) and resized/center-cropped to its frame size. The start is drawn from `(seed, epoch, index)`
    alone (`set_epoch`, which accelerate's data loader calls), not from a generator whose state depends on which
    process loads the item and what it loaded before: a resumed run cuts every clip where the uninterrupted one did.

    Entries are skipped, with a warning that names their files, when they have no caption, point outside the folder
    (`../x.mp4`, `/abs/x.gif`), name no file, or are shorter than every bucket.

    Items: `{"video": (3, T, H, W) float in [-1, 1], "caption": str}`. `bucket_ids` gives each item's bucket.
    """

    def __init__(self, root: str | Path, buckets: Sequence[Bucket], random_start: bool = True, seed: int = 0):
        self.root = Path(root)
        self.buckets = list(buckets)
        self.random_start, self.seed = random_start, seed
        # in shared memory: data-loader workers that persist across epochs see `set_epoch` too
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.files, self.captions, self.lengths, bucket_ids = [], [], [], []
        skipped, rejected = [], {"no caption": [], "outside the folder": [], "no such file": []}
        root = self.root.resolve()
        for row in _read_metadata(self.root):
            path = self.root / row["file_name"]
            if not path.resolve().is_relative_to(root):
                rejected["outside the folder"].append(row["file_name"])
                continue
            if not path.is_file():
                rejected["no such file"].append(row["file_name"])
                continue
            if not str(row.get("text") or "").strip():
                rejected["no caption"].append(row["file_name"])
                continue
            width, height, num_frames = _probe(path, row)
            bucket = nearest_bucket(width, height, num_frames, self.buckets)
            if bucket is None:
                skipped.append(row["file_name"])
                continue
            self.files.append(path)
            self.captions.append(str(row.get("text") or ""))
            self.lengths.append(num_frames)
            bucket_ids.append(bucket)
        for reason, names in rejected.items():
            if names:
                logger.warning(f"{self.root}: {len(names)} entries skipped, {reason}: {', '.join(map(str, names))}")
        if skipped:
            logger.warning(f"{len(skipped)} clips are shorter than every bucket and are skipped, e.g. {skipped[:3]}")
        if not self.files:
            raise ValueError(f"{self.root}: no clip is long enough for the buckets {self.buckets}")
        self.bucket_ids = np.asarray(bucket_ids)

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __getitem__(self, index: int) -> dict:
        bucket = self.buckets[self.bucket_ids[index]]
        spare = max(0, self.lengths[index] - bucket.num_frames)
        start = 0
        if self.random_start and spare:
            start = int(np.random.default_rng([self.seed, int(self._epoch), index]).integers(spare + 1))
        frames = read_frames(self.files[index], start, bucket.num_frames)
        return {"video": resize_crop(frames, bucket.width, bucket.height), "caption": self.captions[index]}


# ---------------------------------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------------------------------


def buckets_from_args(args) -> list[Bucket]:
    return make_buckets(args.resolution, tuple(args.num_frames), tuple(args.aspect_ratios), args.resolution_multiple)


def build_dataset(args, group_size: int, random_start: bool = True) -> tuple[Dataset, np.ndarray]:
    """The dataset the arguments ask for (`--data_dir` or the shapes world) and its bucket ids."""
    buckets = buckets_from_args(args)
    if args.data_dir:
        dataset = VideoFolderDataset(args.data_dir, buckets, random_start=random_start, seed=args.seed)
        return dataset, dataset.bucket_ids
    return shapes_dataset(args.num_train_samples, buckets, args.seed, group_size)


def collate(items: list[dict]) -> dict:
    """Stack tensors that share a shape, keep everything else (captions, specs, ragged tensors) as lists."""
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        same_shape = all(torch.is_tensor(v) and v.shape == values[0].shape for v in values)
        batch[key] = torch.stack(values) if same_shape else values
    return batch


def build_dataloader(dataset: Dataset, batch_sampler: BucketBatchSampler, num_workers: int) -> DataLoader:
    """A loader of `batch_sampler`'s batches. It has a generator of its own (for its workers' seeds): without one,
    torch draws from the global generator each time an epoch starts, and a resumed run, which starts its loader
    mid-epoch, would draw at another moment than the uninterrupted run and shift every later global draw."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(getattr(batch_sampler, "seed", 0)),
    )
