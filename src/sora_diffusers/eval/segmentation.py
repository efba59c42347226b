"""Finding the shapes-world objects in any video: background model, pixel colour classes, connected components.

The steps, each a pure function:

1. `as_video_array`: any video (array, tensor, PIL frames, file path) -> float32 `(T, H, W, 3)` in [0, 255], box-
   downsampled by an integer factor so the longer side is at most `ANALYSIS_MAX_SIDE` (speed; shapes stay measurable).
2. `estimate_background`: the background is modelled as `a + b*x + c*y` per channel (plain and linear-gradient
   backgrounds both fit exactly), fitted to the ring of `BORDER_WIDTH` pixels along the frame edge after a per-pixel
   median over time (objects crossing the border are brief), iteratively dropping pixels that do not fit (a still
   object or the occluder touching the border). The border, not a per-pixel temporal median of the whole frame, is
   used because a still object would otherwise become "background".
3. `classify_pixels`: a pixel is foreground when it is more than `FOREGROUND_MIN_DISTANCE` (RGB Euclidean, 0-255)
   from the background; foreground pixels take the class of the `PALETTE` colour or occluder grey that best explains
   them as a partial blend with the background (anti-aliased edges keep their object's colour).
4. `connected_components` + `find_blobs`: 4-connected components of non-grey foreground pixels, per frame. A
   component is an object candidate ("blob") when its area is within [`MIN_BLOB_AREA`, `MAX_BLOB_AREA`], one colour
   class holds at least `MIN_COLOR_PURITY` of it (noise fails this) and it fills at least `MIN_BOX_FILL` of its
   bounding box (filaments fail this).
5. `blob_features`: the blob's shape mask (pixels at least half covered, judged by projecting each pixel between
   the background and the blob's own colour) and rotation-invariant shape measurements on it.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.shapes import OCCLUDER_RGB, PALETTE


ANALYSIS_MAX_SIDE = 128
BORDER_WIDTH = 2
BACKGROUND_TOLERANCE = 30.0  # RGB distance within which a border pixel fits the background model
BACKGROUND_FIT_ROUNDS = 4
FOREGROUND_MIN_DISTANCE = 60.0
PARTIAL_COVERAGE_PENALTY = 0.2
CLASS_NAMES = (*PALETTE, "occluder")
NUM_COLORS = len(PALETTE)
OCCLUDER_CLASS = NUM_COLORS  # the class after the palette colours
BACKGROUND_CLASS = -1
_CLASS_RGB = np.asarray([*PALETTE.values(), OCCLUDER_RGB], dtype=np.float32)  # (K, 3)

MIN_BLOB_AREA_PX = 4
MIN_BLOB_AREA = 0.0008  # fraction of the frame
MAX_BLOB_AREA = 0.35
MIN_COLOR_PURITY = 0.5  # mp4 chroma shifts can move ~40% of a small cyan disc to green
MIN_BOX_FILL = 0.3
COVERAGE_THRESHOLD = 0.5  # a pixel belongs to the shape mask when at least half covered
RECT_ANGLES_DEG = np.arange(0.0, 90.0, 2.0)  # orientations tried for the minimum-area bounding rectangle
OCCLUDER_MIN_FRAMES = 0.5
MIN_OCCLUDER_AREA = 0.01  # fraction of the frame
NEAR_OCCLUDER_PX = 2  # a blob this close to the occluder may be partly hidden by it  # a pixel is occluder when grey in at least this fraction of frames


# ---------------------------------------------------------------------------------------------------------------------
# 1. Input
# ---------------------------------------------------------------------------------------------------------------------


def to_numpy(video) -> np.ndarray:
    """A path (mp4/gif), PIL frames, a tensor or an array -> a numpy array as given (no scaling or reshaping)."""
    if isinstance(video, (str, Path)):
        from ..data.video_io import read_video

        return read_video(video)
    if hasattr(video, "detach"):  # torch.Tensor
        return video.detach().float().cpu().numpy()
    if isinstance(video, (list, tuple)):  # PIL images or arrays, one per frame
        return np.stack([np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame) for frame in video])
    return np.asarray(video)


def as_video_array(video, max_side: int | None = ANALYSIS_MAX_SIDE) -> np.ndarray:
    """Any video -> float32 `(T, H, W, 3)` in [0, 255].

    Accepts a path (mp4/gif), a list of PIL images, or an array/tensor `(T, H, W, 3)`, `(C, T, H, W)` with C = 3,
    `(1, ...)` with a batch of one, or one `(H, W, 3)` image. uint8 is taken as is; floats are read as [-1, 1] when
    any value is below -0.01, as [0, 1] when all are at most 1, and as [0, 255] otherwise. With `max_side`, frames are
    box-downsampled by the smallest integer factor that brings the longer side to at most `max_side`.
    """
    array = to_numpy(video)
    if array.ndim == 5 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[None]
    if array.ndim == 4 and array.shape[-1] not in (3, 4) and array.shape[0] in (3, 4):
        array = np.moveaxis(array, 0, -1)  # (C, T, H, W) -> (T, H, W, C)
    if array.ndim != 4 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected a video of shape (T, H, W, 3) or (3, T, H, W), got {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = array.astype(np.float32)
        if array.min() < -0.01:
            array = (array + 1.0) * 127.5
        elif array.max() <= 1.0:
            array = array * 255.0
    array = np.clip(array.astype(np.float32), 0.0, 255.0)
    return _box_downsample(array, max_side) if max_side else array


def _box_downsample(video: np.ndarray, max_side: int) -> np.ndarray:
    factor = math.ceil(max(video.shape[1:3]) / max_side)
    if factor <= 1:
        return video
    T, H, W, C = video.shape
    H2, W2 = H // factor, W // factor
    video = video[:, : H2 * factor, : W2 * factor].reshape(T, H2, factor, W2, factor, C)
    return video.mean(axis=(2, 4))  # (T, H', W', C)


# ---------------------------------------------------------------------------------------------------------------------
# 2. Background
# ---------------------------------------------------------------------------------------------------------------------


def _border_ring(height: int, width: int, border: int = BORDER_WIDTH) -> np.ndarray:
    ring = np.zeros((height, width), dtype=bool)
    ring[:border], ring[-border:], ring[:, :border], ring[:, -border:] = True, True, True, True
    return ring


def estimate_background(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) float video -> (H, W, 3) background `a + b*x + c*y` fitted robustly to the frame border."""
    _, height, width, _ = video.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    design = np.stack([np.ones_like(xs), xs / width - 0.5, ys / height - 0.5], axis=-1)  # (H, W, 3)
    ring = _border_ring(height, width)
    samples = np.median(video[:, ring], axis=0)  # (N, 3): per border pixel, median over time
    ring_design = design[ring]  # (N, 3)
    coefficients = np.zeros((3, 3), dtype=np.float32)
    coefficients[0] = np.median(samples, axis=0)  # start from a plain colour
    for _ in range(BACKGROUND_FIT_ROUNDS):
        residual = np.linalg.norm(samples - ring_design @ coefficients, axis=-1)
        inliers = residual <= max(BACKGROUND_TOLERANCE, 2.0 * float(np.median(residual)))
        if inliers.sum() < 3:
            break
        coefficients = np.linalg.lstsq(ring_design[inliers], samples[inliers], rcond=None)[0].astype(np.float32)
    return design @ coefficients  # (H, W, 3)


# ---------------------------------------------------------------------------------------------------------------------
# 3. Pixel classes
# ---------------------------------------------------------------------------------------------------------------------


def classify_pixels(video: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(T, H, W) int8: `BACKGROUND_CLASS`, an index into `PALETTE`, or `OCCLUDER_CLASS`.

    Foreground pixels are explained as a blend `background + a * (reference - background)`, a in [0, 1], of each
    reference colour (palette + occluder grey): an anti-aliased edge of a yellow shape on black is yellow at a = 0.5,
    not the orange that plain nearest-colour would pick. The class minimises the blend's residual plus
    `PARTIAL_COVERAGE_PENALTY * (1 - a) * |reference - background|`, so a grey bar is grey at a = 1 rather than white
    at a = 0.5.
    """
    diff = video - background  # (T, H, W, 3)
    foreground = np.linalg.norm(diff, axis=-1) > FOREGROUND_MIN_DISTANCE
    t, y, x = np.nonzero(foreground)
    d = diff[t, y, x]  # (N, 3): foreground pixels only, usually a small share of the video
    directions = _CLASS_RGB[None] - background[y, x][:, None]  # (N, K, 3)
    length2 = np.maximum((directions**2).sum(-1), 1e-6)  # (N, K)
    dot = np.einsum("nc,nkc->nk", d, directions)
    coverage = np.clip(dot / length2, 0.0, 1.0)
    residual2 = (d**2).sum(-1, keepdims=True) - 2 * coverage * dot + coverage**2 * length2
    penalty2 = (PARTIAL_COVERAGE_PENALTY * (1 - coverage)) ** 2 * length2
    classes = np.full(foreground.shape, BACKGROUND_CLASS, dtype=np.int8)
    classes[t, y, x] = (residual2 + penalty2).argmin(axis=-1)
    return classes


def occluder_mask(classes: np.ndarray) -> np.ndarray:
    """(H, W) bool: the static grey bar, or nothing.

    Pixels grey in at least `OCCLUDER_MIN_FRAMES` of the frames, opened (eroded, then dilated) by one pixel so the
    thin grey rim of an anti-aliased white object does not count, kept only when they cover `MIN_OCCLUDER_AREA` of
    the frame.
    """
    grey = (classes == OCCLUDER_CLASS).mean(axis=0) >= OCCLUDER_MIN_FRAMES
    opened = dilate(erode(grey)) & grey
    return opened if opened.mean() >= MIN_OCCLUDER_AREA else np.zeros_like(opened)


# ---------------------------------------------------------------------------------------------------------------------
# 4. Components and blobs
# ---------------------------------------------------------------------------------------------------------------------


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components inside each frame of a `(T, H, W)` bool mask.

    Vectorised label propagation: every pixel starts with its own flat index and repeatedly takes the smallest label
    among its neighbours, then jumps to the label its label points to (pointer jumping, so long shapes converge in a
    few rounds). Returns `(labels, count)`: labels are consecutive in `[0, count)` on the mask and -1 elsewhere.
    """
    sentinel = mask.size
    labels = np.where(mask, np.arange(mask.size).reshape(mask.shape), sentinel)
    while True:
        new = labels.copy()
        np.minimum(new[:, 1:], labels[:, :-1], out=new[:, 1:])  # from the pixel above
        np.minimum(new[:, :-1], labels[:, 1:], out=new[:, :-1])  # from below
        np.minimum(new[:, :, 1:], labels[:, :, :-1], out=new[:, :, 1:])  # from the left
        np.minimum(new[:, :, :-1], labels[:, :, 1:], out=new[:, :, :-1])  # from the right
        new[~mask] = sentinel
        lookup = np.append(new.reshape(-1), sentinel)
        new = np.minimum(new, lookup[lookup[new]])  # a label is the index of a pixel in the same component
        if np.array_equal(new, labels):
            break
        labels = new
    roots, consecutive = np.unique(labels[mask], return_inverse=True)
    out = np.full(mask.shape, -1, dtype=np.int64)
    out[mask] = consecutive
    return out, len(roots)


@dataclass
class Blob:
    """An object candidate: one connected component in one frame. Coordinates are analysis pixels."""

    frame: int
    label: int  # component id in the `connected_components` labels
    color: str
    area: int
    purity: float  # share of the component's pixels in its majority colour class
    centroid: tuple[float, float]  # (x, y)
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1), end-exclusive
    touches_border: bool
    touches_occluder: bool


def find_blobs(classes: np.ndarray, occluder: np.ndarray) -> tuple[list[list[Blob]], np.ndarray]:
    """Per frame, the object candidates (largest first), and the component labels they refer to."""
    num_frames, height, width = classes.shape
    mask = (classes != BACKGROUND_CLASS) & (classes != OCCLUDER_CLASS)
    labels, count = connected_components(mask)
    blobs: list[list[Blob]] = [[] for _ in range(num_frames)]
    if count == 0:
        return blobs, labels
    t, y, x = np.nonzero(mask)
    ids = labels[t, y, x]
    area = np.bincount(ids, minlength=count)
    votes = np.bincount(ids * NUM_COLORS + classes[t, y, x], minlength=count * NUM_COLORS)
    votes = votes.reshape(count, NUM_COLORS)  # pixels of each colour class per component
    frame = np.zeros(count, dtype=np.int64)
    frame[ids] = t
    x0, y0 = np.full(count, width), np.full(count, height)
    x1, y1 = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    np.minimum.at(x0, ids, x), np.minimum.at(y0, ids, y), np.maximum.at(x1, ids, x + 1), np.maximum.at(y1, ids, y + 1)
    cx = np.bincount(ids, weights=x + 0.5, minlength=count) / area
    cy = np.bincount(ids, weights=y + 0.5, minlength=count) / area
    purity = votes.max(axis=1) / area
    box_fill = area / ((x1 - x0) * (y1 - y0))
    min_area = max(MIN_BLOB_AREA_PX, MIN_BLOB_AREA * height * width)
    keep = (area >= min_area) & (area <= MAX_BLOB_AREA * height * width)
    keep &= (purity >= MIN_COLOR_PURITY) & (box_fill >= MIN_BOX_FILL)
    near_occluder = occluder
    for _ in range(NEAR_OCCLUDER_PX):
        near_occluder = dilate(near_occluder)
    for i in np.flatnonzero(keep):
        box = (int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i]))
        on_border = box[0] == 0 or box[1] == 0 or box[2] == width or box[3] == height
        crop = labels[frame[i], box[1] : box[3], box[0] : box[2]] == i
        on_occluder = bool((crop & near_occluder[box[1] : box[3], box[0] : box[2]]).any())
        blobs[frame[i]].append(
            Blob(
                int(frame[i]),
                int(i),
                CLASS_NAMES[int(votes[i].argmax())],
                int(area[i]),
                float(purity[i]),
                (float(cx[i]), float(cy[i])),
                box,
                on_border,
                on_occluder,
            )
        )
    for frame_blobs in blobs:
        frame_blobs.sort(key=lambda blob: -blob.area)
    return blobs, labels


def erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbour erosion of the last two axes (pixels outside the array count as set)."""
    return ~dilate(~mask)


def dilate(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbour dilation of the last two axes."""
    out = mask.copy()
    out[..., 1:, :] |= mask[..., :-1, :]
    out[..., :-1, :] |= mask[..., 1:, :]
    out[..., :, 1:] |= mask[..., :, :-1]
    out[..., :, :-1] |= mask[..., :, 1:]
    return out


# ---------------------------------------------------------------------------------------------------------------------
# 5. Shape measurements
# ---------------------------------------------------------------------------------------------------------------------


def blob_coverage(
    blob: Blob,
    video: np.ndarray,
    background: np.ndarray,
    labels: np.ndarray,
    color: tuple[float, float, float] | None = None,
    rim: int = 1,
) -> np.ndarray:
    """How much of each pixel the blob covers, in [0, 1], inside its bounding box grown by `rim` pixels.

    Coverage is the projection of (pixel - background) onto (colour - background). With `color=None` the colour is
    the median of the blob's own pixels: thresholded at `COVERAGE_THRESHOLD` this gives the shape mask whatever the
    exact shade. With the palette colour of the blob's class, the sum of the coverage is the object's area in whole
    pixels, unchanged by blur (compression spreads the colour but keeps its sum). Only the blob and `rim` pixels
    around it count (zero elsewhere).
    """
    _, height, width, _ = video.shape
    x0, y0 = max(blob.bbox[0] - rim, 0), max(blob.bbox[1] - rim, 0)
    x1, y1 = min(blob.bbox[2] + rim, width), min(blob.bbox[3] + rim, height)
    member = labels[blob.frame, y0:y1, x0:x1] == blob.label
    pixels = video[blob.frame, y0:y1, x0:x1] - background[y0:y1, x0:x1]  # (h, w, 3)
    if color is None:
        direction = np.broadcast_to(np.median(pixels[member], axis=0), pixels.shape)
    else:
        direction = np.asarray(color, dtype=np.float32) - background[y0:y1, x0:x1]  # (h, w, 3)
    coverage = (pixels * direction).sum(-1) / np.maximum((direction**2).sum(-1), 1e-6)
    for _ in range(rim):
        member = dilate(member)
    return np.where(member, np.clip(coverage, 0.0, 1.0), 0.0)


def min_rect_fill(mask: np.ndarray) -> float:
    """Area / area of the smallest rotated rectangle around the mask (pixel centres' extent plus one pixel).

    About 1 for a square, pi/4 = 0.785 for a circle and 0.5 for a triangle, whatever the rotation.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    angles = np.radians(RECT_ANGLES_DEG)
    u = xs[:, None] * np.cos(angles) + ys[:, None] * np.sin(angles)  # (N, A)
    v = -xs[:, None] * np.sin(angles) + ys[:, None] * np.cos(angles)
    rect = (np.ptp(u, axis=0) + 1) * (np.ptp(v, axis=0) + 1)
    return float(len(xs) / rect.min())


def angular_harmonic(weights: np.ndarray, order: int) -> tuple[float, float]:
    """Strength in [0, 1] and phase (radians) of the `order`-fold symmetry of a (soft) mask about its centroid.

    `|sum(w * r^2 * exp(i * order * phi))| / sum(w * r^2)` over the pixels, w being the coverage: a triangle has a
    strong 3-fold term, a square a strong 4-fold one, a circle neither. The phase / order is the shape's orientation,
    so its change over frames measures rotation (y points down, so a growing angle is clockwise on screen).
    """
    ys, xs = np.nonzero(weights)
    if len(xs) < 3:
        return 0.0, 0.0
    w = weights[ys, xs].astype(np.float64)
    dx, dy = xs - np.average(xs, weights=w), ys - np.average(ys, weights=w)
    wr2 = w * (dx * dx + dy * dy)
    moment = np.sum(wr2 * np.exp(1j * order * np.arctan2(dy, dx)))
    return float(abs(moment) / max(wr2.sum(), 1e-9)), float(np.angle(moment))
