"""Pure functions of conditioning.py: where conditioning frames land, at which noise level, and how they are imposed."""

import pytest
import torch

from sora_diffusers.pipelines.conditioning import (
    LatentCondition,
    align_condition,
    build_condition,
    impose_condition,
    nearest_valid_num_frames,
    num_latent_frames,
    with_lead_frames,
)


R = 4  # temporal compression: latent 0 = pixel frame 0, latent j >= 1 = pixel frames 4j-3 .. 4j
SHAPE = (2, 4, 6, 3, 5)  # (B, C, T', H', W') of a 21-frame video


# ---- frame counts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_frames, expected", [(1, 1), (5, 2), (9, 3), (21, 6), (8, 2)])
def test_num_latent_frames(num_frames, expected):
    assert num_latent_frames(num_frames, R) == expected


@pytest.mark.parametrize(
    "num_frames, expected",
    [(8, (5, 9)), (10, (9, 13)), (9, (9, 13)), (2, (1, 5)), (1, (1, 5)), (0, (1, 5)), (80, (77, 81))],
)
def test_nearest_valid_num_frames(num_frames, expected):
    lower, upper = nearest_valid_num_frames(num_frames, R)
    assert (lower, upper) == expected
    assert (lower - 1) % R == 0 and (upper - 1) % R == 0 and lower <= max(num_frames, 1) < upper


# ---- align_condition ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame_index, clip_length, expected",
    [
        (0, 9, (0, 9, 0, True)),  # a 1 + 2*4 clip at the start is encoded like a video of its own: latents 0..2
        (0, 1, (0, 1, 0, True)),  # an image at frame 0: latent 0
        (0, 7, (0, 5, 0, True)),  # only whole groups: frames 5, 6 are left to the model
        (0, 40, (0, 21, 0, True)),  # a clip longer than the output is cut to the output
    ],
)
def test_align_condition_at_start(frame_index, clip_length, expected):
    assert align_condition(frame_index, clip_length, 21, R) == expected


@pytest.mark.parametrize(
    "frame_index, clip_length, expected",
    [
        (13, 8, (0, 8, 4, False)),  # starts on a group boundary (pixel 13 = 1 + 3*4): latents 4, 5
        (12, 9, (1, 8, 4, False)),  # clip frame 0 sits before the boundary: skipped, frames 1..8 kept
        (5, 4, (0, 4, 2, False)),  # one group in the middle: latent 2
        (2, 10, (3, 4, 2, False)),  # boundary at 5: skip 3 frames, one whole group (7 left, 4 used)
        (1, 4, (0, 4, 1, False)),  # right after frame 0
    ],
)
def test_align_condition_mid_video(frame_index, clip_length, expected):
    first, used, latent_index, video_start = align_condition(frame_index, clip_length, 21, R)
    assert (first, used, latent_index, video_start) == expected
    # the frames used land exactly on latent groups: output frame of the first used one is 1 + (latent_index - 1) * 4
    assert frame_index + first == 1 + (latent_index - 1) * R and used % R == 0


@pytest.mark.parametrize(
    "frame_index, clip_length, expected",
    [
        (-9, 9, (1, 8, 4, False)),  # same as frame_index 12 in a 21-frame output (backward extension)
        (-4, 4, (0, 4, 5, False)),  # the last group (loop: the clip's head at the end)
        (-21, 9, (0, 9, 0, True)),  # -num_frames is frame 0
    ],
)
def test_align_condition_negative_index_counts_from_the_end(frame_index, clip_length, expected):
    assert align_condition(frame_index, clip_length, 21, R) == expected


@pytest.mark.parametrize(
    "frame_index, clip_length, match",
    [
        (21, 4, r"`frame_index` 21 is outside the output video of 21 frames \(allowed: -21 .. 20\)"),
        (-22, 4, r"`frame_index` -22 is outside"),
        (18, 3, r"covers no whole latent frame.*here frame 21"),  # boundary 21 is past the last frame
        (12, 4, r"covers no whole latent frame"),  # frames 12..15: skip 1, only 3 of a group left
        (-3, 9, r"covers no whole latent frame"),
        (0, 0, r"at least one frame"),
    ],
)
def test_align_condition_errors(frame_index, clip_length, match):
    with pytest.raises(ValueError, match=match):
        align_condition(frame_index, clip_length, 21, R)


# ---- build_condition ------------------------------------------------------------------------------------------------


def _latents(batch: int, frames: int, value: float | None = None) -> torch.Tensor:
    B, C, _, H, W = SHAPE
    if value is not None:
        return torch.full((batch, C, frames, H, W), value)
    return torch.randn(batch, C, frames, H, W)


def test_build_condition_without_conditions_is_all_generated():
    cond_latents, cond_sigma = build_condition(SHAPE, [])
    assert cond_latents.shape == SHAPE and not cond_latents.any()
    assert cond_sigma.tolist() == [1.0] * 6


def test_build_condition_sigma_per_frame_and_placement():
    start, end = _latents(2, 3), _latents(2, 2)
    cond_latents, cond_sigma = build_condition(SHAPE, [LatentCondition(start, 0), LatentCondition(end, 4)])
    assert cond_sigma.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert torch.equal(cond_latents[:, :, :3], start) and torch.equal(cond_latents[:, :, 4:], end)
    assert not cond_latents[:, :, 3].any()  # nothing given for latent frame 3


@pytest.mark.parametrize("strength, sigma", [(1.0, 0.0), (0.75, 0.25), (0.3, 0.7), (0.0, 1.0)])
def test_build_condition_strength_sets_the_noise_level(strength, sigma):
    _, cond_sigma = build_condition(SHAPE, [LatentCondition(_latents(2, 1), 2, strength)])
    assert cond_sigma[2].item() == pytest.approx(sigma)
    assert cond_sigma[[0, 1, 3, 4, 5]].tolist() == [1.0] * 5


def test_build_condition_later_conditions_overwrite_earlier_ones_where_they_overlap():
    first, second = _latents(2, 3, value=1.0), _latents(2, 2, value=2.0)
    cond_latents, cond_sigma = build_condition(
        SHAPE, [LatentCondition(first, 1, strength=1.0), LatentCondition(second, 3, strength=0.5)]
    )
    assert cond_latents[:, :, 1:3].eq(1.0).all() and cond_latents[:, :, 3:5].eq(2.0).all()
    assert cond_sigma.tolist() == [1.0, 0.0, 0.0, 0.5, 0.5, 1.0]


def test_build_condition_cuts_a_condition_at_the_last_latent_frame():
    clip = _latents(2, 3)
    cond_latents, cond_sigma = build_condition(SHAPE, [LatentCondition(clip, 4)])
    assert torch.equal(cond_latents[:, :, 4:], clip[:, :, :2])
    assert cond_sigma.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_build_condition_broadcasts_a_batch_of_one():
    clip = _latents(1, 2)
    cond_latents, _ = build_condition((3, *SHAPE[1:]), [LatentCondition(clip, 0)])
    assert cond_latents.shape[0] == 3
    for b in range(3):
        assert torch.equal(cond_latents[b, :, :2], clip[0])


def test_build_condition_keeps_per_sample_latents():
    clip = _latents(2, 1)
    cond_latents, _ = build_condition(SHAPE, [LatentCondition(clip, 0)])
    assert torch.equal(cond_latents[:, :, :1], clip) and not torch.equal(cond_latents[0], cond_latents[1])


@pytest.mark.parametrize(
    "condition, match",
    [
        (LatentCondition(torch.zeros(2, 4, 1, 3, 5), 0, strength=1.5), r"`strength` must be in \[0, 1\], got 1.5"),
        (LatentCondition(torch.zeros(2, 4, 1, 3, 5), 0, strength=-0.1), r"`strength` must be in \[0, 1\]"),
        (LatentCondition(torch.zeros(3, 4, 1, 3, 5), 0), r"do not fit latents \(2, 4, 6, 3, 5\)"),  # batch 3 vs 2
        (LatentCondition(torch.zeros(2, 4, 1, 4, 5), 0), r"do not fit"),  # height
        (LatentCondition(torch.zeros(2, 3, 1, 3, 5), 0), r"do not fit"),  # channels
        (LatentCondition(torch.zeros(2, 4, 1, 3, 5), 6), r"`latent_index` 6 is outside the 6 latent frames"),
    ],
)
def test_build_condition_errors(condition, match):
    with pytest.raises(ValueError, match=match):
        build_condition(SHAPE, [condition])


# ---- impose_condition -----------------------------------------------------------------------------------------------


@pytest.fixture
def impose_inputs():
    latents, cond, noise = torch.randn(SHAPE), torch.randn(SHAPE), torch.randn(SHAPE)
    return latents, cond, noise


def test_impose_per_frame_keeps_clean_frames_clean(impose_inputs):
    latents, cond, noise = impose_inputs
    cond_sigma = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    out, level = impose_condition(latents, cond, cond_sigma, noise, sigma=0.7, per_frame_timesteps=True)
    assert torch.equal(out[:, :, :2], cond[:, :, :2])  # exactly the clean conditioning latents
    assert torch.equal(out[:, :, 2:], latents[:, :, 2:])  # generated frames untouched
    assert level.tolist() == pytest.approx([0.0, 0.0, 0.7, 0.7, 0.7, 0.7])  # the model is told each frame's level


def test_impose_per_frame_holds_a_partial_strength_frame_at_its_level(impose_inputs):
    latents, cond, noise = impose_inputs
    cond_sigma = torch.tensor([0.4, 1.0, 1.0, 1.0, 1.0, 1.0])  # strength 0.6
    out, level = impose_condition(latents, cond, cond_sigma, noise, sigma=0.9, per_frame_timesteps=True)
    torch.testing.assert_close(out[:, :, 0], 0.6 * cond[:, :, 0] + 0.4 * noise[:, :, 0])
    assert level.tolist() == pytest.approx([0.4, 0.9, 0.9, 0.9, 0.9, 0.9])


def test_impose_fallback_renoises_at_the_current_sigma(impose_inputs):
    latents, cond, noise = impose_inputs
    cond_sigma = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    out, level = impose_condition(latents, cond, cond_sigma, noise, sigma=0.7, per_frame_timesteps=False)
    for t in (0, 5):
        torch.testing.assert_close(out[:, :, t], 0.3 * cond[:, :, t] + 0.7 * noise[:, :, t])
    assert torch.equal(out[:, :, 1:5], latents[:, :, 1:5])
    assert level.tolist() == pytest.approx([0.7] * 6)  # one level for every frame: the model has no per-frame input


@pytest.mark.parametrize("per_frame", [True, False])
def test_impose_leaves_frames_whose_level_is_not_below_sigma(impose_inputs, per_frame):
    latents, cond, noise = impose_inputs
    cond_sigma = torch.tensor([0.5, 0.3, 1.0, 1.0, 1.0, 1.0])  # frame 1 is still held (0.3 < 0.4), frame 0 is not
    out, level = impose_condition(latents, cond, cond_sigma, noise, 0.4, per_frame, prev_sigma=0.45)
    assert torch.equal(out[:, :, 0], latents[:, :, 0])
    assert torch.equal(out[:, :, 2:], latents[:, :, 2:])
    s = 0.3 if per_frame else 0.4
    torch.testing.assert_close(out[:, :, 1], (1 - s) * cond[:, :, 1] + s * noise[:, :, 1])
    assert level[0].item() == pytest.approx(0.4)


@pytest.mark.parametrize("per_frame", [True, False])
def test_impose_without_conditions_returns_the_latents(impose_inputs, per_frame):
    latents, cond, noise = impose_inputs
    out, level = impose_condition(latents, cond, torch.ones(6), noise, sigma=0.8, per_frame_timesteps=per_frame)
    assert out is latents
    assert level.tolist() == pytest.approx([0.8] * 6)


@pytest.mark.parametrize("per_frame", [True, False])
def test_impose_releases_a_partial_strength_frame_at_the_current_sigma(impose_inputs, per_frame):
    latents, cond, noise = impose_inputs
    cond_sigma = torch.tensor([0.5, 0.0, 1.0, 1.0, 1.0, 1.0])
    # released this step (0.4 <= 0.5 < 0.6): starts from its conditioning noised to 0.4
    out, level = impose_condition(latents, cond, cond_sigma, noise, 0.4, per_frame, prev_sigma=0.6)
    torch.testing.assert_close(out[:, :, 0], 0.6 * cond[:, :, 0] + 0.4 * noise[:, :, 0])
    assert level[0].item() == pytest.approx(0.4)
    assert torch.equal(out[:, :, 2:], latents[:, :, 2:])
    # released on an earlier step: generated from then on, left alone
    out, _ = impose_condition(latents, cond, cond_sigma, noise, 0.3, per_frame, prev_sigma=0.4)
    assert torch.equal(out[:, :, 0], latents[:, :, 0])


def test_impose_first_step_releases_frames_above_the_start_level(impose_inputs):
    latents, cond, noise = impose_inputs
    cond_sigma = torch.tensor([0.8, 1.0, 1.0, 1.0, 1.0, 1.0])  # strength 0.2, above a video-to-video start at 0.5
    out, level = impose_condition(latents, cond, cond_sigma, noise, 0.5, per_frame_timesteps=True)
    torch.testing.assert_close(out[:, :, 0], 0.5 * cond[:, :, 0] + 0.5 * noise[:, :, 0])
    assert level.tolist() == pytest.approx([0.5] * 6)
    assert torch.equal(out[:, :, 1:], latents[:, :, 1:])


def test_with_lead_frames_puts_the_clip_at_its_latent_place():
    clip = torch.arange(2 * 8, dtype=torch.float32).view(1, 1, 8, 1, 2)  # 8 frames = 2 groups of 4
    led = with_lead_frames(clip, latent_index=3, temporal_ratio=4)
    assert led.shape == (1, 1, 9 + 8, 1, 2)  # 1 + (3 - 1) * 4 frames before the clip
    assert torch.equal(led[:, :, :9], clip[:, :, :1].expand(-1, -1, 9, -1, -1))
    assert torch.equal(led[:, :, 9:], clip)
    assert with_lead_frames(clip, 1, 4).shape[2] == 9  # right after frame 0: one frame of lead
    with pytest.raises(ValueError, match=r"`latent_index` must be >= 1"):
        with_lead_frames(clip, 0, 4)
