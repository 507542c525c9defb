"""Finding the faces of a photo people actually take: small faces in a group, and non-faces.

MediaPipe's face detector is short-range: it sees the photo at 128 x 128, so a face of
100 px in a 1280 px group photo is 10 px to it, and it finds nothing. :func:`detect_faces`
therefore also looks at overlapping tiles at their own pixel scale (a 100 px face in a
400 px tile is a quarter of what the detector sees) and merges what each pass finds.

MediaPipe also fits its human mesh to things that are not human faces (a dog). The mesh
always has a human topology, so :func:`implausible_face` looks at what a fit to a non-face
gets wrong: the proportions and ordering of eyes, nose, mouth and chin, and the symmetry
of the two halves. It is a heuristic screen, documented as such, not a classifier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from talkinghead.errors import InvalidInputError

# MediaPipe FaceMesh indices: eye outer/inner corners, nose tip, mouth corners, forehead, chin.
R_EYE_OUT, R_EYE_IN, L_EYE_IN, L_EYE_OUT = 33, 133, 362, 263
NOSE_TIP, MOUTH_R, MOUTH_L, UPPER_LIP, FOREHEAD, CHIN = 1, 61, 291, 13, 10, 152
# Tiles: square, this fraction of the photo's short side, overlapping by half.
TILE_FRACTIONS = (0.5, 0.3)
MIN_TILE_PX = 192


def _boxes_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area (a tile's partial face inside a whole one)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    area = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(area, 1e-9)


def _shifted(face, dx: float, dy: float):
    from dataclasses import replace

    lm = face.landmarks.copy()
    lm[:, 0] += dx
    lm[:, 1] += dy
    lm68 = face.landmarks68.copy()
    lm68[:, 0] += dx
    lm68[:, 1] += dy
    return replace(face, landmarks=lm, landmarks68=lm68)


def _tiles(h: int, w: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of overlapping square tiles at each TILE_FRACTIONS of the short side."""
    out = []
    for frac in TILE_FRACTIONS:
        side = int(min(h, w) * frac)
        if side < MIN_TILE_PX:
            continue
        step = side // 2
        ys = list(range(0, max(h - side, 0) + 1, step))
        xs = list(range(0, max(w - side, 0) + 1, step))
        if ys[-1] + side < h:
            ys.append(h - side)
        if xs[-1] + side < w:
            xs.append(w - side)
        out += [(x, y, side) for y in ys for x in xs]
    return out


def detect_faces(tracker, image: np.ndarray) -> list:
    """Every face of ``image`` found by the whole-photo pass or by any tile; left to right.

    tracker: a ``FaceTracker`` in IMAGE mode (with ``num_faces`` of at least a few).
    A face found by several passes is kept once, as found at the largest size.
    """
    image = np.ascontiguousarray(image)
    found = list(tracker.detect(image))
    h, w = image.shape[:2]
    for x0, y0, side in _tiles(h, w):
        tile = np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])
        found += [_shifted(f, x0, y0) for f in tracker.detect(tile)]
    kept: list = []
    for face in sorted(found, key=lambda f: -_area(f.bbox)):
        if all(_boxes_overlap(face.bbox, k.bbox) < 0.5 for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: f.bbox[0])


def _area(b: Sequence[float]) -> float:
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def implausible_face(landmarks: np.ndarray) -> list[str]:
    """Why a (478, 2+) MediaPipe mesh is not a plausible human face; [] when it is.

    Measured in the face's own frame (x along the eyes, y from forehead to chin):
    the eyes lie above the nose tip, which lies above the mouth, which lies above the chin;
    the eyes' spacing, the mouth's width and the face's height keep human ratios; the two
    halves mirror each other. Ranges are wide: they pass profiles, smiles, open mouths,
    children, paintings and masks, and catch meshes fitted to non-faces.
    """
    p = np.asarray(landmarks, np.float64)
    if p.ndim != 2 or p.shape[0] < 468 or p.shape[1] < 2 or not np.isfinite(p).all():
        raise InvalidInputError(f"a face mesh is (478, 3) finite floats, got {p.shape}")
    p = p[:, :2]
    eye_r = (p[R_EYE_OUT] + p[R_EYE_IN]) / 2
    eye_l = (p[L_EYE_OUT] + p[L_EYE_IN]) / 2
    axis = eye_l - eye_r
    iod = float(np.linalg.norm(axis))
    if iod < 1e-6:
        return ["the eyes coincide"]
    ux = axis / iod
    uy = np.array([-ux[1], ux[0]])
    mid = (eye_r + eye_l) / 2

    def y(i: int) -> float:
        return float((p[i] - mid) @ uy) / iod

    def x(i: int) -> float:
        return float((p[i] - mid) @ ux) / iod

    problems = []
    if not (y(FOREHEAD) < 0 < y(NOSE_TIP) < y(UPPER_LIP) < y(CHIN)):
        problems.append("forehead, eyes, nose, mouth and chin are not in order down the face")
    height = y(CHIN) - y(FOREHEAD)
    if not 1.6 <= height <= 4.5:
        problems.append(f"face height is {height:.2f} eye spacings (human: about 2.5)")
    mouth = float(np.linalg.norm(p[MOUTH_L] - p[MOUTH_R])) / iod
    if not 0.35 <= mouth <= 1.8:
        problems.append(f"mouth width is {mouth:.2f} eye spacings (human: about 0.9)")
    nose_to_mouth = y(UPPER_LIP) / max(y(CHIN), 1e-9)
    if not 0.25 <= nose_to_mouth <= 0.85:
        problems.append("the mouth is not between the eyes and the chin")
    if abs(x(NOSE_TIP)) > 0.9 or abs(x(CHIN)) > 1.0:
        problems.append("nose or chin far off the line between the eyes")
    eye_w = [
        float(np.linalg.norm(p[R_EYE_OUT] - p[R_EYE_IN])),
        float(np.linalg.norm(p[L_EYE_OUT] - p[L_EYE_IN])),
    ]
    ratio = max(eye_w) / max(min(eye_w), 1e-9)
    if not math.isfinite(ratio) or ratio > 3.0:
        problems.append(f"one eye is {ratio:.1f} times the other's width")
    return problems


__all__ = ["detect_faces", "implausible_face"]
