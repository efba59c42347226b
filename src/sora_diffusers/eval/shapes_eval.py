"""Deterministic scores for shapes-world videos: colour, shape, motion, object permanence, first-frame fidelity and
continuity across an extension seam. Objects are found by `segmentation` (read its docstring first); all lengths
below are fractions of S = min(height, width) of the analysed frames.

The rules, in the order `evaluate_clip` applies them:

* **Colour.** A colour is *detected* when blobs of that colour appear in at least `MIN_TRACK_FRAMES` of the frames
  and their summed area is at least `MIN_TRACK_AREA_SHARE` of the largest colour's. `dominant_color` is the detected
  colour with the largest summed area. `color_correct`: the asked colour is detected (so the second object of a
  two-object clip can be asked for). The *target* object is the asked colour's largest blob in each frame, or the
  dominant colour's when no colour is asked for or the asked one is missing.
* **Shape** (strict, `shape_fit`): on every frame where the target is whole (touching neither the frame border nor
  the occluder) and at least `shape_fit.MIN_SHAPE_PIXELS` big (at most `MAX_SHAPE_FRAMES` of them, evenly spaced), its half-maximum mask is fitted with an ideal circle,
  square and triangle (any position, scale and rotation); the frame reads as the kind that fits best with an IoU of
  at least `shape_fit.MIN_SHAPE_IOU` (0.90), or as no shape. Masks are taken at up to `SHAPE_MAX_SIDE` pixels (finer
  than the analysis frames). `shape_correct`: at least `MIN_SHAPE_FRAMES` (80%) of the judged frames read as the
  asked shape, so an object that morphs, or a blob that is no shape, fails. `shape_stable`: some one shape is read in
  80% of them. No judged frame: the shape is wrong (`predicted_shape` None).
* **Shape, lenient** (the figures before 2026-12, kept for comparison as `predicted_shape_lenient` /
  `shape_correct_lenient`): the medians, over the whole observations, of the 3- and 4-fold angular harmonic
  strengths of the target's coverage (`segmentation.angular_harmonic`): at least `TRIANGLE_MIN_H3` (0.25) of 3-fold
  symmetry is a triangle, else at least `SQUARE_MIN_H4` (0.14) of 4-fold symmetry is a square, else a circle. It
  calls a heart, an ellipse or a rounded lump a circle or a square, which is why it is no longer the score.
* **Motion**, first rule that holds: "zigzag-DIRECTION" (the opt-in `data.shapes.ZIGZAG_MOTIONS`) when the
  centroid goes one way along x or y (no reversal larger than `BOUNCE_HYSTERESIS`, and a least-squares displacement
  of at least `MOVE_MIN`: DIRECTION) while along the other axis it reverses at least `ZIGZAG_MIN_REVERSALS` times
  between legs of at least `ZIGZAG_MIN_SWING` each (a straight mover has no such reversal; a bounce always reverses
  along its direction of travel, and the default world's bounces turn at most twice along an axis whose other axis
  goes one way; `ZIGZAG_MIN_SWING` equals `BOUNCE_MIN_LEG`, so a track read as a zig-zag would otherwise have been
  read as a bounce, never as a direction); "bounce" when the centroid reverses along x or y with at least
  `BOUNCE_MIN_LEG` of travel on both sides of the turn (turns smaller than `BOUNCE_HYSTERESIS` are jitter); a
  compass direction (8 sectors of 45 degrees, y up) when the least-squares centroid displacement over the clip is at
  least `MOVE_MIN`; "grow" / "shrink" when the median area (the colour's coverage summed over the object and a
  `AREA_RIM_PX` rim, which blur does not change) of the last third of the frames over the first third is above
  `GROW_MIN_RATIO` / below its inverse; "rotate" when the orientation (phase of the 3- or 4-fold angular
  harmonic, whichever is stronger, when at least `MIN_ORIENTATION_STRENGTH`: circles have none) turns by at least
  `ROTATE_MIN_DEG` in total; otherwise "still".
* **Permanence**: the fraction of frames where the target is present exactly once. Present: one blob of the target
  colour (pieces touching the occluder count as one; blobs smaller than `COUNT_MIN_AREA` of the reference area are
  ignored) whose area is within `AREA_TOLERANCE` of the reference (the median target area over a window of
  neighbouring frames), or any size when partly hidden by the occluder or the frame border. A frame where the target
  is missing still counts when an occluder is present and the nearest frames on both sides that show the target
  show it touching the occluder: it went behind the bar and came out again (an object that never reappears, or
  that appears from nowhere, does not count).
* **First-frame fidelity**: PSNR (dB, 8-bit peak) between the first frame and a conditioning image.
* **Seam continuity**: mean absolute change across the seam divided by the median frame-to-frame change before it
  (floored at `MIN_FRAME_CHANGE`). About 1 (or below) is continuous; a jump cut gives a large ratio.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.shapes import ALL_MOTIONS, COLORS, PALETTE, SHAPES, ZIGZAG_PREFIX
from .segmentation import (
    ANALYSIS_MAX_SIDE,
    COVERAGE_THRESHOLD,
    Blob,
    angular_harmonic,
    as_video_array,
    blob_coverage,
    classify_pixels,
    dilate,
    estimate_background,
    find_blobs,
    min_rect_fill,
    occluder_mask,
    to_numpy,
)
from .shape_fit import object_mask, read_shape


MIN_TRACK_FRAMES = 0.25
MIN_TRACK_AREA_SHARE = 0.02

SHAPE_MAX_SIDE = 256  # strict shape masks are taken on frames box-downsampled to at most this long side
MIN_SHAPE_FRAMES = 0.8  # share of the judged frames that must read as the asked shape
MAX_SHAPE_FRAMES = 17  # at most this many whole frames are judged, evenly spaced (each costs a fit)
TRIANGLE_MIN_H3 = 0.25
SQUARE_MIN_H4 = 0.14
MIN_ORIENTATION_STRENGTH = 0.1

BOUNCE_HYSTERESIS = 0.05
BOUNCE_MIN_LEG = 0.08
MOVE_MIN = 0.1
ZIGZAG_MIN_REVERSALS = 3
ZIGZAG_MIN_SWING = BOUNCE_MIN_LEG  # sideways legs on both sides of a counted reversal
GROW_MIN_RATIO = 1.5
AREA_RIM_PX = 2  # the object's area also sums the colour blurred up to this far outside it
ROTATE_MIN_DEG = 20.0
# Compass sectors, counter-clockwise from east, y pointing up.
COMPASS = ("right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right")

COUNT_MIN_AREA = 0.3
AREA_TOLERANCE = 2.0  # present when reference / 2 <= area <= reference * 2
REFERENCE_WINDOW = 0.125  # half-window, fraction of the clip length (at least 2 frames)

MIN_FRAME_CHANGE = 0.05  # mean absolute 8-bit change per pixel; floors the seam baseline of a still clip

MOTION_ALIASES = {
    "rightward": "right", "leftward": "left", "upward": "up", "downward": "down",
    "upper-right": "up-right", "upper-left": "up-left", "lower-right": "down-right", "lower-left": "down-left",
    "right-up": "up-right", "left-up": "up-left", "right-down": "down-right", "left-down": "down-left",
    "bouncing": "bounce", "growing": "grow", "shrinking": "shrink", "rotating": "rotate", "spinning": "rotate",
    "spin": "rotate", "static": "still", "stationary": "still", "none": "still",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------------


def normalize_label(kind: str, value: str | None) -> str | None:
    """Check a colour/shape/motion name; motions also accept aliases ("moving_right", "upper-left", "spinning")."""
    if value is None:
        return None
    name = value.strip().lower().replace("_", "-").replace(" ", "-")
    if kind == "motion":
        name = name.removeprefix("moving-").removeprefix("move-")
        for spelling in ("zig-zagging-", "zigzagging-", "zig-zag-"):  # "zig-zagging right" -> "zigzag-right"
            name = ZIGZAG_PREFIX + name.removeprefix(spelling) if name.startswith(spelling) else name
        if name.startswith(ZIGZAG_PREFIX):
            direction = name.removeprefix(ZIGZAG_PREFIX)
            name = ZIGZAG_PREFIX + MOTION_ALIASES.get(direction, direction)
        name = MOTION_ALIASES.get(name, name)
    choices = {"color": COLORS, "shape": SHAPES, "motion": ALL_MOTIONS}[kind]
    if name not in choices:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {choices}")
    return name


# ---------------------------------------------------------------------------------------------------------------------
# Colour and the target track
# ---------------------------------------------------------------------------------------------------------------------


def detect_colors(blobs: list[list[Blob]]) -> list[str]:
    """Colours of persistent objects, largest summed area first (see the module docstring)."""
    num_frames = len(blobs)
    frames: dict[str, int] = {}
    areas: dict[str, int] = {}
    for frame_blobs in blobs:
        for color in {blob.color for blob in frame_blobs}:
            frames[color] = frames.get(color, 0) + 1
        for blob in frame_blobs:
            areas[blob.color] = areas.get(blob.color, 0) + blob.area
    if not areas:
        return []
    largest = max(areas.values())
    detected = [
        c for c in areas if frames[c] >= MIN_TRACK_FRAMES * num_frames and areas[c] >= MIN_TRACK_AREA_SHARE * largest
    ]
    return sorted(detected, key=lambda c: -areas[c])


def _target_track(blobs: list[list[Blob]], color: str | None) -> list[Blob | None]:
    """The largest blob of `color` in each frame (None where there is none)."""
    return [next((blob for blob in frame_blobs if blob.color == color), None) for frame_blobs in blobs]


# ---------------------------------------------------------------------------------------------------------------------
# Shape
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ShapeFeatures:
    """Measurements of one frame's target object."""

    area: float  # pixels: the sum of the coverage against the palette colour (robust to blur)
    fill: float  # `min_rect_fill` of the shape mask
    h3: float  # 3-fold angular harmonic strength and phase
    phase3: float
    h4: float  # 4-fold
    phase4: float


def shape_features(blob: Blob, video: np.ndarray, background: np.ndarray, labels: np.ndarray) -> ShapeFeatures:
    """Features of one observation (see `segmentation.blob_coverage` for the two kinds of coverage)."""
    coverage = blob_coverage(blob, video, background, labels)
    h3, phase3 = angular_harmonic(coverage, 3)
    h4, phase4 = angular_harmonic(coverage, 4)
    ink = blob_coverage(blob, video, background, labels, color=PALETTE[blob.color], rim=AREA_RIM_PX)
    return ShapeFeatures(float(ink.sum()), min_rect_fill(coverage >= COVERAGE_THRESHOLD), h3, phase3, h4, phase4)


def classify_shape(h3: float, h4: float) -> str:
    """Median harmonic strengths -> "triangle", "square" or "circle" (thresholds in the module docstring)."""
    if h3 >= TRIANGLE_MIN_H3:
        return "triangle"
    return "square" if h4 >= SQUARE_MIN_H4 else "circle"


def _clean(track: list[Blob | None]) -> list[Blob]:
    """Observations that show the whole object (not cut by the border or the occluder); all of them if none do."""
    seen = [blob for blob in track if blob is not None]
    clean = [blob for blob in seen if not (blob.touches_border or blob.touches_occluder)]
    return clean or seen


def _shape_crop(blob: Blob, labels: np.ndarray, scale: float, height: int, width: int) -> tuple:
    """The blob's box on the shape frames (`scale` shape pixels per analysis pixel, plus a margin) and its gate.

    The gate is the blob's component dilated by one analysis pixel and mapped to the shape pixels: the mask may not
    reach another object of the same colour.
    """
    margin = int(math.ceil(scale)) + 1
    x0, y0 = max(int(blob.bbox[0] * scale) - margin, 0), max(int(blob.bbox[1] * scale) - margin, 0)
    x1, y1 = (
        min(int(math.ceil(blob.bbox[2] * scale)) + margin, width),
        min(int(math.ceil(blob.bbox[3] * scale)) + margin, height),
    )
    member = dilate(labels[blob.frame] == blob.label)  # (h_a, w_a)
    rows = np.minimum(((np.arange(y0, y1) + 0.5) / scale).astype(int), member.shape[0] - 1)
    cols = np.minimum(((np.arange(x0, x1) + 0.5) / scale).astype(int), member.shape[1] - 1)
    return (x0, y0, x1, y1), member[rows][:, cols]


def strict_shape_reads(
    track: list[Blob | None], labels: np.ndarray, shape_frames: np.ndarray, shape_background: np.ndarray, scale: float
) -> dict[int, tuple[str | None, dict[str, float]]]:
    """Per judged frame (the whole target, big enough), `shape_fit.read_shape` of its mask on the shape frames."""
    _, height, width, _ = shape_frames.shape
    whole = [blob for blob in track if blob is not None and not (blob.touches_border or blob.touches_occluder)]
    if len(whole) > MAX_SHAPE_FRAMES:  # evenly spaced over the clip: a change of shape still shows
        whole = [whole[i] for i in np.linspace(0, len(whole) - 1, MAX_SHAPE_FRAMES).round().astype(int)]
    reads = {}
    for blob in whole:
        (x0, y0, x1, y1), gate = _shape_crop(blob, labels, scale, height, width)
        pixels = shape_frames[blob.frame, y0:y1, x0:x1]
        mask = object_mask(pixels, shape_background[y0:y1, x0:x1], PALETTE[blob.color], gate)
        kind, ious = read_shape(mask)
        if ious:  # else too small to judge
            reads[blob.frame] = (kind, ious)
    return reads


def summarize_shape_reads(reads: dict[int, tuple[str | None, dict]], shape: str | None) -> dict:
    """Clip-level strict shape scores from the per-frame reads (see the module docstring)."""
    kinds = [kind for kind, _ in reads.values()]
    shares = {kind: kinds.count(kind) / len(kinds) for kind in SHAPES if kind in kinds} if kinds else {}
    modal = max(shares, key=shares.get) if shares else None
    stable = bool(shares) and shares[modal] >= MIN_SHAPE_FRAMES
    return {
        "predicted_shape": modal,
        "shape_stable": stable,
        "shape_correct": None if shape is None else shares.get(shape, 0.0) >= MIN_SHAPE_FRAMES,
        "shape_frames_judged": len(kinds),
        "shape_read_shares": {kind: round(share, 4) for kind, share in shares.items()},
        "shape_frame_reads": {int(frame): kind for frame, (kind, _) in sorted(reads.items())},
        "shape_iou": round(float(np.median([max(ious.values()) for _, ious in reads.values()])), 4) if reads else None,
    }


# ---------------------------------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------------------------------


def swing_legs(positions: np.ndarray, hysteresis: float) -> list[float]:
    """Lengths of the monotone legs of a 1D path, ignoring reversals smaller than `hysteresis` (a zig-zag filter)."""
    legs: list[float] = []
    pivot = extreme = float(positions[0])
    direction = 0
    for value in map(float, positions[1:]):
        if direction == 0:
            if abs(value - pivot) >= hysteresis:
                direction, extreme = (1 if value > pivot else -1), value
        elif (value - extreme) * direction > 0:
            extreme = value
        elif abs(value - extreme) >= hysteresis:
            legs.append(abs(extreme - pivot))
            pivot, extreme, direction = extreme, value, -direction
    if direction:
        legs.append(abs(extreme - pivot))
    return legs


def _bounces(xs: np.ndarray, ys: np.ndarray, side: float) -> bool:
    for path in (xs, ys):
        legs = swing_legs(path, BOUNCE_HYSTERESIS * side)
        if any(a >= BOUNCE_MIN_LEG * side and b >= BOUNCE_MIN_LEG * side for a, b in zip(legs, legs[1:])):
            return True
    return False


def zigzag_reading(xs: np.ndarray, ys: np.ndarray, dx: float, dy: float, side: float) -> tuple[str | None, int]:
    """The zig-zag a centroid track shows, as `("zigzag-right", reversals)`, or `(None, reversals)`.

    The main axis is one along which the track goes one way (no reversal above `BOUNCE_HYSTERESIS`) with a
    least-squares displacement (`dx`, `dy`, y down) of at least `MOVE_MIN`; reversals are counted across it (see the
    module docstring). `reversals` is the larger count of the two axes when neither qualifies.
    """
    hysteresis, swing = BOUNCE_HYSTERESIS * side, ZIGZAG_MIN_SWING * side
    counts = []
    for along, across, displacement, names in ((xs, ys, dx, ("right", "left")), (ys, xs, dy, ("down", "up"))):
        legs = swing_legs(across, hysteresis)
        reversals = sum(a >= swing and b >= swing for a, b in zip(legs, legs[1:]))
        one_way = len(swing_legs(along, hysteresis)) <= 1 and abs(displacement) >= MOVE_MIN * side
        if one_way and reversals >= ZIGZAG_MIN_REVERSALS:
            return ZIGZAG_PREFIX + names[0 if displacement > 0 else 1], reversals
        counts.append(reversals)
    return None, max(counts)


def compass_direction(dx: float, dy: float) -> str:
    """Screen displacement (y down) -> one of the 8 compass motion names."""
    angle = math.degrees(math.atan2(-dy, dx)) % 360
    return COMPASS[int((angle + 22.5) // 45) % 8]


def rotation_degrees(features: list[ShapeFeatures]) -> float:
    """Total signed turn (degrees, positive = clockwise on screen) from the stronger angular harmonic's phase."""
    if len(features) < 2:
        return 0.0
    h3, h4 = np.median([f.h3 for f in features]), np.median([f.h4 for f in features])
    if max(h3, h4) < MIN_ORIENTATION_STRENGTH:
        return 0.0  # no orientation to follow (a circle)
    order, phases = (3, [f.phase3 for f in features]) if h3 >= h4 else (4, [f.phase4 for f in features])
    unwrapped = np.unwrap(phases)  # assumes less than 360/(2 order) degrees of turn between observations
    return float(np.degrees(unwrapped[-1] - unwrapped[0]) / order)


def _area_ratio(areas: list[float]) -> float:
    third = max(len(areas) // 3, 1)
    return float(np.median(areas[-third:]) / max(np.median(areas[:third]), 1.0))


def measure_motion(track: list[Blob | None], features: dict[int, ShapeFeatures], side: float) -> dict:
    """Motion measurements of the target track and the motion label they imply (see the module docstring)."""
    seen = [blob for blob in track if blob is not None]
    if len(seen) < 2:
        return {
            "predicted_motion": None,
            "displacement": None,
            "area_ratio": None,
            "rotation_deg": None,
            "zigzag_reversals": None,
        }
    t = np.array([blob.frame for blob in seen], dtype=np.float64)
    xs = np.array([blob.centroid[0] for blob in seen])
    ys = np.array([blob.centroid[1] for blob in seen])
    span = max(len(track) - 1, 1)
    dx, dy = (np.polyfit(t, xs, 1)[0] * span, np.polyfit(t, ys, 1)[0] * span)  # least-squares slope * clip length
    clean = _clean(track)
    area_ratio = _area_ratio([features[blob.frame].area for blob in clean])
    # Every unoccluded frame, cut by the border or not: a gap in the phase track would make unwrapping ambiguous.
    rotation = rotation_degrees([features[blob.frame] for blob in seen if not blob.touches_occluder])
    zigzag, reversals = zigzag_reading(xs, ys, dx, dy, side)
    if zigzag:
        motion = zigzag
    elif _bounces(xs, ys, side):
        motion = "bounce"
    elif math.hypot(dx, dy) >= MOVE_MIN * side:
        motion = compass_direction(dx, dy)
    elif area_ratio >= GROW_MIN_RATIO or area_ratio <= 1 / GROW_MIN_RATIO:
        motion = "grow" if area_ratio > 1 else "shrink"
    elif abs(rotation) >= ROTATE_MIN_DEG:
        motion = "rotate"
    else:
        motion = "still"
    return {
        "predicted_motion": motion,
        "displacement": [round(float(dx) / side, 4), round(float(dy) / side, 4)],
        "area_ratio": round(area_ratio, 4),
        "rotation_deg": round(rotation, 2),
        "zigzag_reversals": reversals,  # reversals across the main axis between legs of at least ZIGZAG_MIN_SWING
    }


# ---------------------------------------------------------------------------------------------------------------------
# Permanence
# ---------------------------------------------------------------------------------------------------------------------


def _reference_areas(track: list[Blob | None]) -> np.ndarray:
    """Per frame, the median area of whole (clean) target observations in a window around it."""
    clean = _clean(track)
    if not clean:
        return np.zeros(len(track))
    frames = np.array([blob.frame for blob in clean])
    areas = np.array([blob.area for blob in clean], dtype=np.float64)
    half = max(2, int(REFERENCE_WINDOW * len(track)))
    reference = np.empty(len(track))
    for t in range(len(track)):
        near = np.abs(frames - t) <= half
        reference[t] = np.median(areas[near]) if near.any() else np.median(areas)
    return reference


def target_counts(blobs: list[list[Blob]], color: str | None) -> list[int]:
    """Per frame, how many objects of `color` are seen: blobs of at least `COUNT_MIN_AREA` of the reference area,
    the pieces touching the occluder counting as one (an object half behind the bar is one object)."""
    reference = _reference_areas(_target_track(blobs, color))
    counts = []
    for t, frame_blobs in enumerate(blobs):
        own = [b for b in frame_blobs if b.color == color and b.area >= COUNT_MIN_AREA * reference[t]]
        counts.append(sum(not b.touches_occluder for b in own) + any(b.touches_occluder for b in own))
    return counts


def permanence_flags(blobs: list[list[Blob]], color: str | None, has_occluder: bool) -> np.ndarray:
    """(T,) bool: the target is present exactly once, or hidden behind the occluder (see the module docstring)."""
    track = _target_track(blobs, color)
    reference = _reference_areas(track)
    status = []  # "ok", "bad" or "missing"
    for t, (frame_blobs, count) in enumerate(zip(blobs, target_counts(blobs, color))):
        own = [b for b in frame_blobs if b.color == color and b.area >= COUNT_MIN_AREA * reference[t]]
        if count == 0:
            status.append("missing")
        elif count > 1:
            status.append("bad")
        else:
            main = own[0]
            whole_size = reference[t] / AREA_TOLERANCE <= main.area <= reference[t] * AREA_TOLERANCE
            status.append("ok" if whole_size or main.touches_occluder or main.touches_border else "bad")
    flags = np.array([s == "ok" for s in status])
    if not has_occluder:
        return flags
    for t, s in enumerate(status):
        if s == "missing":
            before = next((track[k] for k in range(t - 1, -1, -1) if track[k] is not None), None)
            after = next((track[k] for k in range(t + 1, len(track)) if track[k] is not None), None)
            flags[t] = before is not None and after is not None and before.touches_occluder and after.touches_occluder
    return flags


# ---------------------------------------------------------------------------------------------------------------------
# Fidelity and continuity
# ---------------------------------------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two 8-bit-scale images of the same shape (inf when identical)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr needs images of the same shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def first_frame_psnr(video, image) -> float:
    """PSNR (dB) between the video's first frame and a conditioning image (resized bilinearly to the frame if needed)."""
    first = as_video_array(video, max_side=None)[0]
    reference = as_video_array(image, max_side=None)[0]
    if reference.shape != first.shape:
        from PIL import Image

        resized = Image.fromarray(np.rint(reference).astype(np.uint8)).resize(first.shape[1::-1], Image.BILINEAR)
        reference = np.asarray(resized, dtype=np.float32)
    return psnr(first, reference)


def seam_continuity(video, seam_index: int) -> float:
    """Change across the seam (between frames `seam_index - 1` and `seam_index`) / median change before it."""
    frames = as_video_array(video)
    if not 2 <= seam_index < len(frames):
        raise ValueError(
            f"seam_index must be in [2, {len(frames) - 1}] for a {len(frames)}-frame video, got {seam_index}"
        )
    changes = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # (T - 1,): change from frame t to t + 1
    baseline = float(np.median(changes[: seam_index - 1]))
    return float(changes[seam_index - 1] / max(baseline, MIN_FRAME_CHANGE))


# ---------------------------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------------------------


def evaluate_clip(
    video,
    color: str | None = None,
    shape: str | None = None,
    motion: str | None = None,
    *,
    image=None,
    seam_index: int | None = None,
) -> dict:
    """Score one video against the intended colour, shape and motion (each optional).

    Args:
        video: a `(T, H, W, 3)` array or tensor (uint8, or float in [0, 1] / [-1, 1]), `(3, T, H, W)`, a list of PIL
            frames, or a path to an mp4/gif.
        color, shape, motion (`str`, *optional*): the label (`COLORS`, `SHAPES`, `ALL_MOTIONS`; motion aliases
            accepted, e.g. "moving_right", "zig-zagging right").
        image (*optional*): a conditioning image; adds `first_frame_psnr`.
        seam_index (`int`, *optional*): first frame of an extension; adds `seam_continuity`.

    Returns:
        `dict` with `color_correct`, `shape_correct`, `motion_correct` (`None` when that label was not given),
        `permanence` in [0, 1], `shape_stable`, the measurements behind them (`detected_colors`, `dominant_color`,
        `predicted_shape` (the shape read most often), `shape_read_shares` (share of judged frames per shape),
        `shape_frame_reads` (judged frame index -> the shape it reads as, `None` when no kind fits),
        `shape_frames_judged`, `shape_iou` (median best IoU), `shape_correct_lenient` and `predicted_shape_lenient`
        (the harmonic reading used before 2026-12), `shape_fill`, `predicted_motion`, `displacement` (x, y in frame sides, y down),
        `area_ratio`, `rotation_deg`, `zigzag_reversals`), `has_occluder`, `target_frames`, and the optional fidelity scores.
    """
    color, shape, motion = (
        normalize_label("color", color),
        normalize_label("shape", shape),
        normalize_label("motion", motion),
    )
    raw = to_numpy(video)
    frames = as_video_array(raw, max_side=ANALYSIS_MAX_SIDE)
    shape_frames = as_video_array(raw, max_side=SHAPE_MAX_SIDE)
    num_frames, height, width, _ = frames.shape
    background = estimate_background(frames)
    classes = classify_pixels(frames, background)
    occluder = occluder_mask(classes)
    has_occluder = bool(occluder.any())
    blobs, labels = find_blobs(classes, occluder)

    # 1. Colour and the target object
    detected = detect_colors(blobs)
    dominant = detected[0] if detected else None
    target = color if color in detected else dominant
    track = _target_track(blobs, target)
    features = {b.frame: shape_features(b, frames, background, labels) for b in track if b is not None}

    # 2. Shape: strict (ideal-shape fits on every whole frame), and the lenient harmonic reading for comparison
    scale = shape_frames.shape[2] / width  # shape pixels per analysis pixel
    reads = strict_shape_reads(track, labels, shape_frames, estimate_background(shape_frames), scale)
    report_shape = summarize_shape_reads(reads, shape)
    clean = [features[blob.frame] for blob in _clean(track)]
    fill = float(np.median([f.fill for f in clean])) if clean else None
    h3, h4 = (
        (float(np.median([f.h3 for f in clean])), float(np.median([f.h4 for f in clean]))) if clean else (None, None)
    )
    lenient_shape = classify_shape(h3, h4) if clean else None

    # 3. Motion and 4. permanence
    report_motion = measure_motion(track, features, float(min(height, width)))
    permanence = float(permanence_flags(blobs, target, has_occluder).mean()) if target else 0.0
    max_count = max(target_counts(blobs, target), default=0) if target else 0

    report = {
        "color": color,
        "shape": shape,
        "motion": motion,
        "color_correct": None if color is None else color in detected,
        "shape_correct": report_shape.pop("shape_correct"),
        "motion_correct": None if motion is None else report_motion["predicted_motion"] == motion,
        "permanence": round(permanence, 4),
        "detected_colors": detected,
        "dominant_color": dominant,
        **report_shape,
        "shape_correct_lenient": None if shape is None else lenient_shape == shape,
        "predicted_shape_lenient": lenient_shape,
        "shape_fill": None if fill is None else round(fill, 4),
        "shape_harmonics": None if h3 is None else [round(h3, 4), round(h4, 4)],
        **report_motion,
        "max_target_count": max_count,  # most objects of the target colour seen in one frame
        "has_occluder": has_occluder,
        "target_frames": sum(blob is not None for blob in track),
        "num_frames": num_frames,
    }
    if image is not None:
        report["first_frame_psnr"] = first_frame_psnr(video, image)
    if seam_index is not None:
        report["seam_continuity"] = seam_continuity(frames, seam_index)
    return report


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def evaluate_many(
    videos: Sequence,
    labels: Sequence[Mapping[str, str | None]] | None = None,
    *,
    images: Sequence | None = None,
    seam_indices: Sequence[int | None] | None = None,
) -> dict:
    """Score several videos and aggregate.

    Args:
        videos: anything `evaluate_clip` accepts, one per clip.
        labels: one mapping per clip with optional `color`, `shape`, `motion` keys (e.g. `ClipSpec.label`).
        images, seam_indices: optional per-clip conditioning images / seam indices.

    Returns:
        `dict` with `color_accuracy`, `shape_accuracy`, `motion_accuracy` (over the clips that gave that label; `None`
        when none did), `shape_stability` (share of clips whose shape is stable), `shape_accuracy_lenient` (the
        reading used before 2026-12), `permanence` (mean), `first_frame_psnr` and `seam_continuity` (means, when given),
        `num_clips`, and the per-clip `reports`.
    """
    labels = labels if labels is not None else [{}] * len(videos)
    images = images if images is not None else [None] * len(videos)
    seam_indices = seam_indices if seam_indices is not None else [None] * len(videos)
    if not len(videos) == len(labels) == len(images) == len(seam_indices):
        raise ValueError("videos, labels, images and seam_indices must have the same length")
    reports = [
        evaluate_clip(video, label.get("color"), label.get("shape"), label.get("motion"), image=image, seam_index=seam)
        for video, label, image, seam in zip(videos, labels, images, seam_indices)
    ]
    summary = {
        "num_clips": len(reports),
        "color_accuracy": _mean([r["color_correct"] for r in reports]),
        "shape_accuracy": _mean([r["shape_correct"] for r in reports]),
        "shape_stability": _mean([r["shape_stable"] for r in reports]),
        "shape_accuracy_lenient": _mean([r["shape_correct_lenient"] for r in reports]),
        "motion_accuracy": _mean([r["motion_correct"] for r in reports]),
        "permanence": _mean([r["permanence"] for r in reports]),
    }
    for key in ("first_frame_psnr", "seam_continuity"):
        values = [r[key] for r in reports if key in r]
        if values:
            summary[key] = float(np.mean(values))
    summary["reports"] = reports
    return summary
