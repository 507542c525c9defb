"""Landmark rasteriser: 68 iBUG points -> the coloured "landmark image" that drives G.

Follows Zakharov et al. (ICCV 2019): each facial part is a polyline in its own
colour on a black image. The phone runtime calls this every frame and a C++ port
must match it bit for bit, so it is numpy only and deliberately plain:

- Pixel ``(row r, col c)`` has its centre at ``(x=c, y=r)`` (the OpenCV convention).
- A segment ``a -> b`` of thickness ``t`` lights every pixel whose centre lies within
  ``t / 2`` of the closed segment (squared distances, float64, ``<=``), searched over the
  segment's bounding box grown by ``t / 2``. This gives round caps and joins for free.
- Parts are drawn in ``FACE_PARTS`` order, segments in polyline order; later pixels
  overwrite earlier ones.

The module also holds the landmark convention shared by every stage: the part
layout, the horizontal-flip permutation and a frontal template face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from talkinghead.errors import InvalidInputError

NUM_LANDMARKS = 68


@dataclass(frozen=True)
class FacePart:
    """One polyline of the landmark image.

    ``indices`` are iBUG 300-W landmark indices in drawing order; ``closed`` joins
    the last point back to the first; ``color`` is RGB.
    """

    name: str
    indices: tuple[int, ...]
    closed: bool
    color: tuple[int, int, int]


# Drawing order matters where parts touch (later overwrite earlier): the small
# inner features are drawn last so they stay visible at low resolution.
FACE_PARTS: tuple[FacePart, ...] = (
    FacePart("jaw", tuple(range(0, 17)), False, (255, 255, 255)),
    FacePart("right_brow", tuple(range(17, 22)), False, (255, 128, 0)),
    FacePart("left_brow", tuple(range(22, 27)), False, (255, 255, 0)),
    FacePart("nose_bridge", tuple(range(27, 31)), False, (0, 0, 255)),
    FacePart("lower_nose", tuple(range(31, 36)), False, (0, 255, 255)),
    FacePart("right_eye", tuple(range(36, 42)), True, (0, 255, 0)),
    FacePart("left_eye", tuple(range(42, 48)), True, (128, 255, 128)),
    FacePart("outer_lips", tuple(range(48, 60)), True, (255, 0, 0)),
    FacePart("inner_lips", tuple(range(60, 68)), True, (255, 0, 255)),
)

# Index permutation that maps landmarks of an image to those of its mirror image:
# ``flipped[i] = mirrored(landmarks)[FLIP_PERMUTATION_68[i]]``.
FLIP_PERMUTATION_68: np.ndarray = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows swap
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # lower nose
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65],  # inner lips
    dtype=np.int64,
)


def _build_mean_face() -> np.ndarray:
    """A plausible frontal face, normalised so the landmarks span [0, 1]^2.

    Built from simple proportions rather than a dataset: the jaw is a half-ellipse
    from ear (y = 0.30) to chin (y = 1.0); eyes sit at y ~ 0.36 with one eye-width
    between them; nose tip at y ~ 0.60; mouth at y ~ 0.80, as wide as the pupils are apart.
    """
    pts = np.zeros((NUM_LANDMARKS, 2), np.float64)
    a = np.linspace(0.0, math.pi, 17)
    # Slightly squarer than an ellipse (exponent < 1) so the jaw looks like a jaw.
    c, s = np.cos(a), np.sin(a)
    pts[0:17, 0] = 0.5 - 0.5 * np.sign(c) * np.abs(c) ** 0.9
    pts[0:17, 1] = 0.30 + 0.70 * s**1.1
    right_brow = [(0.09, 0.22), (0.16, 0.16), (0.25, 0.14), (0.34, 0.155), (0.42, 0.19)]
    pts[17:22] = right_brow
    right_eye = [
        (0.20, 0.365),
        (0.255, 0.33),
        (0.325, 0.33),
        (0.385, 0.37),
        (0.325, 0.39),
        (0.255, 0.39),
    ]
    pts[36:42] = right_eye
    pts[27:31] = [(0.5, 0.36), (0.5, 0.44), (0.5, 0.52), (0.5, 0.60)]
    pts[31:36] = [(0.41, 0.655), (0.45, 0.67), (0.5, 0.68), (0.55, 0.67), (0.59, 0.655)]
    pts[48:60] = [
        (0.325, 0.80), (0.385, 0.77), (0.45, 0.755), (0.5, 0.765), (0.55, 0.755), (0.615, 0.77),
        (0.675, 0.80), (0.615, 0.845), (0.55, 0.87), (0.5, 0.875), (0.45, 0.87), (0.385, 0.845),
    ]  # fmt: skip
    pts[60:68] = [
        (0.355, 0.80), (0.44, 0.79), (0.5, 0.795), (0.56, 0.79),
        (0.645, 0.80), (0.56, 0.81), (0.5, 0.815), (0.44, 0.81),
    ]  # fmt: skip
    # The left half is the mirror of the right half.
    perm = FLIP_PERMUTATION_68
    mirrored = pts[perm].copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    for lo, hi in ((22, 27), (42, 48)):
        pts[lo:hi] = mirrored[lo:hi]
    pts -= pts.min(axis=0)
    pts /= pts.max(axis=0)
    return pts.astype(np.float32)


MEAN_FACE_68: np.ndarray = _build_mean_face()
MEAN_FACE_68.setflags(write=False)


def template_landmarks(box: tuple[float, float, float, float]) -> np.ndarray:
    """``MEAN_FACE_68`` stretched to a face box ``(x0, y0, x1, y1)`` in px.

    The box runs from the ears (x) and the brow tops (y) to the chin.
    Returns ``(68, 2) float32`` pixels.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise InvalidInputError(
            f"box must be finite (x0, y0, x1, y1) with x1 > x0, y1 > y0; got {box}"
        )
    scale = np.array([x1 - x0, y1 - y0], np.float32)
    return (MEAN_FACE_68 * scale + np.array([x0, y0], np.float32)).astype(np.float32)


def default_thickness(size: int) -> float:
    """Line thickness in px used when none is given: 1 px per 64 px of image, at least 1."""
    return max(1.0, size / 64.0)


def validate_landmarks(landmarks: object, *, batched: bool = False) -> np.ndarray:
    """Check a ``(68, 2)`` (or ``(T, 68, 2)`` when ``batched``) finite array; return float64."""
    try:
        arr = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"landmarks must be numeric, got {type(landmarks).__name__}"
        ) from exc
    want = "(T, 68, 2)" if batched else "(68, 2)"
    ndim = 3 if batched else 2
    if arr.ndim != ndim or arr.shape[-2:] != (NUM_LANDMARKS, 2):
        raise InvalidInputError(f"landmarks must have shape {want}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError("landmarks contain NaN or inf")
    return arr


def _check_size_thickness(size: object, thickness: float | None) -> tuple[int, float]:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise InvalidInputError(f"size must be an int, got {type(size).__name__}")
    size = int(size)
    if size < 16:
        raise InvalidInputError(f"size must be >= 16 px, got {size}")
    if thickness is None:
        thickness = default_thickness(size)
    thickness = float(thickness)
    if not math.isfinite(thickness) or thickness <= 0:
        raise InvalidInputError(
            f"thickness must be a positive finite number of px, got {thickness}"
        )
    return size, thickness


def _draw_segment(
    img: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float, color: np.ndarray
) -> None:
    """Set every pixel whose centre is within ``radius`` of segment ``a-b`` to ``color``."""
    h, w = img.shape[:2]
    x_lo = max(0, math.floor(min(a[0], b[0]) - radius))
    x_hi = min(w - 1, math.ceil(max(a[0], b[0]) + radius))
    y_lo = max(0, math.floor(min(a[1], b[1]) - radius))
    y_hi = min(h - 1, math.ceil(max(a[1], b[1]) + radius))
    if x_lo > x_hi or y_lo > y_hi:
        return
    px = np.arange(x_lo, x_hi + 1, dtype=np.float64)[None, :] - a[0]
    py = np.arange(y_lo, y_hi + 1, dtype=np.float64)[:, None] - a[1]
    dx, dy = b[0] - a[0], b[1] - a[1]
    len2 = dx * dx + dy * dy
    if len2 > 0.0:
        t = np.clip((px * dx + py * dy) / len2, 0.0, 1.0)
    else:
        t = np.zeros((py.shape[0], px.shape[1]))
    ex = px - t * dx
    ey = py - t * dy
    mask = ex * ex + ey * ey <= radius * radius
    img[y_lo : y_hi + 1, x_lo : x_hi + 1][mask] = color


def _rasterize(pts: np.ndarray, size: int, thickness: float) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    radius = thickness / 2.0
    for part in FACE_PARTS:
        idx = list(part.indices) + ([part.indices[0]] if part.closed else [])
        color = np.array(part.color, np.uint8)
        for i, j in zip(idx[:-1], idx[1:], strict=True):
            _draw_segment(img, pts[i], pts[j], radius, color)
    return img


def rasterize_landmarks(
    landmarks: np.ndarray, size: int, thickness: float | None = None
) -> np.ndarray:
    """Draw the landmark image.

    Args:
        landmarks: ``(68, 2)`` float, x, y in pixels of the ``size x size`` output
            (iBUG 300-W order). Points outside the image are allowed; they are clipped.
        size: output side in px, >= 16.
        thickness: line thickness in px; default ``max(1, size / 64)``.

    Returns:
        ``(size, size, 3) uint8`` RGB, black background, parts in ``FACE_PARTS`` colours.
    """
    size, thickness = _check_size_thickness(size, thickness)
    pts = validate_landmarks(landmarks)
    return _rasterize(pts, size, thickness)


def rasterize_sequence(
    landmarks: np.ndarray, size: int, thickness: float | None = None
) -> np.ndarray:
    """Batched :func:`rasterize_landmarks`: ``(T, 68, 2)`` px -> ``(T, size, size, 3) uint8``."""
    size, thickness = _check_size_thickness(size, thickness)
    pts = validate_landmarks(landmarks, batched=True)
    out = np.zeros((pts.shape[0], size, size, 3), np.uint8)
    for t in range(pts.shape[0]):
        out[t] = _rasterize(pts[t], size, thickness)
    return out


__all__ = [
    "FACE_PARTS",
    "FLIP_PERMUTATION_68",
    "MEAN_FACE_68",
    "NUM_LANDMARKS",
    "FacePart",
    "default_thickness",
    "rasterize_landmarks",
    "rasterize_sequence",
    "template_landmarks",
    "validate_landmarks",
]
