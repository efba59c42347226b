"""The evaluator scores ground-truth shapes-world clips ~100% and fails wrong labels, noise and vanishing objects."""

import json
import runpy
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from sora_diffusers.data import (
    COLORS,
    MOTIONS,
    SHAPES,
    Bucket,
    ShapesWorldDataset,
    render_clip,
    sample_clip_spec,
    write_video,
)
from sora_diffusers.data.shapes import render_background
from sora_diffusers.eval import (
    evaluate_clip,
    evaluate_many,
    first_frame_psnr,
    main,
    normalize_label,
    psnr,
    seam_continuity,
)
from sora_diffusers.eval.segmentation import as_video_array, connected_components, estimate_background


# Short sides of 96-128 px: the smallest objects (0.15 of the short side) are 14 px, above the strict shape reading's
# floor (`shape_fit.MIN_SHAPE_PIXELS`, a 9 px disc); smaller ones are a few pixels that no one can tell apart.
GT_FRAME_SIZES = ((192, 108), (108, 192), (128, 128), (160, 96))
NUM_GT_CLIPS = 60


def _gt_clip(i: int):
    """Clip i of the ground-truth set: motions, shapes and colours cycle, everything else is random."""
    motion, shape, color = MOTIONS[i % len(MOTIONS)], SHAPES[i % len(SHAPES)], COLORS[i % len(COLORS)]
    if motion == "rotate" and shape == "circle":
        shape = "square"
    width, height = GT_FRAME_SIZES[i % len(GT_FRAME_SIZES)]
    spec = sample_clip_spec(
        100 + i, width, height, (17, 33, 49)[(i // 4) % 3], shape=shape, color=color, motion=motion
    )
    return spec, render_clip(spec)


@pytest.fixture(scope="module")
def gt_clips():
    return [_gt_clip(i) for i in range(NUM_GT_CLIPS)]


@pytest.fixture(scope="module")
def gt_results(gt_clips):
    return evaluate_many([video for _, video in gt_clips], [spec.label for spec, _ in gt_clips])


def test_ground_truth_clips_score_nearly_perfectly(gt_clips, gt_results):
    # The set covers every label value, plain/gradient backgrounds, occluders and two-object clips.
    specs = [spec for spec, _ in gt_clips]
    assert {s.label["motion"] for s in specs} == set(MOTIONS) and {s.label["color"] for s in specs} == set(COLORS)
    assert any(s.occluder for s in specs) and any(len(s.objects) == 2 for s in specs)
    assert any(s.background.kind == "gradient" for s in specs)
    assert gt_results["color_accuracy"] >= 0.98
    assert gt_results["shape_accuracy"] >= 0.98 and gt_results["shape_stability"] >= 0.98
    assert gt_results["shape_accuracy_lenient"] >= 0.95
    assert gt_results["motion_accuracy"] >= 0.95
    assert gt_results["permanence"] >= 0.95


def test_second_object_of_two_is_scored_too(gt_clips):
    pairs = [(spec, video) for spec, video in gt_clips if len(spec.objects) == 2]
    for spec, video in pairs:
        other = spec.objects[1]
        report = evaluate_clip(video, other.color, other.shape, other.motion)
        assert report["color_correct"] and report["shape_correct"] and report["motion_correct"], report
        assert set(report["detected_colors"]) == {o.color for o in spec.objects}


def test_wrong_labels_score_zero(gt_clips):
    videos, wrong_colors, wrong_shapes_and_motions = [], [], []
    for i, (spec, video) in enumerate(gt_clips[:20]):
        present = {o.color for o in spec.objects}
        wrong_color = next(c for c in COLORS[i % 8 :] + COLORS if c not in present)
        wrong_shape = SHAPES[(SHAPES.index(spec.label["shape"]) + 1) % len(SHAPES)]
        opposite = {"left": "right", "up": "down", "grow": "shrink", "still": "bounce"}
        videos.append(video)
        wrong_colors.append({"color": wrong_color})
        # With the right colour, so shape and motion are judged on the intended object.
        wrong_motion = opposite.get(spec.label["motion"], "still")
        wrong_shapes_and_motions.append({"color": spec.label["color"], "shape": wrong_shape, "motion": wrong_motion})
    assert evaluate_many(videos, wrong_colors)["color_accuracy"] == 0
    results = evaluate_many(videos, wrong_shapes_and_motions)
    assert results["shape_accuracy"] == 0 and results["motion_accuracy"] == 0


def test_noise_fails_everything():
    noise = np.random.default_rng(0).integers(0, 256, (17, 48, 64, 3), dtype=np.uint8)
    report = evaluate_clip(noise, "red", "circle", "right")
    assert not (report["color_correct"] or report["shape_correct"] or report["motion_correct"])
    assert report["permanence"] < 0.1 and report["detected_colors"] == []


def test_object_removed_in_half_the_frames_halves_permanence():
    spec = sample_clip_spec(3, 96, 96, 33, motion="right", num_objects=1, occluder=False)
    video = render_clip(spec)
    background = np.rint(render_background(spec.background, 96, 96)).astype(np.uint8)
    for frames in (slice(None, None, 2), slice(16, None)):  # every other frame; the second half
        erased = video.copy()
        erased[frames] = background
        assert 0.4 <= evaluate_clip(erased, **spec.label)["permanence"] <= 0.6


def test_occluder_counts_as_permanent_only_when_the_object_reappears():
    spec = sample_clip_spec(4, 128, 72, 33, motion="right", color="green", shape="circle", occluder=True)
    video = render_clip(spec)
    report = evaluate_clip(video, **spec.label)
    assert report["has_occluder"] and report["permanence"] == 1.0 and report["motion_correct"]
    # Erase the object once it has gone behind the bar: it never comes out again.
    green = (np.abs(video.astype(int) - (0, 255, 0)).sum(-1) < 200).sum(axis=(1, 2))
    hidden = int(np.flatnonzero(green == 0)[0])
    vanished = video.copy()
    vanished[hidden:] = vanished[hidden]
    assert evaluate_clip(vanished, **spec.label)["permanence"] <= hidden / len(video) + 0.05


def test_mp4_round_trip_still_scores(tmp_path):
    clips = [_gt_clip(i) for i in (0, 5, 14, 22, 27, 33, 40, 51)]
    occluded = sample_clip_spec(9, 192, 108, 33, motion="left", occluder=True)
    clips.append((occluded, render_clip(occluded)))
    paths = [write_video(tmp_path / f"clip{k}.mp4", video, spec.fps) for k, (spec, video) in enumerate(clips)]
    results = evaluate_many(paths, [spec.label for spec, _ in clips])
    assert results["color_accuracy"] == results["shape_accuracy"] == results["motion_accuracy"] == 1.0, results
    assert results["permanence"] >= 0.95
    assert results["reports"][-1]["has_occluder"]


def test_input_formats_agree():
    spec = sample_clip_spec(6, 96, 96, 17, shape="triangle", color="magenta", motion="down")
    video = render_clip(spec)
    as_float = video.astype(np.float32) / 255.0
    as_tensor = torch.from_numpy(as_float * 2 - 1).permute(3, 0, 1, 2)  # (C, T, H, W) in [-1, 1]
    as_pil = [Image.fromarray(frame) for frame in video]
    for form in (video, as_float, as_tensor, as_pil):
        report = evaluate_clip(form, **spec.label)
        assert report["color_correct"] and report["shape_correct"] and report["motion_correct"]
    item = ShapesWorldDataset(1, [Bucket(64, 32, 9)], seed=2)[0]  # the dataset's own tensors evaluate directly
    from sora_diffusers.data import ClipSpec

    assert evaluate_clip(item["video"], **ClipSpec.from_dict(item["spec"]).label)["color_correct"]
    with pytest.raises(ValueError):
        evaluate_clip(np.zeros((4, 5)))


def test_tolerates_noise_dimming_and_jitter():
    rng = np.random.default_rng(0)
    for i in range(4):
        spec, video = _gt_clip(i * 7)
        noisy = np.clip(video * 0.8 + rng.normal(0, 10, video.shape), 0, 255)  # darker colours, sensor-like noise
        noisy = np.stack([np.roll(frame, rng.integers(-1, 2, size=2), axis=(0, 1)) for frame in noisy])  # 1 px shake
        report = evaluate_clip(noisy.astype(np.float32), **spec.label)
        assert report["color_correct"] and report["shape_correct"] and report["motion_correct"], (spec.label, report)
        assert report["permanence"] >= 0.95


def test_first_frame_psnr():
    video = render_clip(sample_clip_spec(1, 64, 64, 9))
    assert psnr(video[0], video[0]) == float("inf") and first_frame_psnr(video, video[0]) == float("inf")
    noise = np.random.default_rng(0).integers(0, 256, video[0].shape, dtype=np.uint8)
    assert first_frame_psnr(video, noise) < 12
    slightly_off = np.clip(video[0].astype(int) + 3, 0, 255).astype(np.uint8)
    assert 35 < first_frame_psnr(video, slightly_off) < 45
    assert first_frame_psnr(video, Image.fromarray(video[0]).resize((128, 128))) > 25  # resized to the frame


def test_seam_continuity():
    spec = sample_clip_spec(11, 96, 96, 33, motion="right", occluder=False)
    video = render_clip(spec)
    assert 0.8 <= seam_continuity(video, 16) <= 1.25
    other = render_clip(sample_clip_spec(12, 96, 96, 33, motion="up"))
    spliced = np.concatenate([video[:16], other[16:]])
    assert seam_continuity(spliced, 16) > 3
    jumped = np.concatenate([video[:16], video[28:], video[28:]])[:33]  # a time skip of 12 frames
    assert seam_continuity(jumped, 16) > 3
    with pytest.raises(ValueError):
        seam_continuity(video, 1)
    report = evaluate_clip(video, image=video[0], seam_index=16)
    assert report["first_frame_psnr"] == float("inf") and report["seam_continuity"] < 1.25


def test_background_model_and_components():
    spec = sample_clip_spec(2, 80, 48, 9, background=None, num_objects=1)
    from sora_diffusers.data import BackgroundSpec

    spec.background = BackgroundSpec("gradient", ("maroon", "dark green"), "diagonal")
    video = as_video_array(render_clip(spec))
    truth = render_background(spec.background, 80, 48)
    assert np.abs(estimate_background(video) - truth).max() < 2.0  # exact up to rounding, object ignored
    mask = np.zeros((2, 5, 5), dtype=bool)
    mask[0, 0, 0] = mask[0, 1, 1] = True  # diagonal neighbours are not 4-connected
    mask[1, 1:4, 1:4] = True
    labels, count = connected_components(mask)
    assert count == 3 and labels[0, 0, 0] != labels[0, 1, 1] and len(np.unique(labels[1][mask[1]])) == 1


def test_labels_and_aggregates():
    assert normalize_label("motion", "Moving_Right") == "right" and normalize_label("motion", "spinning") == "rotate"
    with pytest.raises(ValueError):
        normalize_label("color", "purple")
    spec = sample_clip_spec(0, 64, 64, 9, motion="still")
    results = evaluate_many([render_clip(spec)], [{"color": spec.label["color"]}])
    assert results["color_accuracy"] == 1.0 and results["shape_accuracy"] is None and results["num_clips"] == 1


def test_command_line(tmp_path, capsys, monkeypatch):
    spec = sample_clip_spec(5, 128, 64, 17, color="red", shape="circle", motion="right", num_objects=1)
    path = write_video(tmp_path / "clip.mp4", render_clip(spec), spec.fps)
    assert main([str(path), "--color", "red", "--shape", "circle", "--motion", "right", "--seam", "8"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["color_correct"] and report["shape_correct"] and report["motion_correct"]
    # `python -m sora_diffusers.eval`, run in-process (a subprocess would spend ~10 s importing diffusers).
    monkeypatch.setattr(sys, "argv", ["sora_diffusers.eval", str(path), str(path), "--color", "blue"])
    monkeypatch.delitem(sys.modules, "sora_diffusers.eval.__main__", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("sora_diffusers.eval", run_name="__main__")
    assert exit_info.value.code == 0
    assert json.loads(capsys.readouterr().out)["color_accuracy"] == 0.0
