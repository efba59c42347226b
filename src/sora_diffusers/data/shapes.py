"""The procedural "shapes world": seeded scene sampling (`sample_clip_spec`) and fast numpy rendering (`render_clip`).

A clip is one or two coloured shapes (circle, square, triangle) on a black, plain or gradient background, moving in
one of `MOTIONS`, sometimes passing behind a grey bar (an occluder, to teach object permanence). Opt-in concepts the
default world never draws, for fine-tuning examples: `ZIGZAG_MOTIONS` (steady progress right, left, up or down while
swinging sideways in a triangle wave), asked for with `motion=` or `motions=`; the default world's seeds render,
caption and serialise exactly as before they existed. Everything is
described by a `ClipSpec` of plain numbers and names, so a clip can be stored as JSON, re-rendered exactly, captioned
(`captions.caption_clip`) and scored against its own label (`sora_diffusers.eval`).

Geometry conventions: pixel (row i, column j) covers [j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5);
x grows to the right and y grows downwards; angles are degrees, positive = clockwise on screen. An object's "diameter"
is the diameter of the circle with the same area, so a small square and a small circle cover the same area.
"""

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..training.buckets import ASPECT_RATIOS, NUM_FRAMES_CHOICES  # noqa: F401  (bucket defaults, importable here)


# ---------------------------------------------------------------------------------------------------------------------
# The world's vocabulary
# ---------------------------------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle")
# Exact object colours. Saturated corners of the RGB cube (orange half-way between red and yellow): every pair is
# at least 127 apart, and every colour is at least 180 away from the occluder grey and from every background.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "orange": (255, 128, 0),
    "white": (255, 255, 255),
}
COLORS = tuple(PALETTE)
OCCLUDER_RGB = (128, 128, 128)
# Background colours are dark, so every palette colour stands out from them by a wide margin.
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "dark gray": (50, 50, 50),
    "navy": (10, 20, 70),
    "dark green": (15, 55, 30),
    "maroon": (70, 15, 25),
    "dark purple": (45, 20, 65),
}
GRADIENT_DIRECTIONS = ("vertical", "horizontal", "diagonal")  # top->bottom, left->right, top-left->bottom-right

DIRECTIONS: dict[str, tuple[int, int]] = {  # unit steps (dx, dy) on screen, y down
    "right": (1, 0),
    "left": (-1, 0),
    "up": (0, -1),
    "down": (0, 1),
    "up-right": (1, -1),
    "up-left": (-1, -1),
    "down-right": (1, 1),
    "down-left": (-1, 1),
}
MOTIONS = (*DIRECTIONS, "bounce", "grow", "shrink", "rotate", "still")
# Opt-in: a zig-zag goes steadily along one of these directions while its sideways position (perpendicular to it)
# sweeps back and forth between two lines, in straight legs of equal duration, turning at least 3 times.
ZIGZAG_PREFIX = "zigzag-"
ZIGZAG_MOTIONS = tuple(f"{ZIGZAG_PREFIX}{name}" for name in ("right", "left", "up", "down"))
ALL_MOTIONS = (*MOTIONS, *ZIGZAG_MOTIONS)  # every motion a clip can have; the default world draws from MOTIONS
SIZES: dict[str, float] = {"small": 0.15, "medium": 0.22, "large": 0.30}  # equal-area diameter / min(width, height)
DEFAULT_FPS = 16
DEFAULT_SUPERSAMPLE = 4  # anti-aliasing: 4 x 4 samples per pixel (17 coverage levels at the edges)

# Circumradius / equal-area radius: how far a shape reaches from its centre in the worst orientation.
EXTENT_FACTOR = {
    "circle": 1.0,
    "square": math.sqrt(math.pi / 2),
    "triangle": math.sqrt(4 * math.pi / (3 * math.sqrt(3))),
}
POLYGON_SIDES = {"square": 4, "triangle": 3}
# Angle of the first vertex at rotation 0 (degrees, y down): squares sit flat, triangles point up.
POLYGON_VERTEX_ANGLE = {"square": 45.0, "triangle": -90.0}

# Sampling knobs (fractions of S = min(width, height) unless stated).
P_TWO_OBJECTS = 0.25
P_OCCLUDER = 0.2
P_BLACK_BACKGROUND = 0.5
P_GRADIENT_BACKGROUND = 0.25  # the rest are plain non-black colours
MIN_TRAVEL = 0.2  # a moving object travels at least this far, so its direction is unmistakable
TRAVEL_RANGE = (0.4, 0.85)  # directional travel as a fraction of the free range along the motion
BOUNCE_TRAVEL = (1.5, 2.5)  # bouncing travel in units of the free range: at least one clear reversal
BOUNCE_MIN_FIRST_LEG = 0.25  # the first leg before a bounce covers at least this fraction of the free range
MIN_BOUNCE_RANGE = 0.3
GROW_FACTOR = (1.7, 2.2)  # diameter at the last frame / first frame
SHRINK_FACTOR = (0.4, 0.6)
SPIN_DEG_PER_FRAME = (3.0, 8.0)  # below 45 deg/frame, so a square's rotation is never aliased
OCCLUDER_GAP = (0.03, 0.1)  # free space between the object and the bar at the first and the last frame
MIN_SIDE = 16
EDGE_MARGIN, EDGE_MARGIN_MIN_PX = 0.02, 1.0  # free space kept along the frame border and between two objects
MIN_DIAMETER_PX = 6.0  # below this a triangle, a square and a circle are a few indistinguishable pixels
MIN_SHRUNK_DIAMETER_PX = 4.5  # a shrinking object ends at least this big
ZIGZAG_SWING = (0.15, 0.25)  # sideways distance between the two lines a zig-zag turns at
# One pattern, as a letter has one form: legs of 8 frames (2 latent frames of a 4x temporal VAE, so at 33 frames the
# 4 legs turn on latent-frame boundaries; 1 s per back-and-forth at 16 fps), the first leg to the left of the travel.
ZIGZAG_LEG_FRAMES = 8.0
ZIGZAG_MIN_LEG_FRAMES = 6.0  # shorter clips get shorter legs, down to this
ZIGZAG_MIN_LEGS = 4  # 3 turns at least: more sideways reversals than the default world's bounces make (see eval)
ZIGZAG_MIN_FRAMES = 1 + int(ZIGZAG_MIN_LEGS * ZIGZAG_MIN_LEG_FRAMES)  # 25


# ---------------------------------------------------------------------------------------------------------------------
# Scene description
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ObjectSpec:
    """One shape and its motion. Lengths are pixels, angles degrees (clockwise), times frames."""

    shape: str
    color: str
    motion: str  # one of MOTIONS: the label the evaluator checks
    size: str  # one of SIZES: the word used in captions
    diameter: float  # equal-area diameter at frame 0
    center: tuple[float, float]  # (x, y) at frame 0
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame
    scale_end: float = 1.0  # diameter at the last frame / diameter at frame 0 (grow > 1 > shrink)
    angle: float = 0.0  # orientation at frame 0
    spin: float = 0.0  # degrees per frame, positive = clockwise
    bounds: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # (x0, y0, x1, y1): walls a bouncing object hits
    # Zig-zags only (`ZIGZAG_MOTIONS`; 0 otherwise): the sideways offset (signed, perpendicular to `velocity`) at the
    # end of the first leg, the other line being the frame-0 line; and the number of straight legs over the clip.
    swing: float = 0.0
    legs: int = 0


@dataclass
class BackgroundSpec:
    """A plain colour (`kind="solid"`, one name) or a linear gradient between two `BACKGROUND_COLORS` names."""

    kind: str = "solid"
    colors: tuple[str, ...] = ("black",)
    direction: str = "vertical"  # gradients only: one of GRADIENT_DIRECTIONS


@dataclass
class OccluderSpec:
    """A grey bar across the whole frame, drawn in front of the objects."""

    orientation: str  # "vertical" (spans the height, objects moving left/right pass behind it) or "horizontal"
    start: float  # left (vertical bar) or top (horizontal bar) edge, pixels
    thickness: float


@dataclass
class ClipSpec:
    """Everything needed to render and caption one clip. `objects[0]` is the main object and gives `label`."""

    width: int
    height: int
    num_frames: int
    fps: int = DEFAULT_FPS
    objects: list[ObjectSpec] = field(default_factory=list)
    background: BackgroundSpec = field(default_factory=BackgroundSpec)
    occluder: OccluderSpec | None = None
    seed: int | None = None

    @property
    def label(self) -> dict[str, str]:
        """The main object's `{"color", "shape", "motion"}`: what the evaluator is asked to check."""
        obj = self.objects[0]
        return {"color": obj.color, "shape": obj.shape, "motion": obj.motion}

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists); `ClipSpec.from_dict` inverts it.

        Objects that do not zig-zag leave out `swing` and `legs`, so a default-world spec serialises exactly as it
        did before zig-zags existed (the metadata of datasets and latent caches written then stays valid).
        """
        data = dataclasses.asdict(self)
        for obj in data["objects"]:
            if not obj["legs"]:
                del obj["swing"], obj["legs"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ClipSpec":
        objects = [
            ObjectSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in o.items()}) for o in data["objects"]
        ]
        background = BackgroundSpec(**{**data["background"], "colors": tuple(data["background"]["colors"])})
        occluder = OccluderSpec(**data["occluder"]) if data.get("occluder") else None
        scalars = {k: data[k] for k in ("width", "height", "num_frames", "fps", "seed") if k in data}
        return cls(objects=objects, background=background, occluder=occluder, **scalars)


# ---------------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------------


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)  # an int seeds a fresh one


def _check_choice(name: str, value: str | None, choices) -> None:
    if value is not None and value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {tuple(choices)}")


def extent(shape: str, diameter: float) -> float:
    """Circumradius of a shape of the given equal-area diameter: the farthest any pixel is from its centre."""
    return EXTENT_FACTOR[shape] * diameter / 2


def _free_range(bounds: tuple[float, float, float, float], reach: float) -> tuple[float, float, float, float]:
    """The box in which a centre may lie so that a shape reaching `reach` pixels stays inside `bounds`."""
    x0, y0, x1, y1 = bounds
    return x0 + reach, y0 + reach, x1 - reach, y1 - reach


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """`rng.uniform` that tolerates `high` a rounding error below `low` (a box that fits exactly)."""
    return float(low + (max(high, low) - low) * rng.uniform())


def _feasible_motions(bounds, shape: str, diameter: float, side: float) -> list[str]:
    """Motions an object of this shape and size can perform inside `bounds` (side = min(width, height))."""
    fx0, fy0, fx1, fy1 = _free_range(bounds, extent(shape, diameter))
    range_x, range_y = fx1 - fx0, fy1 - fy0
    if min(range_x, range_y) < 0:
        return []
    motions = ["still"]
    for name, (dx, dy) in DIRECTIONS.items():
        if (dx == 0 or range_x >= MIN_TRAVEL * side) and (dy == 0 or range_y >= MIN_TRAVEL * side):
            motions.append(name)
    if max(range_x, range_y) >= MIN_BOUNCE_RANGE * side:
        motions.append("bounce")
    if shape != "circle":  # a spinning circle looks exactly like a still one
        motions.append("rotate")
    x0, y0, x1, y1 = bounds
    if min(x1 - x0, y1 - y0) >= 2 * extent(shape, diameter * GROW_FACTOR[0]):
        motions.append("grow")
    if diameter * SHRINK_FACTOR[1] >= MIN_SHRUNK_DIAMETER_PX:
        motions.append("shrink")
    return motions


def _zigzag_feasible(bounds, shape: str, diameter: float, side: float, motion: str) -> bool:
    """Whether a zig-zag `motion` fits: the usual minimum travel along it and the smallest swing across it."""
    fx0, fy0, fx1, fy1 = _free_range(bounds, extent(shape, diameter))
    along_x = DIRECTIONS[motion.removeprefix(ZIGZAG_PREFIX)][0] != 0
    along, across = (fx1 - fx0, fy1 - fy0) if along_x else (fy1 - fy0, fx1 - fx0)
    return along >= MIN_TRAVEL * side and across >= ZIGZAG_SWING[0] * side


def _place_zigzag(rng, obj: ObjectSpec, free_box, num_frames: int, side: float) -> tuple[float, float]:
    """Frame-0 centre of a zig-zag; sets its velocity (the steady part), `swing` and `legs`. The whole path, both
    lines it turns at included, lies inside `free_box`."""
    fx0, fy0, fx1, fy1 = free_box
    dx, dy = DIRECTIONS[obj.motion.removeprefix(ZIGZAG_PREFIX)]
    (low, high), (across_low, across_high) = ((fx0, fx1), (fy0, fy1)) if dx else ((fy0, fy1), (fx0, fx1))
    direction, free = dx or dy, high - low
    travel = max(rng.uniform(*TRAVEL_RANGE) * free, min(MIN_TRAVEL * side, free))
    start = low + _uniform(rng, 0, free - travel) + (travel if direction < 0 else 0)
    swing = min(rng.uniform(*ZIGZAG_SWING) * side, across_high - across_low)
    sign = float(-dx if dx else dy)  # left of the travel: up when going right, right when going down (y is down)
    first_line = _uniform(rng, across_low, across_high - swing) + (swing if sign < 0 else 0)
    obj.legs = max(ZIGZAG_MIN_LEGS, int(round((num_frames - 1) / ZIGZAG_LEG_FRAMES)))
    obj.swing = sign * swing
    obj.velocity = (dx * travel / (num_frames - 1), dy * travel / (num_frames - 1))
    return (start, first_line) if dx else (first_line, start)


def _place_object(rng, obj: ObjectSpec, num_frames: int, side: float) -> ObjectSpec:
    """Fill in centre, velocity, scale and spin for `obj.motion` so the object stays inside `obj.bounds`."""
    steps = num_frames - 1
    if obj.motion == "grow":
        fx0, fy0, fx1, fy1 = _free_range(obj.bounds, 0.0)
        max_scale = min(fx1 - fx0, fy1 - fy0) / (2 * extent(obj.shape, obj.diameter))
        obj.scale_end = float(min(rng.uniform(*GROW_FACTOR), max_scale))
    elif obj.motion == "shrink":
        obj.scale_end = float(max(rng.uniform(*SHRINK_FACTOR), MIN_SHRUNK_DIAMETER_PX / obj.diameter))
    reach = extent(obj.shape, obj.diameter * max(1.0, obj.scale_end))
    fx0, fy0, fx1, fy1 = _free_range(obj.bounds, reach)
    x, y = _uniform(rng, fx0, fx1), _uniform(rng, fy0, fy1)
    if obj.motion in DIRECTIONS:
        dx, dy = DIRECTIONS[obj.motion]
        free = min(r for r, d in ((fx1 - fx0, dx), (fy1 - fy0, dy)) if d != 0)
        travel = max(rng.uniform(*TRAVEL_RANGE) * free, min(MIN_TRAVEL * side, free))  # per moving axis
        # Start so that the whole path lies inside the free box.
        x = fx0 + _uniform(rng, 0, fx1 - fx0 - travel) + (travel if dx < 0 else 0) if dx else x
        y = fy0 + _uniform(rng, 0, fy1 - fy0 - travel) + (travel if dy < 0 else 0) if dy else y
        obj.velocity = (dx * travel / steps, dy * travel / steps)
    elif obj.motion == "bounce":
        x, y, obj.velocity = _bounce_start(rng, (fx0, fy0, fx1, fy1), steps, side)
    elif obj.motion in ZIGZAG_MOTIONS:
        x, y = _place_zigzag(rng, obj, (fx0, fy0, fx1, fy1), num_frames, side)
    elif obj.motion == "rotate":
        obj.angle = float(rng.uniform(0, 360))
        obj.spin = float(rng.uniform(*SPIN_DEG_PER_FRAME) * rng.choice([-1, 1]))
    obj.center = (float(x), float(y))
    return obj


def _bounce_start(rng, free_box, steps: int, side: float) -> tuple[float, float, tuple[float, float]]:
    """Start and velocity of a bouncing object: along its main axis it travels 1.5-2.5 free ranges, so it reverses."""
    fx0, fy0, fx1, fy1 = free_box
    ranges = (fx1 - fx0, fy1 - fy0)
    candidates = [
        name for name, (dx, dy) in DIRECTIONS.items() if (ranges[0] if dx else ranges[1]) >= MIN_BOUNCE_RANGE * side
    ]
    dx, dy = DIRECTIONS[str(rng.choice(candidates))]
    main = 0 if dx else 1  # the axis that bounces for sure
    speed = rng.uniform(*BOUNCE_TRAVEL) * ranges[main] / steps
    start = [_uniform(rng, fx0, fx1), _uniform(rng, fy0, fy1)]
    lo, hi, d = (fx0, fx1, dx) if main == 0 else (fy0, fy1, dy)
    first_leg = BOUNCE_MIN_FIRST_LEG * (hi - lo)  # keep clear of the wall it is heading for
    start[main] = _uniform(rng, lo, hi - first_leg) if d > 0 else _uniform(rng, lo + first_leg, hi)
    return start[0], start[1], (dx * speed, dy * speed)


def _sample_background(rng) -> BackgroundSpec:
    u = rng.uniform()
    if u < P_BLACK_BACKGROUND:
        return BackgroundSpec("solid", ("black",))
    names = list(BACKGROUND_COLORS)
    if u < P_BLACK_BACKGROUND + P_GRADIENT_BACKGROUND:
        first, second = rng.choice(len(names), size=2, replace=False)
        return BackgroundSpec("gradient", (names[first], names[second]), str(rng.choice(GRADIENT_DIRECTIONS)))
    return BackgroundSpec("solid", (str(rng.choice(names[1:])),))


def _add_occluder(rng, obj: ObjectSpec, width: int, height: int, num_frames: int) -> OccluderSpec | None:
    """Re-place a left/right (or up/down) moving object so it passes fully behind a bar; None if it cannot fit."""
    dx, dy = DIRECTIONS[obj.motion]
    steps = num_frames - 1
    if (dx and dy) or steps <= 2:
        return None
    fx0, fy0, fx1, fy1 = _free_range(obj.bounds, extent(obj.shape, obj.diameter))
    (low, high), (other_low, other_high) = ((fx0, fx1), (fy0, fy1)) if dx else ((fy0, fy1), (fx0, fx1))
    reach = extent(obj.shape, obj.diameter)
    gap_before, gap_after = rng.uniform(*OCCLUDER_GAP, size=2) * min(width, height)
    # Hidden for ~2 frames: thickness = 2 * reach + 2 * speed; solve travel = 4 * reach + gaps + 2 * speed.
    travel = (4 * reach + gap_before + gap_after) / (1 - 2 / steps)
    if travel > high - low:
        return None
    speed = travel / steps
    thickness = 2 * reach + 2 * speed
    direction = dx or dy
    offset = _uniform(rng, 0.0, high - low - travel)
    first = low + offset if direction > 0 else high - offset  # centre at frame 0, measured along the motion
    bar_start = first + reach + gap_before if direction > 0 else first - reach - gap_before - thickness
    other = _uniform(rng, other_low, other_high)
    obj.center = (first, other) if dx else (other, first)
    obj.velocity = (direction * speed, 0.0) if dx else (0.0, direction * speed)
    return OccluderSpec("vertical" if dx else "horizontal", float(bar_start), float(thickness))


def _object_regions(rng, width: int, height: int, count: int) -> list[tuple[float, float, float, float]]:
    """Bounds for each object: the frame, or two halves (side by side or stacked) so two objects never meet.

    Every region keeps `EDGE_MARGIN` clear of its edges, so objects never touch the frame border (where the
    evaluator could not tell a whole object from a cut one) nor each other.
    """
    m = max(EDGE_MARGIN * min(width, height), EDGE_MARGIN_MIN_PX)
    if count == 1:
        return [(m, m, width - m, height - m)]
    if width > height or (width == height and rng.uniform() < 0.5):  # side by side
        regions = [(m, m, width / 2 - m, height - m), (width / 2 + m, m, width - m, height - m)]
    else:  # stacked
        regions = [(m, m, width - m, height / 2 - m), (m, height / 2 + m, width - m, height - m)]
    return [regions[i] for i in rng.permutation(2)]


def _sample_object(
    rng, bounds, side: float, num_frames: int, shape=None, color=None, motion=None, size=None, exclude_colors=()
) -> ObjectSpec:
    """One object whose requested (or sampled) motion is feasible inside `bounds`, trying the sizes in random order."""
    color = color or str(rng.choice([c for c in COLORS if c not in exclude_colors]))
    wanted = motion or str(rng.choice(MOTIONS))
    for size_name in [size] if size else [str(s) for s in rng.permutation(list(SIZES))]:
        shape_name = shape or str(rng.choice(SHAPES if wanted != "rotate" else tuple(POLYGON_SIDES)))
        diameter = max(SIZES[size_name] * side, MIN_DIAMETER_PX)
        feasible = _feasible_motions(bounds, shape_name, diameter, side)
        if wanted in feasible or (
            wanted in ZIGZAG_MOTIONS and _zigzag_feasible(bounds, shape_name, diameter, side, wanted)
        ):
            break
    else:
        if motion is not None:
            raise ValueError(f"a {shape or 'shape'} cannot {motion!r} inside a {bounds} region")
        if not feasible:  # the last size tried was too big for a half frame: the smallest always fits
            size_name, diameter = "small", max(SIZES["small"] * side, MIN_DIAMETER_PX)
            feasible = _feasible_motions(bounds, shape_name, diameter, side)
        wanted = str(rng.choice(feasible))
    obj = ObjectSpec(shape_name, color, wanted, size_name, diameter, (0.0, 0.0), bounds=bounds)
    return _place_object(rng, obj, num_frames, side)


def sample_clip_spec(
    rng: np.random.Generator | int | None,
    width: int,
    height: int,
    num_frames: int,
    fps: int = DEFAULT_FPS,
    *,
    num_objects: int | None = None,
    shape: str | None = None,
    color: str | None = None,
    motion: str | None = None,
    size: str | None = None,
    background: BackgroundSpec | str | None = None,
    occluder: bool | None = None,
    motions: Sequence[str] | None = None,
) -> ClipSpec:
    """Sample a random scene. Keyword arguments pin parts of it; anything left `None` is drawn from `rng`.

    Args:
        rng (`np.random.Generator` or `int`): the randomness; an int seeds a fresh generator (and is kept as `spec.seed`).
        width, height, num_frames (`int`): frame size in pixels (at least 16) and clip length.
        num_objects (`int`, *optional*): 1 or 2. Two objects get different colours and a half of the frame each.
        shape, color, motion, size (`str`, *optional*): the main object's attributes (see `SHAPES`, `COLORS`,
            `ALL_MOTIONS`, `SIZES`). A rotating circle is refused (it would look still); a zig-zag needs at least
            `ZIGZAG_MIN_FRAMES` frames and no occluder.
        background (`BackgroundSpec` or `str`, *optional*): a spec, or the name of a plain `BACKGROUND_COLORS` colour.
        occluder (`bool`, *optional*): force a grey bar (only with one object moving left/right/up/down) or forbid it.
        motions (`Sequence[str]`, *optional*): draw the main object's motion uniformly from these (`ALL_MOTIONS`
            names) when `motion` is not given, e.g. `ZIGZAG_MOTIONS`. `None`: the default world's draw.

    Returns:
        `ClipSpec`: deterministic for a given seed and arguments.
    """
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    rng = _as_rng(rng)
    if min(width, height) < MIN_SIDE or num_frames < 2:
        raise ValueError(f"need width, height >= {MIN_SIDE} and num_frames >= 2, got {width}x{height}x{num_frames}")
    if motions is not None:
        if isinstance(motions, str) or not len(motions):
            raise ValueError(f"motions must be a non-empty sequence of motion names, got {motions!r}")
        for name in motions:
            _check_choice("motions", name, ALL_MOTIONS)
        motion = motion or str(rng.choice(list(motions)))  # drawn first: the default world's draws are untouched
    for name, value, choices in (
        ("shape", shape, SHAPES),
        ("color", color, COLORS),
        ("motion", motion, ALL_MOTIONS),
        ("size", size, SIZES),
        ("num_objects", num_objects, (1, 2)),
    ):
        _check_choice(name, value, choices)
    if motion == "rotate" and shape == "circle":
        raise ValueError("a rotating circle looks exactly like a still one: pick a square or a triangle")
    if motion in ZIGZAG_MOTIONS and num_frames < ZIGZAG_MIN_FRAMES:
        raise ValueError(f"a zig-zag needs num_frames >= {ZIGZAG_MIN_FRAMES} (4 legs of 6 frames), got {num_frames}")
    if occluder and num_objects == 2:
        raise ValueError("occluders are only drawn in one-object clips")
    side = float(min(width, height))

    can_occlude = num_objects != 2 and motion in (None, "left", "right", "up", "down") and size in (None, "small")
    # Random occluders only where they surely fit; a forced one may still not fit (ValueError below).
    use_occluder = occluder if occluder is not None else (can_occlude and rng.uniform() < P_OCCLUDER)
    count = 1 if use_occluder else num_objects or (2 if rng.uniform() < P_TWO_OBJECTS else 1)
    if use_occluder and motion is None:
        motion = str(rng.choice(["left", "right"] if width >= height else ["up", "down"]))
    if use_occluder and motion not in ("left", "right", "up", "down"):
        raise ValueError(f"an occluder needs a left/right/up/down motion, got {motion!r}")

    regions = _object_regions(rng, width, height, count)
    objects = [
        _sample_object(
            rng, regions[0], side, num_frames, shape, color, motion, size or ("small" if use_occluder else None)
        )
    ]
    if count == 2:
        objects.append(_sample_object(rng, regions[1], side, num_frames, exclude_colors=(objects[0].color,)))

    bar = _add_occluder(rng, objects[0], width, height, num_frames) if use_occluder else None
    if use_occluder and bar is None and occluder:
        raise ValueError(f"a {objects[0].shape} moving {motion} cannot pass behind a bar in a {width}x{height} frame")
    if isinstance(background, str):
        _check_choice("background", background, BACKGROUND_COLORS)
        background = BackgroundSpec("solid", (background,))
    background = background or _sample_background(rng)
    return ClipSpec(width, height, num_frames, fps, objects, background, bar, seed)


# ---------------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------------


def object_trajectory(obj: ObjectSpec, num_frames: int) -> dict[str, np.ndarray]:
    """Per-frame state of an object: `x`, `y` (centre), `diameter`, `angle`, each of shape `(T,)`."""
    t = np.arange(num_frames, dtype=np.float64)
    progress = t / max(num_frames - 1, 1)
    diameter = obj.diameter * obj.scale_end**progress  # geometric: the same relative growth every frame
    x = obj.center[0] + obj.velocity[0] * t
    y = obj.center[1] + obj.velocity[1] * t
    if obj.motion == "bounce":
        fx0, fy0, fx1, fy1 = _free_range(obj.bounds, extent(obj.shape, obj.diameter))
        x, y = _reflect(x, fx0, fx1), _reflect(y, fy0, fy1)
    if obj.legs:  # a zig-zag: the sideways triangle wave, perpendicular to the steady velocity
        offset = obj.swing * _triangle_wave(obj.legs * progress)
        x, y = (x, y + offset) if obj.velocity[0] else (x + offset, y)
    return {"x": x, "y": y, "diameter": diameter, "angle": obj.angle + obj.spin * t}


def _triangle_wave(u: np.ndarray) -> np.ndarray:
    """0 at even u, 1 at odd u, straight in between: leg k of a zig-zag is u in [k, k + 1]."""
    return 1.0 - np.abs(np.mod(u, 2.0) - 1.0)


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold a straight path into [lo, hi] as a ball bouncing elastically between two walls would move."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, (lo + hi) / 2)
    u = np.mod(p - lo, 2 * span)
    return lo + span - np.abs(u - span)


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, diameter: float, angle: float = 0.0) -> np.ndarray:
    """Which points (offsets `dx`, `dy` from the centre) a shape covers. Broadcasts; returns bool."""
    radius = diameter / 2
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    sides = POLYGON_SIDES[shape]
    circumradius = EXTENT_FACTOR[shape] * radius
    apothem = circumradius * math.cos(math.pi / sides)
    inside = np.ones(np.broadcast_shapes(dx.shape, dy.shape), dtype=bool)
    for k in range(sides):  # a regular polygon is the intersection of its edges' half-planes
        normal = math.radians(POLYGON_VERTEX_ANGLE[shape] + angle + (k + 0.5) * 360 / sides)
        inside &= dx * math.cos(normal) + dy * math.sin(normal) <= apothem
    return inside


def render_background(background: BackgroundSpec, width: int, height: int) -> np.ndarray:
    """(H, W, 3) float32 background: a plain colour or a linear gradient (exactly linear in x and y)."""
    first = np.asarray(BACKGROUND_COLORS[background.colors[0]], dtype=np.float32)
    if background.kind == "solid":
        return np.broadcast_to(first, (height, width, 3)).copy()
    second = np.asarray(BACKGROUND_COLORS[background.colors[1]], dtype=np.float32)
    u = (np.arange(width, dtype=np.float32) + 0.5) / width
    v = (np.arange(height, dtype=np.float32) + 0.5) / height
    weight = {
        "vertical": np.broadcast_to(v[:, None], (height, width)),
        "horizontal": np.broadcast_to(u[None, :], (height, width)),
        "diagonal": (u[None, :] + v[:, None]) / 2,
    }[background.direction]
    return first + weight[..., None] * (second - first)


def _coverage(shape: str, x: float, y: float, diameter: float, angle: float, box, supersample: int) -> np.ndarray:
    """(h, w) fraction of each pixel in `box` = (x0, y0, x1, y1) covered by the shape, from supersample^2 points."""
    x0, y0, x1, y1 = box
    offsets = (np.arange(supersample) + 0.5) / supersample
    xs = (np.arange(x0, x1)[:, None] + offsets).reshape(-1) - x
    ys = (np.arange(y0, y1)[:, None] + offsets).reshape(-1) - y
    inside = shape_mask(shape, xs[None, :], ys[:, None], diameter, angle)  # (h*ss, w*ss)
    h, w = y1 - y0, x1 - x0
    return inside.reshape(h, supersample, w, supersample).mean(axis=(1, 3), dtype=np.float32)


def _draw_object(video: np.ndarray, obj: ObjectSpec, supersample: int) -> None:
    """Blend one object into `video` (T, H, W, 3) float32, in place, frame by frame inside its bounding box."""
    num_frames, height, width, _ = video.shape
    state = object_trajectory(obj, num_frames)
    color = np.asarray(PALETTE[obj.color], dtype=np.float32)
    for t in range(num_frames):
        x, y, diameter = state["x"][t], state["y"][t], state["diameter"][t]
        reach = extent(obj.shape, diameter) + 1
        box = (
            max(int(x - reach), 0),
            max(int(y - reach), 0),
            min(int(x + reach) + 1, width),
            min(int(y + reach) + 1, height),
        )
        if box[0] >= box[2] or box[1] >= box[3]:
            continue
        alpha = _coverage(obj.shape, x, y, diameter, state["angle"][t], box, supersample)[..., None]
        patch = video[t, box[1] : box[3], box[0] : box[2]]
        patch += alpha * (color - patch)


def _draw_occluder(video: np.ndarray, occluder: OccluderSpec) -> None:
    """Blend the grey bar into every frame, with exact fractional coverage at its two edges."""
    _, height, width, _ = video.shape
    length = width if occluder.orientation == "vertical" else height
    cells = np.arange(length, dtype=np.float32)
    end = occluder.start + occluder.thickness
    alpha = np.clip(np.minimum(cells + 1, end) - np.maximum(cells, occluder.start), 0, 1)
    alpha = alpha[None, None, :, None] if occluder.orientation == "vertical" else alpha[None, :, None, None]
    video += alpha * (np.asarray(OCCLUDER_RGB, dtype=np.float32) - video)


def render_clip(spec: ClipSpec, supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Render a clip: background, then the objects in order, then the occluder on top.

    Args:
        spec (`ClipSpec`): the scene.
        supersample (`int`): anti-aliasing; each pixel's coverage is averaged over supersample x supersample points.

    Returns:
        `np.ndarray` of shape `(T, H, W, 3)`, dtype uint8.
    """
    background = render_background(spec.background, spec.width, spec.height)
    video = np.broadcast_to(background, (spec.num_frames, spec.height, spec.width, 3)).copy()
    for obj in spec.objects:
        _draw_object(video, obj, supersample)
    if spec.occluder is not None:
        _draw_occluder(video, spec.occluder)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)
