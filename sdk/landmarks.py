"""Landmark conventions: MediaPipe's 478-point mesh to iBUG 300-W 68 points, and face crops.

The 68-point table was first derived from the mesh topology: each iBUG contour was walked
along the matching MediaPipe contour (face oval, eyelids, brow edge, nose line, lip lines).
It was then refined against dlib's 68-point detector on real photos
(``benchmarks/landmark_accuracy.py``): for each mirror pair of iBUG points, the pair of
mirror mesh vertices near the first choice that lies closest to dlib's points was taken.
That moved mostly the jaw, which dlib places on the visible cheek contour rather than on
MediaPipe's face oval, and cut the NME against dlib from 5.7 % to 3.3 % of the
inter-ocular distance (jaw 11.8 % -> 4.3 %; fitted on one identity and tested on the other:
5.8 -> 3.8 % and 5.6 -> 4.0 %). The table stays mirror-symmetric vertex for vertex.

"Right" and "left" are the subject's: in an unmirrored photo the subject's right is the
image's left, so the jaw runs from image-left (0) to image-right (16).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from talkinghead.errors import InvalidInputError

# fmt: off
MEDIAPIPE_TO_68: np.ndarray = np.array([
    # 0-16 jaw: subject's right temple, round the chin (8), to the left temple
    34, 137, 177, 58, 172, 169, 149, 148, 152, 377, 378, 394, 397, 288, 401, 366, 264,
    # 17-21 right brow (outer to inner), 22-26 left brow (inner to outer): upper edge
    156, 63, 52, 66, 107,
    336, 296, 282, 293, 383,
    # 27-30 nose bridge, top to tip; 31-35 lower nose, right ala to left ala
    168, 197, 5, 1,
    59, 238, 2, 458, 289,
    # 36-41 right eye: outer corner, upper lid x2, inner corner, lower lid x2
    25, 160, 158, 155, 153, 144,
    # 42-47 left eye: inner corner, upper lid x2, outer corner, lower lid x2
    382, 385, 387, 255, 373, 380,
    # 48-59 outer lips: right corner, upper lip to left corner, lower lip back
    61, 74, 37, 11, 267, 304, 291, 321, 314, 17, 84, 91,
    # 60-67 inner lips: right corner, upper, left corner, lower
    78, 82, 13, 312, 308, 316, 15, 86,
], dtype=np.int64)
# fmt: on
MEDIAPIPE_TO_68.setflags(write=False)

NUM_MESH_POINTS = 478

# Lips (MediaPipe's lip contours, outer and inner) and eyelids (both lids of both eyes):
# the mesh points that move small and fast when a person talks and blinks. The driver's
# smoothing follows them with higher cutoffs than the rest of the face
# (talkinghead.sdk.smoothing.FEATURE_MIN_CUTOFF_SCALE).
# fmt: off
LIP_MESH_POINTS: tuple[int, ...] = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
)
EYELID_MESH_POINTS: tuple[int, ...] = (
    33, 246, 161, 160, 159, 158, 157, 173, 133, 7, 163, 144, 145, 153, 154, 155,
    263, 466, 388, 387, 386, 385, 384, 398, 362, 249, 390, 373, 374, 380, 381, 382,
)
# fmt: on
FEATURE_MESH_POINTS: tuple[int, ...] = tuple(sorted(LIP_MESH_POINTS + EYELID_MESH_POINTS))
NUM_MESH_POINTS_NO_IRIS = 468


def mediapipe_to_68(landmarks478: np.ndarray) -> np.ndarray:
    """Select the 68 iBUG points from a MediaPipe mesh.

    Args:
        landmarks478: (..., 478, C) with C >= 2, pixels (468 points without irises also works).

    Returns:
        (..., 68, 2) float32, same units as the input's x, y.
    """
    arr = np.asarray(landmarks478)
    if arr.ndim < 2 or arr.shape[-2] not in (NUM_MESH_POINTS, NUM_MESH_POINTS_NO_IRIS):
        raise InvalidInputError(
            f"expected MediaPipe landmarks of shape (..., 478, 2|3), got {arr.shape}"
        )
    if arr.shape[-1] < 2:
        raise InvalidInputError(f"landmarks need x and y columns, got shape {arr.shape}")
    out = arr[..., MEDIAPIPE_TO_68, :2].astype(np.float32)
    if not np.isfinite(out).all():
        raise InvalidInputError("MediaPipe landmarks contain NaN or infinite values")
    return out


def validate_landmarks68(landmarks68: np.ndarray) -> np.ndarray:
    """Check and return ``landmarks68`` as (68, 2) float32.

    Raises:
        InvalidInputError: not numeric, not shape (68, 2), or not all finite.
    """
    try:
        arr = np.asarray(landmarks68, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"landmarks68 is not numeric: {exc}") from exc
    if arr.shape != (68, 2):
        raise InvalidInputError(f"landmarks68 must have shape (68, 2), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidInputError("landmarks68 contains NaN or infinite values")
    return arr


def crop_box(
    landmarks68: np.ndarray, image_shape: tuple[int, ...], scale: float = 1.8
) -> tuple[int, int, int]:
    """Square crop around a face, in image pixels.

    The box is centred on the centre of the landmarks' bounding box and its side is
    ``scale * max(bbox width, bbox height)``. It may extend past the image; :func:`crop_face`
    pads by edge replication there.

    Args:
        landmarks68: (68, 2) float32, pixels.
        image_shape: (H, W) or (H, W, C) of the image the landmarks belong to.
        scale: side of the box relative to the larger bbox side.

    Returns:
        (x0, y0, side): top-left corner and side, integer pixels; x0, y0 may be negative.

    Raises:
        InvalidInputError: bad landmarks, bad scale, or a face entirely outside the image.
    """
    lm = validate_landmarks68(landmarks68)
    if not (np.isfinite(scale) and scale > 0):
        raise InvalidInputError(f"scale must be a positive number, got {scale}")
    if len(image_shape) < 2 or min(image_shape[:2]) < 1:
        raise InvalidInputError(
            f"image_shape must be (H, W[, C]) with H, W >= 1, got {image_shape}"
        )
    h, w = int(image_shape[0]), int(image_shape[1])
    lo, hi = lm.min(axis=0), lm.max(axis=0)
    if hi[0] <= 0 or hi[1] <= 0 or lo[0] >= w or lo[1] >= h:
        raise InvalidInputError(
            f"landmarks (bbox x {lo[0]:.0f}..{hi[0]:.0f}, y {lo[1]:.0f}..{hi[1]:.0f}) "
            f"lie outside the {w}x{h} image"
        )
    cx, cy = (lo + hi) / 2.0
    side = max(1, int(round(scale * float(max(hi - lo)))))
    x0 = int(round(cx - side / 2.0))
    y0 = int(round(cy - side / 2.0))
    return x0, y0, side


def crop_face(
    image: np.ndarray, landmarks68: np.ndarray, size: int = 256, scale: float = 1.8
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Cut the square :func:`crop_box` out of ``image`` and resize it to ``size``.

    Where the box leaves the image, the border pixels are replicated. Landmark coordinates
    are continuous pixels (pixel ``i`` covers ``[i, i+1)``), so the mapping into the crop is
    exact: ``(p - (x0, y0)) * size / side``.

    Args:
        image: (H, W, 3) uint8 RGB.
        landmarks68: (68, 2) float32, pixels of ``image``.
        size: output side, pixels.
        scale: see :func:`crop_box`.

    Returns:
        crop: (size, size, 3) uint8 RGB.
        landmarks: (68, 2) float32, pixels of ``crop``.
        box: (x0, y0, side) in pixels of ``image``.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InvalidInputError(f"image must be an (H, W, 3) uint8 array, got {shape}")
    if image.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8, got {image.dtype}")
    if int(size) != size or size < 1:
        raise InvalidInputError(f"size must be a positive integer, got {size}")
    size = int(size)
    lm = validate_landmarks68(landmarks68)
    h, w = image.shape[:2]
    x0, y0, side = crop_box(lm, image.shape, scale)

    # Clipping the indices replicates the edge pixels wherever the box leaves the image.
    ys = np.clip(np.arange(y0, y0 + side), 0, h - 1)
    xs = np.clip(np.arange(x0, x0 + side), 0, w - 1)
    region = image.take(ys, axis=0).take(xs, axis=1)

    if side != size:
        # Pillow's bilinear filter widens its support when shrinking, so it antialiases.
        region = np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BILINEAR))
    crop = np.ascontiguousarray(region, dtype=np.uint8)
    lm_crop = ((lm - np.array([x0, y0], np.float32)) * (size / side)).astype(np.float32)
    return crop, lm_crop, (x0, y0, side)
