"""Strict shape reading: fit ideal circles, squares and triangles to an object's mask and compare by IoU.

A person calls a blob a square when it looks like one: straight sides and four corners, not a rounded lump. The
lenient reading (`shapes_eval.classify_shape`, angular harmonics) calls anything with a little 4-fold symmetry a
square and anything else a circle, so a heart, an ellipse and a rounded rectangle all "pass". Here a frame's shape is
the ideal shape whose best fit (any position, scale and rotation) overlaps the object's mask with an IoU of at least
`MIN_SHAPE_IOU` and better than every other kind; otherwise the frame reads as no shape at all.

The steps, each a pure function:

1. `object_mask`: the object's binary mask on a crop: pixels at least half as far from the background as the
   object's own peak colour, along its palette colour (the half-maximum contour, which blur leaves in place along a
   straight edge but pulls inward at a corner: exactly what a person sees as rounding).
2. `ideal_mask`: an ideal shape rasterised by pixel centres, as the shapes world renders it (4x4 supersampling,
   thresholded at half coverage, is the same contour).
3. `fit_ideal_shapes`: per kind, the best IoU over scale (around the equal-area size), sub-pixel shift (around the
   mask's centroid, which is also the ideal shape's centroid) and rotation (a coarse grid, then a fine one around the
   best angle).
4. `read_shape`: the kind, or `None`.
"""

import math

import numpy as np


# Ground-truth frames of the shapes world fit their own kind with IoU >= 0.92 (0.97 median), mp4 included, at a short
# side of 128-256 px; a clear heart fits a circle with 0.85 and an ellipse of aspect 1.6 one with 0.75, so 0.85 would
# still call a heart a circle.
MIN_SHAPE_IOU = 0.90
MIN_SHAPE_PIXELS = 64  # a mask smaller than this (a 9 px disc) is a few pixels that no one can tell apart
HALF_MAXIMUM = 0.5
PEAK_PERCENTILE = 95.0  # the object's peak coverage: robust to a few saturated or noisy pixels

SCALES = (0.9, 0.95, 1.0, 1.05, 1.1)  # times the equal-area size
SHIFTS_PX = (-0.5, 0.0, 0.5)  # sub-pixel offsets from the mask's centroid, along x and y
COARSE_STEP_DEG = 6.0
FINE_STEPS_DEG = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
EXACT_CANDIDATES = 8  # the best candidates of the search whose IoU is measured on their rasters
SYMMETRY_DEG = {"circle": 360.0, "square": 90.0, "triangle": 120.0}  # rotations that map the shape onto itself
SHAPE_KINDS = tuple(SYMMETRY_DEG)


# ---------------------------------------------------------------------------------------------------------------------
# 1. The object's mask
# ---------------------------------------------------------------------------------------------------------------------


def object_mask(
    pixels: np.ndarray, background: np.ndarray, color: tuple[float, float, float], gate: np.ndarray | None = None
) -> np.ndarray:
    """Half-maximum mask of one object on a crop.

    Args:
        pixels: `(h, w, 3)` float crop in [0, 255].
        background: `(h, w, 3)` the background model on the same crop.
        color: the object's palette colour: coverage is the projection of (pixel - background) onto (colour -
            background), so another object of another colour next to it hardly counts.
        gate: optional `(h, w)` bool: only these pixels may belong to the object (its component, dilated).

    Returns:
        `(h, w)` bool mask: coverage at least `HALF_MAXIMUM` of the object's peak coverage.
    """
    direction = np.asarray(color, dtype=np.float32) - background  # (h, w, 3)
    coverage = ((pixels - background) * direction).sum(-1) / np.maximum((direction**2).sum(-1), 1e-6)  # (h, w)
    if gate is not None:
        coverage = np.where(gate, coverage, 0.0)
    inside = coverage[coverage > 0.25]
    if inside.size == 0:
        return np.zeros(coverage.shape, dtype=bool)
    peak = float(np.percentile(inside, PEAK_PERCENTILE))
    return coverage >= HALF_MAXIMUM * peak


# ---------------------------------------------------------------------------------------------------------------------
# 2. Ideal shapes
# ---------------------------------------------------------------------------------------------------------------------


def equal_area_size(kind: str, area: float) -> float:
    """The size parameter of an ideal `kind` with this area: circle radius, square side, triangle inradius."""
    if kind == "circle":
        return math.sqrt(area / math.pi)
    if kind == "square":
        return math.sqrt(area)
    if kind == "triangle":  # equilateral: area = 3 * sqrt(3) * inradius^2
        return math.sqrt(area / (3 * math.sqrt(3)))
    raise ValueError(f"kind must be one of {SHAPE_KINDS}, got {kind!r}")


def _inside(kind: str, dx: np.ndarray, dy: np.ndarray, size: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """Pixel centres at offsets (dx, dy) from the centre (y down) inside an ideal shape; broadcasts over candidates.

    Angles turn clockwise on screen. The square's sides are axis-aligned at angle 0, the triangle points up.
    """
    if kind == "circle":
        return dx * dx + dy * dy <= size * size
    cos, sin = np.cos(angle_rad), np.sin(angle_rad)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos  # coordinates in the shape's own frame
    if kind == "square":
        return (np.abs(u) <= size / 2) & (np.abs(v) <= size / 2)
    inside = None  # triangle: three half-planes at the inradius, outward normals down, and 120 degrees either side
    for normal in (90.0, 210.0, 330.0):
        nx, ny = math.cos(math.radians(normal)), math.sin(math.radians(normal))
        half_plane = u * nx + v * ny <= size
        inside = half_plane if inside is None else inside & half_plane
    return inside


def ideal_mask(
    kind: str, height: int, width: int, center: tuple[float, float], size: float, angle_deg: float = 0.0
) -> np.ndarray:
    """`(height, width)` bool raster of an ideal shape; `center` is (x, y) in pixel coordinates (centres at +0.5)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    return _inside(kind, xs - center[0], ys - center[1], np.float64(size), np.radians(np.float64(angle_deg)))


# ---------------------------------------------------------------------------------------------------------------------
# 3. Fitting
# ---------------------------------------------------------------------------------------------------------------------


def _candidates(
    kind: str,
    mask_px: tuple,
    area: int,
    center: tuple,
    base_size: float,
    angles_deg,
    top: int,
    scales: tuple = SCALES,
    shifts_px: tuple = SHIFTS_PX,
) -> list:
    """The `top` candidates of `kind` over `scales` x `shifts_px`^2 x `angles_deg` by approximate IoU with the mask.

    Returns `[(center_x, center_y, size, angle_deg), ...]`, best first. The search takes each candidate's area as its
    exact area, which spares rasterising every candidate; a raster can hold a row more or less than that where its
    edge falls on pixel centres, so `fit_ideal_shapes` measures the best few on their rasters.
    """
    shifts = np.array([(sx, sy) for sx in shifts_px for sy in shifts_px])  # (D, 2)
    angles = np.asarray(angles_deg, dtype=np.float64)  # (A,)
    scales = np.asarray(scales)  # (K,)
    # Candidates broadcast as (D, A, K, 1) against the mask's pixels (N,).
    dx = mask_px[0] - (center[0] + shifts[:, 0])[:, None, None, None]
    dy = mask_px[1] - (center[1] + shifts[:, 1])[:, None, None, None]
    inside = _inside(kind, dx, dy, base_size * scales[None, None, :, None], np.radians(angles)[None, :, None, None])
    intersection = inside.sum(-1)  # (D, A, K): mask pixels inside the candidate
    ideal_area = area * scales**2  # (K,): a candidate's exact area
    iou = intersection / (area + ideal_area - np.minimum(intersection, ideal_area))
    order = np.argsort(-iou, axis=None, kind="stable")[:top]
    d, a, k = np.unravel_index(order, iou.shape)
    return [
        (center[0] + shifts[i, 0], center[1] + shifts[i, 1], base_size * scales[m], float(angles[j]))
        for i, j, m in zip(d, a, k)
    ]


def fit_ideal_shapes(mask: np.ndarray) -> dict[str, float]:
    """Best IoU between `mask` and each ideal kind (any position, scale and rotation); `{}` for an empty mask."""
    area = int(mask.sum())
    if area == 0:
        return {}
    my, mx = np.nonzero(mask)
    mask_px = (mx.astype(np.float64) + 0.5, my.astype(np.float64) + 0.5)
    center = (float(mask_px[0].mean()), float(mask_px[1].mean()))  # the ideal shapes' centroid is their centre
    ious = {}
    for kind, period in SYMMETRY_DEG.items():
        base = equal_area_size(kind, area)
        angles = [0.0]
        if kind != "circle":
            # The orientation first, at the equal-area size and the centroid; then everything around it.
            coarse_angles = np.arange(0.0, period, COARSE_STEP_DEG)
            coarse = _candidates(kind, mask_px, area, center, base, coarse_angles, 1, scales=(1.0,), shifts_px=(0.0,))
            angles = coarse[0][3] + np.asarray(FINE_STEPS_DEG)
        best = 0.0
        for cx, cy, size, angle in _candidates(kind, mask_px, area, center, base, angles, EXACT_CANDIDATES):
            ideal = ideal_mask(kind, *mask.shape, (cx, cy), size, angle)  # cut by the canvas, as the mask would be
            best = max(best, float((ideal & mask).sum() / (ideal | mask).sum()))
        ious[kind] = best
    return ious


def read_shape(mask: np.ndarray, min_iou: float = MIN_SHAPE_IOU) -> tuple[str | None, dict[str, float]]:
    """The kind the mask reads as (best fit, IoU >= `min_iou`), or `None`; with every kind's IoU.

    A mask under `MIN_SHAPE_PIXELS` reads as `None` with no IoUs: it is too small to judge.
    """
    if int(mask.sum()) < MIN_SHAPE_PIXELS:
        return None, {}
    ious = fit_ideal_shapes(mask)
    best = max(ious, key=ious.get)
    runner_up = max(iou for kind, iou in ious.items() if kind != best)
    return (best if ious[best] >= min_iou and ious[best] > runner_up else None), ious
