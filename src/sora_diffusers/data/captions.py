"""Captions written by the shapes-world generator itself, the way the Sora report re-captions its training videos.

`caption_clip(spec, rng)` describes every object (size, colour, shape, motion, speed), the background and the
occluder, with several phrasings for each, so a text encoder sees varied but always true descriptions.
`canonical_caption(color, shape, motion)` is the one fixed phrasing used as an evaluation prompt, and
`held_out_caption` the same label in words no caption uses. Every motion of `shapes.ALL_MOTIONS` has its phrasings,
the opt-in zig-zags included ("zig-zags to the right"; held out: "weaves east").
"""

import numpy as np

from .shapes import BackgroundSpec, ClipSpec, ObjectSpec, OccluderSpec


SHAPE_NOUNS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball", "dot", "round shape"),
    "square": ("square", "box", "block", "square tile"),
    "triangle": ("triangle", "triangular shape", "three-sided shape"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium-sized", "mid-sized", ""),
    "large": ("large", "big", "huge"),
}
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "right": ("moves to the right", "slides rightward", "travels from left to right", "drifts to the right"),
    "left": ("moves to the left", "slides leftward", "travels from right to left", "drifts to the left"),
    "up": ("moves up", "rises", "floats upward", "travels from the bottom toward the top"),
    "down": ("moves down", "falls", "sinks downward", "travels from the top toward the bottom"),
    "up-right": (
        "moves up and to the right",
        "drifts diagonally toward the top-right corner",
        "travels diagonally up and right",
    ),
    "up-left": (
        "moves up and to the left",
        "drifts diagonally toward the top-left corner",
        "travels diagonally up and left",
    ),
    "down-right": (
        "moves down and to the right",
        "drifts diagonally toward the bottom-right corner",
        "travels diagonally down and right",
    ),
    "down-left": (
        "moves down and to the left",
        "drifts diagonally toward the bottom-left corner",
        "travels diagonally down and left",
    ),
    "bounce": (
        "bounces off the edges of the frame",
        "bounces around the frame",
        "ricochets off the walls",
        "bounces back and forth between the edges",
    ),
    "grow": ("grows larger", "expands", "gets bigger and bigger", "swells in size"),
    "shrink": ("shrinks", "gets smaller", "contracts", "dwindles in size"),
    "rotate": ("rotates {turn}", "spins {turn} in place", "turns {turn} around its center"),
    "still": ("stays still", "sits motionless", "remains in place", "does not move"),
    # Opt-in (`shapes.ZIGZAG_MOTIONS`): the default world never draws these, so its captions are unchanged.
    "zigzag-right": (
        "zig-zags to the right",
        "zigzags rightward",
        "moves to the right in a zig-zag",
        "travels from left to right in a zigzag path",
    ),
    "zigzag-left": (
        "zig-zags to the left",
        "zigzags leftward",
        "moves to the left in a zig-zag",
        "travels from right to left in a zigzag path",
    ),
    "zigzag-up": (
        "zig-zags up",
        "zigzags upward",
        "moves up in a zig-zag",
        "travels from the bottom toward the top in a zigzag path",
    ),
    "zigzag-down": (
        "zig-zags down",
        "zigzags downward",
        "moves down in a zig-zag",
        "travels from the top toward the bottom in a zigzag path",
    ),
}
SLOW_WORDS = ("slowly", "gently", "leisurely")
FAST_WORDS = ("quickly", "rapidly", "fast")
# Speed words, from the speed in frame sides (min(width, height)) per second, or degrees per second for rotation.
SLOW_SPEED, FAST_SPEED = 0.35, 0.9
SLOW_SPIN, FAST_SPIN = 70.0, 110.0
GRADIENT_ENDS = {
    "vertical": ("top", "bottom"),
    "horizontal": ("left", "right"),
    "diagonal": ("top left", "bottom right"),
}
BAR_NOUNS = {
    "vertical": ("gray bar", "vertical gray bar", "gray pillar"),
    "horizontal": ("gray bar", "horizontal gray bar", "gray beam"),
}
P_SIZE_WORD = 0.7
P_SPEED_WORD = 0.8
P_POSITION = 0.5


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[rng.integers(len(options))])


def _with_article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _speed_word(rng, obj: ObjectSpec, spec: ClipSpec) -> str:
    """ "slowly" / "quickly" / "" from how fast the object moves or spins relative to the frame."""
    if obj.motion == "rotate":
        speed, slow, fast = abs(obj.spin) * spec.fps, SLOW_SPIN, FAST_SPIN
    elif obj.velocity != (0.0, 0.0):
        speed = float(np.hypot(*obj.velocity)) * spec.fps / min(spec.width, spec.height)
        slow, fast = SLOW_SPEED, FAST_SPEED
    else:
        return ""
    if speed < slow:
        return _pick(rng, SLOW_WORDS)
    return _pick(rng, FAST_WORDS) if speed > fast else ""


def _position_phrase(obj: ObjectSpec, spec: ClipSpec) -> str:
    """Where a non-travelling object sits, in a 3x3 grid: "in the top-left corner", "in the center", ..."""
    columns, rows = ("left", "", "right"), ("top", "", "bottom")
    col = columns[min(int(3 * obj.center[0] / spec.width), 2)]
    row = rows[min(int(3 * obj.center[1] / spec.height), 2)]
    if not col and not row:
        return "in the center of the frame"
    if col and row:
        return f"in the {row}-{col} corner"
    return f"near the {col or row} edge"


def describe_object(rng: np.random.Generator, obj: ObjectSpec) -> str:
    """ "a small red disc": article, optional size word, colour and a shape noun."""
    size = _pick(rng, SIZE_WORDS[obj.size]) if rng.uniform() < P_SIZE_WORD else ""
    words = " ".join(w for w in (size, obj.color, _pick(rng, SHAPE_NOUNS[obj.shape])) if w)
    return _with_article(words)


def describe_motion(rng: np.random.Generator, obj: ObjectSpec, spec: ClipSpec) -> str:
    """ "slides rightward quickly", "spins clockwise in place", "stays still in the top-left corner"."""
    phrase = _pick(rng, MOTION_PHRASES[obj.motion]).format(turn="clockwise" if obj.spin > 0 else "counterclockwise")
    speed = _speed_word(rng, obj, spec) if rng.uniform() < P_SPEED_WORD else ""
    if speed:
        phrase = f"{phrase} {speed}"
    if obj.motion in ("still", "grow", "shrink", "rotate") and rng.uniform() < P_POSITION:
        phrase = f"{phrase} {_position_phrase(obj, spec)}"
    return phrase


def describe_background(rng: np.random.Generator, background: BackgroundSpec) -> str:
    """ "on a black background", "against a plain navy backdrop", "over a gradient from navy at the top to ..."."""
    if background.kind == "solid":
        color = background.colors[0]
        return _pick(
            rng, (f"on a {color} background", f"against a plain {color} backdrop", f"over a solid {color} background")
        )
    first, second = background.colors
    start, end = GRADIENT_ENDS[background.direction]
    return _pick(
        rng,
        (
            f"on a background that fades from {first} at the {start} to {second} at the {end}",
            f"against a {first}-to-{second} gradient",
            f"over a gradient background going from {first} to {second}",
        ),
    )


def describe_occluder(rng: np.random.Generator, occluder: OccluderSpec) -> str:
    """ ", passing behind a gray bar and coming out on the other side" (object permanence)."""
    bar = _pick(rng, BAR_NOUNS[occluder.orientation])
    return _pick(
        rng,
        (
            f", passing behind a {bar}",
            f", disappearing behind a {bar} and reappearing on the other side",
            f" and goes behind a {bar} before coming back into view",
        ),
    )


def caption_clip(spec: ClipSpec, rng: np.random.Generator | int | None = None) -> str:
    """A dense, randomly phrased caption of everything in the clip (deterministic for a given `rng` seed).

    Example: "On a black background, a small red disc slides rightward quickly, passing behind a gray pillar."
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    main, *others = spec.objects
    noun, predicate = describe_object(rng, main), describe_motion(rng, main, spec)
    if spec.occluder is not None:
        predicate += describe_occluder(rng, spec.occluder)
    background = describe_background(rng, spec.background)
    sentence = _pick(
        rng,
        (
            f"{noun} {predicate} {background}",
            f"{background}, {noun} {predicate}",
            f"a video of {noun} that {predicate} {background}",
            f"{noun} {background} {predicate}",
        ),
    )
    for other in others:
        joiner = _pick(rng, (", while ", ". Meanwhile, ", ", and "))
        sentence += f"{joiner}{describe_object(rng, other)} {describe_motion(rng, other, spec)}"
    return sentence[0].upper() + sentence[1:] + "."


def canonical_caption(color: str, shape: str, motion: str, background: str = "black") -> str:
    """The one fixed phrasing of a label, for evaluation prompts: "a red circle moves to the right on a black background"."""
    phrase = MOTION_PHRASES[motion][0].format(turn="clockwise")
    return f"{_with_article(f'{color} {shape}')} {phrase} on a {background} background"


# Words no caption uses, for prompts that test whether a model learned the concepts rather than the caption grammar
# (`held_out_caption`). `tests/data/test_captions.py` checks that none of them appears in any caption.
HELD_OUT_COLOR_WORDS: dict[str, str] = {
    "red": "scarlet",
    "green": "emerald",
    "blue": "azure",
    "yellow": "lemon-coloured",
    "cyan": "turquoise",
    "magenta": "fuchsia",
    "orange": "tangerine",
    "white": "snow-white",
}
HELD_OUT_SHAPE_WORDS: dict[str, str] = {"circle": "orb", "square": "four-cornered slab", "triangle": "wedge"}
HELD_OUT_MOTION_PHRASES: dict[str, str] = {
    "right": "heads east",
    "left": "heads west",
    "up": "climbs skyward",
    "down": "descends earthward",
    "up-right": "heads north-east",
    "up-left": "heads north-west",
    "down-right": "heads south-east",
    "down-left": "heads south-west",
    "bounce": "rebounds off each wall",
    "grow": "inflates",
    "shrink": "deflates",
    "rotate": "twirls on its axis",
    "still": "holds stationary",
    "zigzag-right": "weaves east",
    "zigzag-left": "weaves west",
    "zigzag-up": "weaves skyward",
    "zigzag-down": "weaves earthward",
}


def held_out_caption(color: str, shape: str, motion: str, background: str = "black") -> str:
    """A label phrased in words no training caption uses: "a scarlet orb heads east on a black background"."""
    words = f"{HELD_OUT_COLOR_WORDS[color]} {HELD_OUT_SHAPE_WORDS[shape]}"
    return f"{_with_article(words)} {HELD_OUT_MOTION_PHRASES[motion]} on a {background} background"
