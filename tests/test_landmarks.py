"""478 -> 68 mapping, crop geometry and landmark validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.landmarks import (
    MEDIAPIPE_TO_68,
    crop_box,
    crop_face,
    mediapipe_to_68,
    validate_landmarks68,
)


@pytest.fixture(scope="module")
def astronaut68(face_landmarker_task: Path, astronaut: np.ndarray) -> np.ndarray:
    from talkinghead.sdk.tracker import FaceTracker, FaceTrackerOptions

    options = FaceTrackerOptions(model_path=face_landmarker_task)
    with FaceTracker.create_from_options(options) as tracker:
        return tracker.track_image(astronaut).landmarks68


def test_table_shape() -> None:
    assert MEDIAPIPE_TO_68.shape == (68,)
    assert len(set(MEDIAPIPE_TO_68.tolist())) == 68
    # Only mesh vertices, no iris points (468-477), so 468-point meshes work too.
    assert MEDIAPIPE_TO_68.min() >= 0 and MEDIAPIPE_TO_68.max() < 468
    with pytest.raises(ValueError):
        MEDIAPIPE_TO_68[0] = 1


def test_mediapipe_to_68_shapes() -> None:
    mesh = np.random.default_rng(0).random((478, 3)).astype(np.float32)
    out = mediapipe_to_68(mesh)
    assert out.shape == (68, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[8], mesh[MEDIAPIPE_TO_68[8], :2])
    assert mediapipe_to_68(np.stack([mesh, mesh])).shape == (2, 68, 2)
    assert mediapipe_to_68(mesh[:468]).shape == (68, 2)
    with pytest.raises(InvalidInputError):
        mediapipe_to_68(mesh[:100])
    with pytest.raises(InvalidInputError):
        mediapipe_to_68(mesh[:, :1])


def _mean_y(l68: np.ndarray, idx: range) -> float:
    return float(l68[list(idx), 1].mean())


def test_68_points_are_anatomically_ordered(astronaut68: np.ndarray) -> None:
    p = astronaut68
    brows, eyes = range(17, 27), range(36, 48)
    nose_tip, mouth = 30, range(48, 68)
    # Top to bottom: brows, eyes, nose bridge to tip, lower nose, mouth, chin.
    assert _mean_y(p, brows) < _mean_y(p, eyes) < p[nose_tip, 1] < _mean_y(p, mouth) < p[8, 1]
    assert (np.diff(p[27:31, 1]) > 0).all()  # bridge runs down to the tip
    assert p[30, 1] < p[33, 1]  # subnasale below the tip
    # Jaw: subject's right ear (image left) round the chin to the left ear.
    assert p[0, 0] < p[4, 0] < p[8, 0] < p[12, 0] < p[16, 0]
    assert (np.diff(p[0:9, 1]) > 0).all() and (np.diff(p[8:17, 1]) < 0).all()
    assert np.argmax(p[0:17, 1]) == 8  # chin is lowest
    # Subject's right eye and brow are on the image's left.
    assert p[36:42, 0].mean() < p[42:48, 0].mean()
    assert p[17:22, 0].mean() < p[22:27, 0].mean()
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]  # outer, inner, inner, outer corners
    assert (np.diff(p[17:27, 0]) > 0).all()  # brows run left to right
    for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
        assert p[upper, 1] < p[lower, 1]
    # Lids run clockwise in the image: upper lids left to right, lower lids right to left.
    assert p[36, 0] < p[37, 0] < p[38, 0] < p[39, 0] and p[39, 0] > p[40, 0] > p[41, 0]
    assert p[42, 0] < p[43, 0] < p[44, 0] < p[45, 0] and p[45, 0] > p[46, 0] > p[47, 0]
    assert p[31, 0] < p[33, 0] < p[35, 0]
    # Mouth corners lie outside the inner lips; upper lip above lower lip.
    assert p[48, 0] < p[60:68, 0].min() and p[54, 0] > p[60:68, 0].max()
    assert p[51, 1] < p[62, 1] < p[66, 1] < p[57, 1]
    assert (np.diff(p[48:55, 0]) > 0).all() and (np.diff(p[54:60, 0]) < 0).all()


def test_68_points_are_mirror_symmetric(astronaut68: np.ndarray) -> None:
    # Reflect the right half of the face onto the left about the face's midline; each point
    # should land near its iBUG partner: measured 2 % of the face width at most on this
    # nearly frontal face; one vertex off along a lid or the jaw costs about 7 %.
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46), (31, 35), (32, 34)]
    pairs += [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
    p = astronaut68
    mid = np.stack([p[27], p[8]])  # nose bridge top to chin
    axis = (mid[1] - mid[0]) / np.linalg.norm(mid[1] - mid[0])
    normal = np.array([-axis[1], axis[0]])
    face_width = p[16, 0] - p[0, 0]
    for right, left in pairs:
        d = p[right] - mid[0]
        mirrored = mid[0] + d - 2 * np.dot(d, normal) * normal
        assert np.linalg.norm(mirrored - p[left]) < 0.06 * face_width, (right, left)


def test_validate_landmarks68() -> None:
    good = np.zeros((68, 2), np.float64)
    out = validate_landmarks68(good)
    assert out.dtype == np.float32 and out.shape == (68, 2)
    for bad in (np.zeros((67, 2)), np.zeros((68, 3)), np.zeros((1, 68, 2))):
        with pytest.raises(InvalidInputError, match="shape"):
            validate_landmarks68(bad)
    nan = good.copy()
    nan[5, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        validate_landmarks68(nan)
    with pytest.raises(InvalidInputError):
        validate_landmarks68([["a", "b"]] * 68)


def _square_landmarks(cx: float, cy: float, half: float) -> np.ndarray:
    """68 points on the border of a square, so the bbox is exactly [cx +- half, cy +- half]."""
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    pts = np.stack([np.cos(t), np.sin(t)], axis=1)
    pts /= np.abs(pts).max(axis=1, keepdims=True)
    return (pts * half + [cx, cy]).astype(np.float32)


def test_crop_box_geometry() -> None:
    lm = _square_landmarks(100.0, 80.0, 20.0)
    x0, y0, side = crop_box(lm, (200, 300, 3), scale=1.8)
    assert side == 72
    assert (x0 + side / 2, y0 + side / 2) == (100.0, 80.0)
    with pytest.raises(InvalidInputError, match="outside"):
        crop_box(lm + 1000, (200, 300))
    with pytest.raises(InvalidInputError, match="scale"):
        crop_box(lm, (200, 300), scale=0)


def test_crop_face_maps_landmarks_to_pixels() -> None:
    image = np.zeros((120, 160, 3), np.uint8)
    lm = _square_landmarks(80.0, 60.0, 25.0)
    row, col = 52, 71
    image[row, col] = 255
    lm[30] = (col + 0.5, row + 0.5)  # centre of the bright pixel; still inside the bbox
    # Without resizing the mapping is a pure shift: the landmark lands on the bright pixel.
    x0, y0, side = crop_box(lm, image.shape)
    crop, lm_crop, box = crop_face(image, lm, size=side)
    assert box == (x0, y0, side)
    assert crop.shape == (side, side, 3) and crop.dtype == np.uint8
    assert lm_crop.dtype == np.float32
    np.testing.assert_allclose(lm_crop, lm - [x0, y0])
    r, c = np.unravel_index(np.argmax(crop[:, :, 0]), crop.shape[:2])
    assert (c, r) == tuple(np.floor(lm_crop[30]).astype(int))

    # Upscaling 3x: the brightest crop pixel is the one under the mapped landmark.
    crop3, lm3, _ = crop_face(image, lm, size=3 * side)
    assert crop3.shape == (3 * side, 3 * side, 3)
    np.testing.assert_allclose(lm3, (lm - [x0, y0]) * 3, rtol=1e-6)
    r, c = np.unravel_index(np.argmax(crop3[:, :, 0]), crop3.shape[:2])
    assert abs(c + 0.5 - lm3[30, 0]) <= 1.0 and abs(r + 0.5 - lm3[30, 1]) <= 1.0


def test_crop_face_pads_with_edge_pixels() -> None:
    # A horizontal gradient with a distinct first row, and a face at the top-left corner.
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, :, 0] = np.arange(100, dtype=np.uint8)[None, :]
    image[0, :, 1] = 200
    lm = _square_landmarks(10.0, 10.0, 10.0)
    crop, _, (x0, y0, side) = crop_face(image, lm, size=64)
    assert x0 < 0 and y0 < 0 and side == 36
    assert crop.shape == (64, 64, 3)
    # Left of the image: replicated column 0 (red 0); above it: replicated row 0 (green 200).
    assert crop[40, 0, 0] == 0
    assert crop[0, 40, 1] == 200
    assert crop[63, 63, 1] == 0  # inside the image, below row 0


def test_crop_face_rejects_bad_image() -> None:
    lm = _square_landmarks(50.0, 50.0, 10.0)
    with pytest.raises(InvalidInputError, match="uint8"):
        crop_face(np.zeros((100, 100, 3), np.float32), lm, 64)
    with pytest.raises(InvalidInputError, match=r"\(H, W, 3\)"):
        crop_face(np.zeros((100, 100), np.uint8), lm, 64)
    with pytest.raises(InvalidInputError, match="size"):
        crop_face(np.zeros((100, 100, 3), np.uint8), lm, 0)


def test_crop_face_on_astronaut(astronaut: np.ndarray, astronaut68: np.ndarray) -> None:
    crop, lm, _ = crop_face(astronaut, astronaut68, size=256)
    assert crop.shape == (256, 256, 3)
    # The face sits in the middle of the crop, with margin on every side.
    assert lm.min() > 0.1 * 256 and lm.max() < 0.9 * 256
