"""The evaluator reads the opt-in zig-zag motion: rendered zig-zags score, straight movers and bounces never do."""

import numpy as np
import pytest

from sora_diffusers.data import ZIGZAG_MOTIONS, ObjectSpec, render_clip, sample_clip_spec, write_video
from sora_diffusers.data.shapes import ClipSpec
from sora_diffusers.eval import evaluate_clip, evaluate_many, normalize_label
from sora_diffusers.eval.shapes_eval import ZIGZAG_MIN_REVERSALS, ZIGZAG_MIN_SWING, zigzag_reading


FRAME_SIZES = ((128, 128), (192, 108), (108, 192), (160, 96))


def _zigzag_clip(i: int):
    motion = ZIGZAG_MOTIONS[i % 4]
    spec = sample_clip_spec(200 + i, *FRAME_SIZES[i % 4], (25, 33, 49)[i % 3], motion=motion)
    return spec, render_clip(spec)


@pytest.fixture(scope="module")
def zigzag_clips():
    return [_zigzag_clip(i) for i in range(8)]


def test_rendered_zigzags_score_and_wrong_labels_fail(zigzag_clips):
    specs = [spec for spec, _ in zigzag_clips]
    assert {s.label["motion"] for s in specs} == set(ZIGZAG_MOTIONS) and {s.num_frames for s in specs} == {25, 33, 49}
    results = evaluate_many([video for _, video in zigzag_clips], [spec.label for spec in specs])
    assert results["motion_accuracy"] == 1.0 and results["color_accuracy"] == 1.0, results
    for spec, report in zip(specs, results["reports"]):
        assert report["zigzag_reversals"] >= ZIGZAG_MIN_REVERSALS
        assert report["zigzag_reversals"] <= spec.objects[0].legs - 1
    # The same clips asked for the opposite zig-zag, or for the plain direction, fail.
    opposite = {"right": "left", "left": "right", "up": "down", "down": "up"}
    wrong = [
        {"color": s.label["color"], "motion": "zigzag-" + opposite[s.label["motion"].removeprefix("zigzag-")]}
        for s in specs
    ]
    plain = [{"color": s.label["color"], "motion": s.label["motion"].removeprefix("zigzag-")} for s in specs]
    videos = [video for _, video in zigzag_clips]
    assert evaluate_many(videos, wrong)["motion_accuracy"] == 0
    assert evaluate_many(videos, plain)["motion_accuracy"] == 0


def test_mp4_round_trip_of_a_zigzag_still_scores(zigzag_clips, tmp_path):
    spec, video = zigzag_clips[1]
    path = write_video(tmp_path / "zigzag.mp4", video, spec.fps)
    assert evaluate_clip(path, **spec.label)["motion_correct"]


def test_straight_movers_and_bounces_are_not_zigzags():
    # The default world's straight movers and bounces (every aspect ratio, 17 to 49 frames): rendered and read
    # (a few), and their exact centroid tracks (many, fast).
    videos, labels = [], []
    for seed in range(8):
        motion = ("right", "up", "down-left", "bounce")[seed % 4]
        spec = sample_clip_spec(300 + seed, *FRAME_SIZES[seed % 4], 33, motion=motion, num_objects=1)
        videos.append(render_clip(spec))
        labels.append({"color": spec.label["color"], "motion": "zigzag-right"})
        assert evaluate_clip(videos[-1], **spec.label)["motion_correct"]  # still read as what they are
    assert evaluate_many(videos, labels)["motion_accuracy"] == 0
    from sora_diffusers.data import object_trajectory

    for seed in range(400):
        width, height = ((256, 256), (256, 144), (144, 256))[seed % 3]
        spec = sample_clip_spec(seed, width, height, (17, 33, 49)[seed % 3], motion="bounce")
        track = object_trajectory(spec.objects[0], spec.num_frames)
        t = np.arange(spec.num_frames)
        dx, dy = (np.polyfit(t, track[a], 1)[0] * (spec.num_frames - 1) for a in ("x", "y"))
        assert zigzag_reading(track["x"], track["y"], dx, dy, min(width, height))[0] is None, spec


def _with_object(spec: ClipSpec, **changes) -> np.ndarray:
    obj = ObjectSpec(**{**spec.objects[0].__dict__, **changes})
    return render_clip(ClipSpec(spec.width, spec.height, spec.num_frames, spec.fps, [obj], spec.background))


def test_synthetic_failures_score_zero():
    spec = sample_clip_spec(7, 128, 128, 33, motion="zigzag-right", size="small", num_objects=1)
    obj, side = spec.objects[0], 128
    assert evaluate_clip(render_clip(spec), **spec.label)["motion_correct"]
    small_swing = np.sign(obj.swing) * 0.5 * ZIGZAG_MIN_SWING * side  # a wobble, not a zig-zag
    failures = {
        "straight": _with_object(spec, legs=0, swing=0.0, motion="right"),
        "wobble": _with_object(spec, swing=small_swing),
        "two turns": _with_object(spec, legs=3),
        "stands still while swinging": _with_object(spec, velocity=(0.0, 0.0)),
    }
    reads = {name: evaluate_clip(video, **spec.label) for name, video in failures.items()}
    assert not any(report["motion_correct"] for report in reads.values()), {
        name: report["predicted_motion"] for name, report in reads.items()
    }
    assert reads["straight"]["predicted_motion"] == "right" and reads["two turns"]["zigzag_reversals"] == 2
    # Goes right, then back left, while swinging: the main direction reverses, so it is no zig-zag.
    video = render_clip(spec)
    back_and_forth = np.concatenate([video[:17], video[16:0:-1]])
    assert not evaluate_clip(back_and_forth, **spec.label)["motion_correct"]


def test_zigzag_reading_on_tracks():
    t = np.linspace(0, 1, 33)
    side = 100.0
    sideways = 20 * (1 - np.abs(np.mod(4 * t, 2) - 1))  # 4 legs of 20 px: 3 reversals
    assert zigzag_reading(10 + 60 * t, 50 + sideways, 60, 0, side) == ("zigzag-right", 3)
    assert zigzag_reading(50 + sideways, 90 - 60 * t, 0, -60, side) == ("zigzag-up", 3)
    assert zigzag_reading(10 + 60 * t, 50 + 0 * t, 60, 0, side) == (None, 0)
    assert zigzag_reading(10 + 5 * t, 50 + sideways, 5, 0, side)[0] is None  # too little progress
    assert zigzag_reading(10 + 60 * t, 50 + sideways / 4, 60, 0, side)[0] is None  # 5 px swings


def test_zigzag_labels():
    for spelling in ("zigzag-right", "Zig-zag right", "zig-zagging_right", "zigzagging-rightward", "zigzag_right"):
        assert normalize_label("motion", spelling) == "zigzag-right"
    with pytest.raises(ValueError, match="unknown motion 'zigzag-diagonal'"):
        normalize_label("motion", "zigzag-diagonal")
