"""Property-based tests (hypothesis) over the pipelines' arguments: with every argument valid, a finite video of the
asked shape comes back; with one argument drawn invalid (any type, NaN, infinity, out of range, NaN frames), the call
raises only `ValueError` or `TypeError`, and the message names that argument."""

import math

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from sora_diffusers import FrameCondition, SoraImageToVideoPipeline, SoraVideoExtensionPipeline

from .conftest import HEIGHT, WIDTH, seed


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces, and the counts in RELIABILITY.md hold
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain" phase: minutes of reruns on a failure
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OUTPUT_TYPES = ("np", "pt", "pil", "latent")

# ---- values -----------------------------------------------------------------------------------------------------------

# a fixed alphabet: hypothesis' full-unicode text builds a character table first (20 s on a busy 2-core machine)
TEXT = st.text(alphabet="ab xyz019.-_", max_size=6)
JUNK = st.one_of(
    TEXT,
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.just(object()),
    st.just(torch.zeros(())),
    st.floats(allow_nan=True, allow_infinity=True),
)
NOT_INT = st.one_of(JUNK.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)))
NOT_NUMBER = st.one_of(st.none(), TEXT, st.booleans(), st.lists(st.floats(), max_size=2), st.just(torch.ones(())))


def out_of(low: float, high: float) -> st.SearchStrategy:
    """Floats outside [low, high], NaN and infinities included."""
    return st.one_of(
        st.floats(max_value=low, exclude_max=True),
        st.floats(min_value=high, exclude_min=True),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    )


def pixels(value: float, index: int, kind: str):
    """A 32x48 frame of valid random pixels with one pixel (or all) set to `value`: an array in [0, 1] or a tensor
    in [-1, 1]."""
    rng = np.random.default_rng(abs(index))
    if kind == "array":
        frame = rng.random((HEIGHT, WIDTH, 3), dtype=np.float32)
    else:
        frame = torch.from_numpy(rng.random((3, HEIGHT, WIDTH), dtype=np.float32) * 2 - 1)
    flat = frame.reshape(-1)
    with np.errstate(over="ignore"):
        value = float(np.float32(value))  # past float32's range: inf, as a float32 array would hold it
    if index < 0:
        flat[:] = value
    else:
        flat[index % flat.shape[0]] = value
    return frame


BAD_FRAMES = st.one_of(
    st.builds(pixels, out_of(-0.02, 1.02), st.integers(-1, 10**6), st.just("array")),
    st.builds(pixels, out_of(-1.02, 1.02), st.integers(-1, 10**6), st.just("tensor")),
    st.none(),
    st.integers(),
    st.dictionaries(TEXT, st.integers(), max_size=1),
    st.just(np.zeros((HEIGHT, WIDTH, 3), dtype=np.int64)),
    st.just(np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)),
    st.just(np.zeros((HEIGHT, WIDTH), dtype=np.uint8)),
    st.just([]),
    st.just([None]),
)
GOOD_FRAMES = st.one_of(
    st.builds(pixels, st.floats(0, 1), st.integers(-1, 10**6), st.just("array")),
    st.builds(pixels, st.floats(-1, 1), st.integers(-1, 10**6), st.just("tensor")),
    st.builds(lambda c: PIL.Image.new("RGBA", (WIDTH, HEIGHT), c), st.tuples(*[st.integers(0, 255)] * 4)),
    st.builds(lambda v: np.full((HEIGHT, WIDTH, 3), v, np.uint16), st.integers(0, 65535)),
)
BAD_CONDITIONS = st.one_of(
    st.builds(lambda frames: [FrameCondition(frames)], BAD_FRAMES),
    st.builds(lambda i: [FrameCondition(pixels(0.5, 0, "array"), i)], st.integers(10, 10**9) | NOT_INT),
    st.builds(lambda s: [FrameCondition(pixels(0.5, 0, "array"), 0, s)], out_of(0, 1) | NOT_NUMBER),
    st.builds(lambda frames: FrameCondition(frames), GOOD_FRAMES),  # not a list
    st.builds(lambda v: [v], JUNK),  # not FrameConditions
)

# argument -> (valid values, invalid values)
ARGUMENTS = {
    "height": (st.integers(1, 48), st.integers(max_value=0) | st.integers(min_value=2**27) | NOT_INT),
    "width": (st.integers(1, 48), st.integers(max_value=0) | st.integers(min_value=2**27) | NOT_INT),
    "num_frames": (st.integers(1, 9), st.integers(max_value=0) | st.integers(min_value=2050) | NOT_INT),
    "num_inference_steps": (st.integers(1, 2), st.integers(max_value=0) | st.integers(min_value=1001) | NOT_INT),
    "guidance_scale": (st.floats(0, 100), out_of(0, 100) | NOT_NUMBER),
    "num_videos_per_prompt": (st.integers(1, 2), st.integers(max_value=0) | NOT_INT | st.none()),
    "max_sequence_length": (st.none() | st.integers(1, 512), st.integers(max_value=0) | st.integers(min_value=513)),
    "output_type": (st.sampled_from(OUTPUT_TYPES), TEXT.filter(lambda v: v not in OUTPUT_TYPES)),
    "negative_prompt": (st.none() | TEXT, st.integers() | st.lists(st.integers(), min_size=1)),
    "conditions": (st.none() | st.builds(lambda f: [FrameCondition(f)], GOOD_FRAMES), BAD_CONDITIONS),
}


def check_outcome(call, invalid: str | None, shape: tuple[int, ...], output_type: str) -> None:
    """`call()` returns frames of `shape` (finite) when nothing is invalid, else raises ValueError or TypeError naming
    the argument `invalid` (any other exception fails the test)."""
    event(f"refused: invalid {invalid}" if invalid else "generated: all arguments valid")
    if invalid is None:
        frames = call().frames
        if output_type == "pil":
            assert len(frames) == shape[0] and len(frames[0]) == shape[1] and frames[0][0].size == (shape[3], shape[2])
            return
        frames = torch.as_tensor(frames)
        assert bool(torch.isfinite(frames).all())
        if output_type != "latent":
            assert frames.shape == ((*shape[:2], 3, *shape[2:]) if output_type == "pt" else (*shape, 3))
        return
    with pytest.raises((ValueError, TypeError)) as error:
        call()
    assert f"`{invalid}" in str(error.value), f"{invalid}: {error.value}"


@SETTINGS
@given(data=st.data())
def test_any_argument_gives_a_video_or_an_error_naming_it(make_pipe, data):
    invalid = data.draw(st.none() | st.sampled_from(sorted(ARGUMENTS)), label="invalid")  # half the runs valid
    chosen = data.draw(st.sets(st.sampled_from(sorted(ARGUMENTS)), max_size=4), label="given")
    kwargs = {name: data.draw(ARGUMENTS[name][0], label=name) for name in sorted(chosen - {invalid})}
    if invalid is not None:
        kwargs[invalid] = data.draw(ARGUMENTS[invalid][1], label=invalid)
    num_frames = kwargs.get("num_frames", 9)
    if invalid != "conditions" and kwargs.get("conditions") and num_frames == 1:
        kwargs["conditions"][0].frame_index = 0
    output_type = kwargs.setdefault("output_type", "np") if invalid != "output_type" else "np"
    shape = (
        kwargs.get("num_videos_per_prompt", 1),
        num_frames,
        kwargs.get("height", HEIGHT),
        kwargs.get("width", WIDTH),
    )
    pipe = make_pipe()
    check_outcome(
        lambda: pipe("a red circle", generator=seed(0), **{"num_inference_steps": 1, **kwargs}),
        invalid,
        shape,
        output_type,
    )


# the task pipelines: what they take besides SoraPipeline's arguments
TASK_ARGUMENTS = {
    "image": (GOOD_FRAMES, BAD_FRAMES),
    "image_strength": (st.floats(0, 1), out_of(0, 1) | NOT_NUMBER),
}
EXTENSION_ARGUMENTS = {
    "video": (st.just([PIL.Image.new("RGB", (WIDTH, HEIGHT), (200, 30, 30))] * 5), BAD_FRAMES),
    "num_frames": (st.sampled_from([9, 13]), st.integers(max_value=0) | NOT_INT),
}


@SETTINGS
@given(data=st.data())
def test_task_pipelines_refuse_bad_frames_naming_them(make_pipe, data):
    task = data.draw(st.sampled_from(["image-to-video", "extension"]), label="task")
    arguments = TASK_ARGUMENTS if task == "image-to-video" else EXTENSION_ARGUMENTS
    invalid = data.draw(st.none() | st.sampled_from(sorted(arguments)), label="invalid")
    kwargs = {name: data.draw(strategies[invalid == name], label=name) for name, strategies in arguments.items()}
    pipe = make_pipe(SoraImageToVideoPipeline if task == "image-to-video" else SoraVideoExtensionPipeline)
    num_frames = kwargs.get("num_frames", 9)
    if task == "image-to-video":
        image, strength = kwargs.pop("image"), kwargs.pop("image_strength")
        call = lambda: pipe(image, "a red circle", image_strength=strength, num_inference_steps=1, generator=seed(0))  # noqa: E731
    else:
        video = kwargs.pop("video")
        call = lambda: pipe(video, "a red circle", num_inference_steps=1, generator=seed(0), **kwargs)  # noqa: E731
    check_outcome(call, invalid, (1, num_frames, HEIGHT, WIDTH), "np")


def test_out_of_helper_draws_only_outside():
    """The generators above are sound: `out_of` never yields a value inside the range, `pixels` puts it in place."""
    frame = pixels(math.nan, 5, "array")
    assert np.isnan(frame).sum() == 1 and np.isnan(frame.reshape(-1)[5])
    assert bool(torch.isinf(pixels(math.inf, -1, "tensor")).all())

    @settings(max_examples=50, database=None, derandomize=True)
    @given(value=out_of(0, 1))
    def inside_never(value):
        assert not 0 <= value <= 1

    inside_never()
