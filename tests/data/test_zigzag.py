"""The opt-in zig-zag motion of the shapes world: the default world is untouched, zig-zags do what they say."""

import hashlib
import json

import numpy as np
import pytest

from sora_diffusers.data import (
    ALL_MOTIONS,
    MOTIONS,
    ZIGZAG_MOTIONS,
    ClipSpec,
    ShapesWorldDataset,
    canonical_caption,
    caption_clip,
    make_buckets,
    object_trajectory,
    render_clip,
    sample_clip_spec,
)
from sora_diffusers.data.captions import held_out_caption
from sora_diffusers.data.shapes import (
    DIRECTIONS,
    MIN_TRAVEL,
    ZIGZAG_LEG_FRAMES,
    ZIGZAG_MIN_FRAMES,
    ZIGZAG_MIN_LEG_FRAMES,
    ZIGZAG_MIN_LEGS,
    ZIGZAG_SWING,
    extent,
)


# Digests of the default world as the default model was trained on it, taken before zig-zags existed: 300 specs and
# captions of the 256 px buckets of 17 and 33 frames (seed 0), and the pixels of 12 small clips (seed 3).
DEFAULT_WORLD_SPECS_SHA256 = "999b07f1a6e6e72d97163e25093eb241803a0185f7f41c022c4d79e6a84a2936"
DEFAULT_WORLD_PIXELS_SHA256 = "26104b9553479bad6bb926815558dd3c94f18de39004dced68161cf89543444f"
ZIGZAG_SIZES = ((256, 256), (256, 144), (144, 256), (96, 96))


def test_default_world_is_unchanged():
    specs = hashlib.sha256()
    dataset = ShapesWorldDataset(300, make_buckets(256, (17, 33)), seed=0)
    for index in range(300):
        spec, caption = dataset.sample(index)
        assert spec.label["motion"] in MOTIONS and "legs" not in json.dumps(spec.to_dict())
        specs.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
        specs.update(caption.encode())
    pixels = hashlib.sha256()
    dataset = ShapesWorldDataset(12, make_buckets(48, (9,)), seed=3)
    for index in range(12):
        pixels.update(render_clip(dataset.sample(index)[0]).tobytes())
    assert specs.hexdigest() == DEFAULT_WORLD_SPECS_SHA256
    assert pixels.hexdigest() == DEFAULT_WORLD_PIXELS_SHA256


def _zigzag_specs(count: int) -> list[ClipSpec]:
    return [
        sample_clip_spec(seed, *ZIGZAG_SIZES[seed % 4], (25, 33, 49)[seed % 3], motions=ZIGZAG_MOTIONS)
        for seed in range(count)
    ]


def _turns(values: np.ndarray) -> int:
    steps = np.sign(np.diff(values))
    steps = steps[steps != 0]
    return int((steps[1:] != steps[:-1]).sum())


def test_zigzags_go_one_way_and_swing_sideways():
    specs = _zigzag_specs(80)
    assert {spec.label["motion"] for spec in specs} == set(ZIGZAG_MOTIONS)
    assert any(len(spec.objects) == 2 for spec in specs)
    for spec in specs:
        obj, side = spec.objects[0], min(spec.width, spec.height)
        state = object_trajectory(obj, spec.num_frames)
        dx, dy = DIRECTIONS[obj.motion.removeprefix("zigzag-")]
        along, across, sign = (state["x"], state["y"], dx) if dx else (state["y"], state["x"], dy)
        assert np.all(np.diff(along) * sign > 0), obj  # steady progress the named way
        assert abs(along[-1] - along[0]) >= MIN_TRAVEL * side - 1e-6
        assert obj.legs >= ZIGZAG_MIN_LEGS and _turns(across) == obj.legs - 1, obj
        assert (spec.num_frames - 1) / obj.legs >= ZIGZAG_MIN_LEG_FRAMES  # legs slow enough for a 4x VAE
        # One pattern: the first leg goes to the left of the travel (up when going right; y is down).
        assert np.sign(across[1] - across[0]) == (-dx if dx else dy), obj
        assert np.ptp(across) == pytest.approx(abs(obj.swing)) and abs(obj.swing) <= ZIGZAG_SWING[1] * side + 1e-6
        for other in spec.objects[1:]:
            assert other.motion in MOTIONS and other.legs == 0
        for each in spec.objects:  # the whole path, both turning lines included, inside its region
            track = object_trajectory(each, spec.num_frames)
            reach = extent(each.shape, track["diameter"])
            x0, y0, x1, y1 = each.bounds
            assert np.all(track["x"] - reach >= x0 - 1e-6) and np.all(track["x"] + reach <= x1 + 1e-6)
            assert np.all(track["y"] - reach >= y0 - 1e-6) and np.all(track["y"] + reach <= y1 + 1e-6)


@pytest.mark.parametrize("num_frames, legs", [(25, 4), (33, 4), (49, 6), (65, 8)])
def test_a_zigzag_has_legs_of_about_8_frames(num_frames, legs):
    spec = sample_clip_spec(3, 128, 128, num_frames, motion="zigzag-right", num_objects=1)
    assert spec.objects[0].legs == legs
    assert ZIGZAG_LEG_FRAMES == 8.0 and 8 * 4 + 1 == 33  # at 33 frames the turns fall on frames 8, 16 and 24


def test_zigzag_specs_round_trip_and_render():
    spec = sample_clip_spec(5, 96, 96, 33, motion="zigzag-up", color="red", shape="circle", num_objects=1)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["objects"][0]["legs"] == spec.objects[0].legs >= ZIGZAG_MIN_LEGS
    assert ClipSpec.from_dict(data) == spec
    video = render_clip(spec)
    red = np.abs(video.astype(int) - (255, 0, 0)).sum(-1) < 30  # (T, H, W)
    rows, cols = np.nonzero(red[0])
    last_rows, _ = np.nonzero(red[-1])
    assert red.any(axis=(1, 2)).all() and last_rows.mean() < rows.mean() - 0.2 * 96  # it went up
    old_objects = [{k: v for k, v in obj.items() if k not in ("swing", "legs")} for obj in data["objects"]]
    old = {**data, "objects": old_objects}  # a spec written before zig-zags existed still loads
    assert ClipSpec.from_dict(old).objects[0].legs == 0


def test_zigzag_requests_are_checked():
    pinned = sample_clip_spec(1, 64, 64, 33, motion="zigzag-left", motions=("zigzag-up",))
    assert pinned.label["motion"] == "zigzag-left"
    drawn = {sample_clip_spec(s, 64, 64, 33, motions=("right", "zigzag-down")).label["motion"] for s in range(20)}
    assert drawn == {"right", "zigzag-down"}
    for bad, message in (
        (dict(motion="zigzag-right", num_frames=17), f"num_frames >= {ZIGZAG_MIN_FRAMES}"),
        (dict(motion="zigzag-right", occluder=True), "occluder needs a left/right/up/down motion"),
        (dict(motion="zigzag-diagonal"), "motion='zigzag-diagonal' is not one of"),
        (dict(motions=("spiral",)), "motions='spiral' is not one of"),
        (dict(motions="zigzag-right"), "non-empty sequence"),
        (dict(motions=()), "non-empty sequence"),
    ):
        kwargs = {"num_frames": 33, **bad}
        with pytest.raises(ValueError, match=message):
            sample_clip_spec(0, 64, 64, kwargs.pop("num_frames"), **kwargs)


def test_zigzag_captions_and_held_out_phrasing():
    captions = [caption_clip(spec, seed) for seed, spec in enumerate(_zigzag_specs(40))]
    assert all(("zig-zag" in c or "zigzag" in c) for c in captions), captions
    canonical = "a red circle zig-zags to the right on a black background"
    assert canonical_caption("red", "circle", "zigzag-right") == canonical
    assert held_out_caption("red", "circle", "zigzag-right") == "a scarlet orb weaves east on a black background"
    assert set(ALL_MOTIONS) == set(MOTIONS) | set(ZIGZAG_MOTIONS)
