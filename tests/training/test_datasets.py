"""`VideoFolderDataset`: images next to videos, and the entries it skips (reported by file name)."""

import json
import logging

import numpy as np
from PIL import Image

from sora_diffusers.data import make_buckets, write_dataset
from sora_diffusers.training.datasets import VideoFolderDataset


def test_images_are_one_frame_clips_and_bad_entries_are_skipped_by_name(tmp_path, caplog):
    data = write_dataset(tmp_path / "data", 1, make_buckets(32, (9,), ("square",)), seed=1)
    video = json.loads((data / "metadata.jsonl").read_text().splitlines()[0])
    Image.fromarray(np.full((16, 24, 3), 200, np.uint8)).save(data / "still.png")
    rows = [
        {"file_name": video["file_name"], "text": video["text"]},
        {"file_name": "still.png", "text": "a grey frame"},
        {"file_name": "still.png", "text": "  "},
        {"file_name": "../x.mp4", "text": "outside"},
        {"file_name": "/abs/x.gif", "text": "absolute"},
        {"file_name": "gone.mp4", "text": "missing"},
    ]
    (data / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    buckets = make_buckets(32, (1, 9), ("square",))
    with caplog.at_level(logging.WARNING):
        dataset = VideoFolderDataset(data, buckets)
    assert dataset.captions == [video["text"], "a grey frame"]
    assert [buckets[i].num_frames for i in dataset.bucket_ids] == [9, 1]
    assert dataset[1]["video"].shape == (3, 1, 32, 32)
    assert abs(float(dataset[1]["video"].mean()) - (200 / 127.5 - 1)) < 1e-6  # upscaled 16x24 -> 32x32, flat
    assert "1 entries skipped, no caption: still.png" in caplog.text
    assert "2 entries skipped, outside the folder: ../x.mp4, /abs/x.gif" in caplog.text
    assert "1 entries skipped, no such file: gone.mp4" in caplog.text


def test_txt_captions_cover_images_and_a_video_without_caption_is_skipped(tmp_path, caplog):
    data = write_dataset(tmp_path / "data", 1, make_buckets(32, (9,), ("square",)), seed=1)
    (data / "metadata.jsonl").unlink()
    for txt in data.glob("*.txt"):
        txt.unlink()  # the video has no caption now
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(data / "black.png")
    (data / "black.txt").write_text("a black frame\n")
    with caplog.at_level(logging.WARNING):
        dataset = VideoFolderDataset(data, make_buckets(32, (1, 9), ("square",)))
    assert [f.name for f in dataset.files] == ["black.png"] and dataset.captions == ["a black frame"]
    assert "no caption: clip_000000.mp4" in caplog.text
