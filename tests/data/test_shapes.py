"""Shapes world: determinism, coverage of every scene attribute, captions, buckets, dataset, files on disk, speed."""

import json
import time

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from sora_diffusers.data import (
    COLORS,
    MOTIONS,
    NUM_FRAMES_CHOICES,
    PALETTE,
    SHAPES,
    SIZES,
    Bucket,
    ClipSpec,
    ShapesWorldDataset,
    canonical_caption,
    caption_clip,
    collate_shapes,
    make_buckets,
    object_trajectory,
    render_clip,
    sample_clip_spec,
    write_dataset,
)
from sora_diffusers.data.captions import SHAPE_NOUNS
from sora_diffusers.data.shapes import BACKGROUND_COLORS, OCCLUDER_RGB, extent, render_background


FRAME_SIZES = ((64, 36), (36, 64), (48, 48), (128, 72))


def _specs(count: int, seed0: int = 0) -> list[ClipSpec]:
    return [
        sample_clip_spec(seed0 + i, *FRAME_SIZES[i % len(FRAME_SIZES)], NUM_FRAMES_CHOICES[i % 3])
        for i in range(count)
    ]


def test_same_seed_same_clip_and_caption():
    a, b = sample_clip_spec(7, 96, 64, 17), sample_clip_spec(7, 96, 64, 17)
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(render_clip(a), render_clip(b))
    assert caption_clip(a, 3) == caption_clip(b, 3)
    assert sample_clip_spec(8, 96, 64, 17).to_dict() != a.to_dict()


def test_render_shape_dtype_and_range():
    spec = sample_clip_spec(0, 80, 48, 17)
    video = render_clip(spec)
    assert video.shape == (17, 48, 80, 3) and video.dtype == np.uint8
    assert video.max() == 255  # palette colours are saturated and fill whole pixels inside the shape


def test_every_attribute_is_reachable():
    specs = _specs(500)
    main = [spec.objects[0] for spec in specs]
    assert {o.shape for o in main} == set(SHAPES)
    assert {o.color for o in main} == set(COLORS)
    assert {o.motion for o in main} == set(MOTIONS)
    assert {o.size for o in main} == set(SIZES)
    assert {s.background.kind for s in specs} == {"solid", "gradient"}
    assert {s.background.colors[0] for s in specs if s.background.kind == "solid"} == set(BACKGROUND_COLORS)
    assert {s.background.direction for s in specs if s.background.kind == "gradient"} == {
        "vertical",
        "horizontal",
        "diagonal",
    }
    assert {len(s.objects) for s in specs} == {1, 2}
    assert {s.occluder.orientation for s in specs if s.occluder} == {"vertical", "horizontal"}
    assert all(len({o.color for o in s.objects}) == len(s.objects) for s in specs)  # two objects never share a colour
    assert 0.35 < np.mean([s.background.colors == ("black",) for s in specs]) < 0.65  # black is the default


def test_pinned_attributes_and_bad_requests():
    spec = sample_clip_spec(
        1, 64, 64, 33, shape="triangle", color="cyan", motion="rotate", size="large", num_objects=1
    )
    assert spec.label == {"color": "cyan", "shape": "triangle", "motion": "rotate"}
    assert spec.objects[0].size == "large" and len(spec.objects) == 1 and spec.objects[0].spin != 0
    assert sample_clip_spec(2, 128, 72, 33, motion="right", occluder=True).occluder is not None
    assert sample_clip_spec(2, 64, 64, 17, background="navy").background.colors == ("navy",)
    for bad in (dict(shape="circle", motion="rotate"), dict(color="purple"), dict(motion="up-left", occluder=True),
                dict(num_objects=3), dict(background="pink")):  # fmt: skip
        with pytest.raises(ValueError):
            sample_clip_spec(0, 64, 64, 17, **bad)
    with pytest.raises(ValueError):
        sample_clip_spec(0, 8, 64, 17)


def test_objects_stay_inside_their_region():
    for spec in _specs(300, seed0=1000):
        for obj in spec.objects:
            state = object_trajectory(obj, spec.num_frames)
            reach = extent(obj.shape, state["diameter"])
            x0, y0, x1, y1 = obj.bounds
            assert np.all(state["x"] - reach >= x0 - 1e-6) and np.all(state["x"] + reach <= x1 + 1e-6), obj
            assert np.all(state["y"] - reach >= y0 - 1e-6) and np.all(state["y"] + reach <= y1 + 1e-6), obj


def test_motions_do_what_they_say():
    for motion, check in (
        ("right", lambda s: s["x"][-1] > s["x"][0] and np.ptp(s["y"]) == 0),
        ("up-left", lambda s: s["x"][-1] < s["x"][0] and s["y"][-1] < s["y"][0]),
        ("grow", lambda s: s["diameter"][-1] > 1.6 * s["diameter"][0]),
        ("shrink", lambda s: s["diameter"][-1] < 0.7 * s["diameter"][0]),
        ("rotate", lambda s: abs(s["angle"][-1] - s["angle"][0]) >= 40),
        ("still", lambda s: all(np.ptp(v) == 0 for v in s.values())),
        # bouncing: the velocity along some axis changes sign
        ("bounce", lambda s: any((np.diff(np.sign(np.diff(s[a]))) != 0).any() for a in ("x", "y"))),
    ):
        for seed in range(5):
            spec = sample_clip_spec(seed, 96, 64, 17, motion=motion)
            assert check(object_trajectory(spec.objects[0], spec.num_frames)), (motion, seed)


def test_occluded_object_disappears_and_reappears():
    spec = sample_clip_spec(3, 128, 72, 33, motion="left", color="red", occluder=True)
    video = render_clip(spec).astype(int)
    red = (np.abs(video - np.array(PALETTE["red"])).sum(-1) < 30).sum(axis=(1, 2))  # (T,): fully red pixels
    grey = (np.abs(video - np.array(OCCLUDER_RGB)).sum(-1) < 3).all(axis=1).sum(axis=1)  # full-height grey columns
    assert red[0] > 20 and red[-1] > 20 and (red == 0).any()
    assert grey.min() >= 1


def test_gradient_background_is_linear():
    from sora_diffusers.data import BackgroundSpec

    background = render_background(BackgroundSpec("gradient", ("black", "navy"), "vertical"), 40, 30)
    assert np.allclose(background[:, 0], background[:, -1])  # constant along x
    assert np.allclose(np.diff(background[:, 0], n=2, axis=0), 0, atol=1e-4)  # linear along y
    assert np.allclose(background[-1, 0], BACKGROUND_COLORS["navy"], atol=3)


def test_captions_mention_colour_and_shape_and_vary():
    for i, spec in enumerate(_specs(200, seed0=2000)):
        caption = caption_clip(spec, i).lower()
        for obj in spec.objects:
            assert obj.color in caption, caption
            assert any(noun in caption for noun in SHAPE_NOUNS[obj.shape]), caption
        if spec.occluder:
            assert "gray" in caption
        assert caption.endswith(".") and caption[0].isalpha()
    spec = sample_clip_spec(5, 64, 64, 17)
    assert len({caption_clip(spec, seed) for seed in range(20)}) >= 8  # several phrasings of the same clip
    assert canonical_caption("red", "circle", "right") == "a red circle moves to the right on a black background"


def test_buckets_cover_aspect_ratios_and_durations():
    buckets = make_buckets(256, (33,))
    assert {(b.width, b.height) for b in buckets} == {(256, 144), (144, 256), (256, 256)}
    assert all((t - 1) % 4 == 0 for t in NUM_FRAMES_CHOICES) and len(NUM_FRAMES_CHOICES) >= 3
    assert len(make_buckets()) == 9 and all(b.width % 16 == 0 and b.height % 16 == 0 for b in make_buckets())
    with pytest.raises(ValueError):
        make_buckets(64, aspect_ratios=("cinema",))


def test_dataset_items_are_deterministic_and_batchable():
    buckets = [Bucket(32, 16, 5), Bucket(16, 32, 9), Bucket(32, 32, 5)]
    dataset = ShapesWorldDataset(8, buckets, seed=3, bucket_group_size=4)
    item = dataset[1]
    video = item["video"]
    assert video.dtype == torch.float32 and video.shape[0] == 3 and video.ndim == 4
    assert video.min() >= -1 and video.max() <= 1
    assert (video.shape[2], video.shape[3], video.shape[1]) in {(b.height, b.width, b.num_frames) for b in buckets}
    assert isinstance(item["caption"], str) and item["caption"]
    again = ShapesWorldDataset(8, buckets, seed=3, bucket_group_size=4)[1]
    assert torch.equal(again["video"], video) and again["caption"] == item["caption"]
    spec = ClipSpec.from_dict(json.loads(json.dumps(item["spec"])))  # JSON round trip
    assert torch.allclose(torch.from_numpy(render_clip(spec)).permute(3, 0, 1, 2).float() / 127.5 - 1, video)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_shapes)
    for batch in loader:
        assert batch["video"].ndim == 5 and batch["video"].shape[0] == 4 and len(batch["caption"]) == 4
    seen = {dataset.bucket(i) for i in range(8)} | {
        ShapesWorldDataset(40, buckets, seed=1).bucket(i) for i in range(40)
    }
    assert seen == set(buckets)


def test_dataset_pins_attributes():
    dataset = ShapesWorldDataset(4, [Bucket(48, 48, 9)], spec_kwargs={"motion": "left", "color": "white"})
    assert all(ClipSpec.from_dict(dataset[i]["spec"]).label["motion"] == "left" for i in range(4))


def test_render_is_fast():
    spec = sample_clip_spec(0, 256, 256, 33, num_objects=2)
    render_clip(spec)  # warm-up
    start = time.perf_counter()
    render_clip(spec)
    assert time.perf_counter() - start < 2.0


def test_write_dataset_writes_readable_mp4_and_captions(tmp_path):
    buckets = [Bucket(64, 32, 17), Bucket(32, 64, 9)]
    write_dataset(tmp_path, 3, buckets, seed=5)
    records = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 3
    dataset = ShapesWorldDataset(3, buckets, seed=5)
    for index, record in enumerate(records):
        path = tmp_path / record["file_name"]
        assert path.with_suffix(".txt").read_text().strip() == record["text"] == dataset.sample(index)[1]
        with imageio.get_reader(path) as reader:  # iterate: an ffmpeg reader reports len() = inf
            frames = np.stack([frame for frame in reader])  # noqa: C416
        spec = ClipSpec.from_dict(record["spec"])
        assert frames.shape == (spec.num_frames, spec.height, spec.width, 3)
        assert record["label"] == spec.label
        assert np.abs(frames.astype(int) - render_clip(spec)).mean() < 4  # lossy, but the same clip
