"""Pure functions of canvas.py (the size a request is generated at, padding into it, cropping out of it) and
`conditioning.keep_given_frames` (frames given at strength 1 put back into the decoded video)."""

import pytest
import torch

from sora_diffusers.pipelines.canvas import (
    GenerationCanvas,
    covering_multiple,
    covering_num_frames,
    generation_canvas,
)
from sora_diffusers.pipelines.conditioning import GivenFrames, keep_given_frames


# ---- the generation size --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, multiple, expected",
    [(144, 32, 160), (256, 32, 256), (1080, 32, 1088), (1920, 32, 1920), (120, 32, 128), (200, 32, 224), (1, 32, 32),
     (33, 32, 64), (40, 16, 48)],
)  # fmt: skip
def test_covering_multiple(value, multiple, expected):
    assert covering_multiple(value, multiple) == expected


@pytest.mark.parametrize(
    "num_frames, temporal_patch, expected",
    [(1, 1, 1), (2, 1, 5), (5, 1, 5), (8, 1, 9), (20, 1, 21), (81, 1, 81), (82, 1, 85),
     (1, 2, 5), (5, 2, 5), (6, 2, 13), (9, 2, 13)],
)  # fmt: skip
def test_covering_num_frames(num_frames, temporal_patch, expected):
    count = covering_num_frames(num_frames, 4, temporal_patch)
    assert count == expected
    assert (count - 1) % 4 == 0 and ((count - 1) // 4 + 1) % temporal_patch == 0


@pytest.mark.parametrize(
    "height, width, expected_size, expected_offsets",
    [
        (1080, 1920, (1088, 1920), (4, 0)),  # 1080p on the embedded model's multiple of 32
        (144, 256, (160, 256), (8, 0)),
        (256, 144, (256, 160), (0, 8)),
        (120, 200, (128, 224), (4, 12)),
        (121, 201, (128, 224), (3, 11)),  # odd margins: the extra row/column goes below/right
        (480, 832, (480, 832), (0, 0)),  # a size the model takes directly is not changed
    ],
)
def test_generation_canvas(height, width, expected_size, expected_offsets):
    canvas = generation_canvas(height, width, 81, spatial_multiple=32, temporal_ratio=4)
    assert (canvas.generation_height, canvas.generation_width) == expected_size
    assert (canvas.top, canvas.left) == expected_offsets
    assert canvas.crops_space == (expected_size != (height, width)) and not canvas.trims_frames


def test_generation_canvas_with_one_multiple_per_side():
    canvas = generation_canvas(100, 100, 1, spatial_multiple=(16, 32), temporal_ratio=4)  # e.g. patch (1, 1, 2)
    assert (canvas.generation_height, canvas.generation_width) == (112, 128)


# ---- padding and cropping -------------------------------------------------------------------------------------------


def test_pad_space_then_crop_gives_the_frames_back_with_edges_repeated():
    canvas = GenerationCanvas(5, 6, 3, 8, 9, 5)  # 5x6 requested, 8x9 generated: top 1, left 1, bottom 2, right 2
    frames = torch.arange(2 * 3 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 3, 5, 6)  # (B, C, T, H, W)
    padded = canvas.pad_space(frames)
    assert padded.shape == (2, 3, 3, 8, 9)
    assert torch.equal(padded[:, :, :, 1:6, 1:7], frames)
    assert torch.equal(padded[:, :, :, 0, 1:7], frames[:, :, :, 0])  # top row repeated
    assert torch.equal(padded[:, :, :, 6:, 1:7], frames[:, :, :, -1:].expand(-1, -1, -1, 2, -1))  # bottom rows
    assert torch.equal(padded[:, :, :, 1:6, 7:], frames[..., -1:].expand(-1, -1, -1, -1, 2))  # right columns
    assert torch.equal(padded[:, :, :, 0, 0], frames[:, :, :, 0, 0])  # corner
    full = canvas.pad_time(padded)
    assert full.shape == (2, 3, 5, 8, 9) and torch.equal(full[:, :, 3:], padded[:, :, -1:].expand(-1, -1, 2, -1, -1))
    assert torch.equal(canvas.crop(full), frames)


def test_pad_space_works_for_margins_wider_than_the_frame():
    canvas = generation_canvas(3, 40, 1, spatial_multiple=32, temporal_ratio=4)  # 3 rows on a 32-row canvas
    frames = torch.rand(1, 3, 1, 3, 40)
    padded = canvas.pad_space(frames)
    assert padded.shape == (1, 3, 1, 32, 64)
    assert torch.equal(canvas.crop(padded), frames)


def test_pad_space_refuses_frames_of_another_size():
    canvas = generation_canvas(144, 256, 1, spatial_multiple=32, temporal_ratio=4)
    with pytest.raises(ValueError, match=r"Frames of 160x256 pixels do not fit the requested 144x256"):
        canvas.pad_space(torch.zeros(1, 3, 1, 160, 256))


# ---- keep_given_frames ----------------------------------------------------------------------------------------------


def test_keep_given_frames_replaces_only_strength_1_frames_inside_the_video():
    video = torch.zeros(4, 3, 9, 2, 2)  # (B, 3, T, H, W): 2 prompts x 2 videos each
    clip = torch.rand(2, 3, 4, 2, 2)  # one clip per prompt
    hint = torch.rand(1, 3, 2, 2, 2)
    kept = keep_given_frames(
        video,
        [GivenFrames(clip, 7), GivenFrames(hint, 0, strength=0.5), GivenFrames(clip[:1, :, :1], 0)],
    )
    assert torch.equal(kept[:, :, 7:], clip[:, :, :2].repeat_interleave(2, dim=0))  # cut at the last frame
    assert torch.equal(kept[:, :, 0], clip[:1, :, 0].expand(4, -1, -1, -1))  # the later exact image wins
    assert torch.equal(kept[:, :, 1:7], video[:, :, 1:7])  # the hint's frame 1 and ungiven frames: the model's
    assert video.abs().max() == 0  # the input is not modified


def test_keep_given_frames_later_weaker_condition_wins_and_nothing_exact_returns_the_video():
    video = torch.zeros(1, 3, 5, 2, 2)
    clip = torch.ones(1, 3, 5, 2, 2)
    kept = keep_given_frames(video, [GivenFrames(clip, 0), GivenFrames(clip[:, :, :2], 1, strength=0.9)])
    assert kept[0, 0, :, 0, 0].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert keep_given_frames(video, [GivenFrames(clip, 0, strength=0.9)]) is video
