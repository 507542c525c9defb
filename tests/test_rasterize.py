"""Landmark rasteriser: geometry of the drawn segments, part colours, validation."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from talkinghead.errors import InvalidInputError
from talkinghead.sdk import rasterize
from talkinghead.sdk.rasterize import (
    FACE_PARTS,
    FLIP_PERMUTATION_68,
    MEAN_FACE_68,
    default_thickness,
    rasterize_landmarks,
    rasterize_sequence,
    template_landmarks,
)

SIZE = 256


@pytest.fixture
def face() -> np.ndarray:
    return template_landmarks((28, 28, SIZE - 28, SIZE - 28))


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def test_shape_dtype_black_background(face):
    img = rasterize_landmarks(face, SIZE)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.uint8
    lit = img.any(axis=2)
    assert 0.01 < lit.mean() < 0.2  # lines, not fills
    assert not lit[:20].any() and not lit[:, :20].any()  # far from the face: black


def test_parts_have_distinct_colours_and_cover_all_points():
    colours = [p.color for p in FACE_PARTS]
    assert len(set(colours)) == len(colours)
    assert all(any(c) for c in colours)  # none is black
    covered = sorted(i for p in FACE_PARTS for i in p.indices)
    assert covered == list(range(68))


@pytest.mark.parametrize("part", FACE_PARTS, ids=lambda p: p.name)
def test_part_colour_lies_on_its_polyline(face, part):
    img = rasterize_landmarks(face, SIZE)
    ys, xs = np.nonzero(np.all(img == np.array(part.color, np.uint8), axis=2))
    assert len(xs) > 10, f"{part.name} not drawn"
    pix = np.stack([xs, ys], 1).astype(np.float64)
    idx = list(part.indices) + ([part.indices[0]] if part.closed else [])
    dist = np.min(
        [_segment_distance(pix, face[i], face[j]) for i, j in zip(idx[:-1], idx[1:], strict=True)],
        axis=0,
    )
    assert dist.max() <= default_thickness(SIZE) / 2 + 1e-6


def _only_jaw_segment(a, b) -> np.ndarray:
    """Landmarks whose only visible segment is jaw 0 -> 1 = a -> b."""
    pts = np.full((68, 2), -100.0, np.float32)
    pts[0] = a
    pts[1:17] = b
    return pts


def test_horizontal_segment_thickness_one_lights_exact_pixels():
    img = rasterize_landmarks(_only_jaw_segment((5, 10), (15, 10)), 32, thickness=1.0)
    lit = img.any(axis=2)
    expected = np.zeros_like(lit)
    expected[10, 5:16] = True
    np.testing.assert_array_equal(lit, expected)
    assert tuple(img[10, 10]) == FACE_PARTS[0].color


def test_horizontal_segment_thickness_three_has_round_caps():
    lit = rasterize_landmarks(_only_jaw_segment((5, 10), (15, 10)), 32, thickness=3.0).any(axis=2)
    expected = np.zeros_like(lit)
    expected[9:12, 5:16] = True  # body: rows within 1.5 px
    expected[9:12, 4] = expected[9:12, 16] = True  # caps: (4, 9) is sqrt(2) <= 1.5 away
    np.testing.assert_array_equal(lit, expected)


def test_later_parts_overwrite_earlier():
    # Jaw and inner lips cross at one point: the inner lips (drawn last) win there.
    pts = np.full((68, 2), -100.0, np.float32)
    pts[0:17] = (2, 20)
    pts[16] = (30, 20)
    pts[60:68] = (16, 10)
    pts[64] = (16, 30)
    img = rasterize_landmarks(pts, 32, thickness=1.0)
    assert tuple(img[20, 16]) == FACE_PARTS[-1].color
    assert tuple(img[20, 10]) == FACE_PARTS[0].color


def test_deterministic_and_sequence_matches_single(face):
    seq = np.stack([face, face + 3.5, face * 0.5])
    out = rasterize_sequence(seq, SIZE)
    assert out.shape == (3, SIZE, SIZE, 3) and out.dtype == np.uint8
    for t in range(3):
        np.testing.assert_array_equal(out[t], rasterize_landmarks(seq[t], SIZE))
    np.testing.assert_array_equal(rasterize_landmarks(face, SIZE), rasterize_landmarks(face, SIZE))


def test_default_thickness_scales_with_size(face):
    small = rasterize_landmarks(face * 0.25, 64).any(axis=2).mean()
    large = rasterize_landmarks(face, 256).any(axis=2).mean()
    assert default_thickness(64) == 1.0 and default_thickness(256) == 4.0
    assert large == pytest.approx(small, rel=0.5)  # same fraction of the image


def test_points_outside_image_are_clipped():
    pts = template_landmarks((-50, -50, 100, 100))
    img = rasterize_landmarks(pts, 64)
    assert img.shape == (64, 64, 3) and img.any()


@pytest.mark.parametrize(
    "landmarks, size, thickness",
    [
        (np.zeros((67, 2)), 64, None),
        (np.zeros((68, 3)), 64, None),
        (np.zeros((2, 68, 2)), 64, None),
        (np.full((68, 2), np.nan), 64, None),
        (np.zeros((68, 2)), 15, None),
        (np.zeros((68, 2)), 64.0, None),
        (np.zeros((68, 2)), 64, 0.0),
        (np.zeros((68, 2)), 64, float("inf")),
        ("not landmarks", 64, None),
    ],
)
def test_bad_input_raises(landmarks, size, thickness):
    with pytest.raises(InvalidInputError):
        rasterize_landmarks(landmarks, size, thickness)


def test_sequence_rejects_single_frame(face):
    with pytest.raises(InvalidInputError):
        rasterize_sequence(face, SIZE)


def test_flip_permutation_mirrors_the_template():
    perm = FLIP_PERMUTATION_68
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    mirrored = MEAN_FACE_68[perm].copy()
    mirrored[:, 0] = 1.0 - mirrored[:, 0]
    np.testing.assert_allclose(mirrored, MEAN_FACE_68, atol=1e-6)


def test_template_is_a_plausible_frontal_face():
    m = MEAN_FACE_68
    assert m.min() == 0.0 and m.max() == 1.0
    brow_y, eye_y, nose_y = m[17:27, 1].mean(), m[36:48, 1].mean(), m[30, 1]
    mouth_y, chin_y = m[48:60, 1].mean(), m[8, 1]
    assert brow_y < eye_y < nose_y < mouth_y < chin_y
    assert m[36:42, 0].max() < 0.5 < m[42:48, 0].min()  # right eye on the image left
    assert m[0, 0] < m[8, 0] < m[16, 0]


def test_module_does_not_import_torch():
    tree = ast.parse(inspect.getsource(rasterize))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not any(n.split(".")[0] == "torch" for n in names)
