"""The warp (``sdk/warp.py``): the enrolled photo's own pixels moved to a target mesh.

Geometry only, on the astronaut photo enrolled at 128 px: identity, translation, the
z-test on a folded mesh, coverage, faces at the crop's edge, validity inside an opened
mouth, the rig file, and bad input.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from talkinghead.errors import InvalidInputError
from talkinghead.sdk.mesh_motion import apply_mesh_motion, builtin_mesh_motion, rotate_head
from talkinghead.sdk.motion import MotionParams
from talkinghead.sdk.warp import (
    FIXED,
    HALF,
    HEAD,
    INNER_LIPS,
    MESH,
    build_rig,
    landmarks68,
    refiner_input,
    rig_from_bytes,
    rig_to_bytes,
    target_points,
    warp_image,
    warp_to,
)

S = 128  # px: the warp is resolution-free; small keeps the tests fast


@pytest.fixture(scope="module")
def rig(face_landmarker_task):
    from talkinghead.packs import enrol_photo

    face = enrol_photo("astronaut", size=S)
    assert face.rig.size == S and not face.warnings
    return face.rig


@pytest.fixture(scope="module")
def coords(rig) -> np.ndarray:
    """A source whose colour is its own position: R = 2 x, G = 2 y (px centres), B = 255.

    Warping it shows, per output pixel, where in the photo that pixel came from.
    """
    y, x = np.mgrid[0:S, 0:S]
    return np.stack([2 * x, 2 * y, np.full_like(x, 255)], axis=-1).astype(np.uint8)


def source_xy(image: np.ndarray, x: int, y: int) -> np.ndarray:
    """The source position (px centre coordinates) a ``coords`` warp sampled at (x, y)."""
    return image[y, x, :2].astype(np.float64) / 2


def polygon_mask(points: np.ndarray) -> np.ndarray:
    img = Image.new("L", (S, S), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in points[:, :2].tolist()], fill=1)
    return np.asarray(img, bool)


# ----------------------------------------------------------------------------- geometry


def test_identity_target_reproduces_the_source(rig):
    out = warp_to(rig, rig.mesh)
    assert out.image.shape == (S, S, 3) and out.image.dtype == np.uint8
    assert out.validity.shape == (S, S) and out.validity.dtype == np.uint8
    assert np.abs(out.image.astype(int) - rig.source.astype(int)).max() <= 1
    assert (out.validity == 255).all()
    np.testing.assert_allclose(target_points(rig, rig.mesh), rig.points, atol=1e-4)


def test_rigid_translation_shifts_the_face(rig):
    dx, dy = 6, 4
    out = warp_to(rig, rig.mesh + np.array([dx, dy, 0.0], np.float32))
    moved = target_points(rig, rig.mesh + np.array([dx, dy, 0.0]))
    # Head anchors move with the head, half-way anchors half as far, the border stays.
    np.testing.assert_allclose(moved[rig.kinds == HEAD, :2] - rig.points[rig.kinds == HEAD, :2], [[dx, dy]] * int((rig.kinds == HEAD).sum()), atol=1e-3)  # fmt: skip
    half = moved[rig.kinds == HALF, :2] - rig.points[rig.kinds == HALF, :2]
    np.testing.assert_allclose(half, np.broadcast_to([dx / 2, dy / 2], half.shape), atol=1e-3)
    np.testing.assert_array_equal(moved[rig.kinds == FIXED], rig.points[rig.kinds == FIXED])
    # Inside the face, every pixel is the source pixel (dx, dy) up and left of it.
    lo = rig.mesh[:, :2].min(axis=0)
    hi = rig.mesh[:, :2].max(axis=0)
    x0, y0 = (lo + 0.3 * (hi - lo)).astype(int)
    x1, y1 = (hi - 0.3 * (hi - lo)).astype(int)
    assert x1 - x0 >= 10 and y1 - y0 >= 10
    got = out.image[y0 + dy : y1 + dy, x0 + dx : x1 + dx].astype(int)
    want = rig.source[y0:y1, x0:x1].astype(int)
    assert np.abs(got - want).max() <= 1
    # And the face really moved: unshifted, the same window differs.
    assert np.abs(out.image[y0:y1, x0:x1].astype(int) - want).mean() > 2


def test_z_test_lets_the_nearer_surface_win():
    """Two triangles drawn onto the same place: the smaller depth wins, whichever comes first."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (255, 0, 0)
    image[:, 32:] = (0, 0, 255)
    src = np.array([[4, 4], [28, 4], [4, 60], [36, 4], [60, 4], [36, 60]], np.float64)
    tris = np.array([[0, 1, 2], [3, 4, 5]])
    dst_xy = np.array([[8, 8], [56, 8], [8, 56]] * 2, np.float64)
    for near_red in (True, False):
        z = np.array([0.0] * 3 + [5.0] * 3) if near_red else np.array([5.0] * 3 + [0.0] * 3)
        out = warp_image(image, src, np.column_stack([dst_xy, z]), tris)
        colour = (255, 0, 0) if near_red else (0, 0, 255)
        np.testing.assert_array_equal(out.image[20, 20], colour)
        np.testing.assert_array_equal(out.image[12, 40], colour)


def test_z_test_on_a_head_turn_that_folds_the_mesh(rig, coords):
    """Turned far to image right, the nose covers the far cheek: the nose's pixels show."""
    turned = rotate_head(rig.mesh, 40.0, 0.0, 0.0)
    dst = target_points(rig, turned)
    near = warp_image(coords, rig.points, dst, rig.triangles, rig.interior).image
    flipped = dst.copy()
    flipped[:, 2] = -flipped[:, 2]  # now the far surface is "nearer"
    far = warp_image(coords, rig.points, flipped, rig.triangles, rig.interior).image
    nose_src = rig.mesh[1, :2].astype(np.float64)
    x, y = (int(v) for v in turned[1, :2])
    assert np.linalg.norm(source_xy(near, x, y) - nose_src) < 4.0
    # Without the z-test's order, a surface from elsewhere (the cheek) would show there.
    assert np.linalg.norm(source_xy(far, x, y) - nose_src) > 4.0


def test_every_pixel_is_covered_for_builtin_motion(rig):
    grey = replace(rig, source=np.full_like(rig.source, 200))
    meshes = builtin_mesh_motion(rig.mesh, 10, seed=1)
    meshes = np.concatenate([meshes, rotate_head(rig.mesh, 30.0, 15.0, 20.0)[None]])
    for mesh in meshes:
        out = warp_to(grey, mesh)
        assert (out.image > 0).all(), "a pixel no triangle covers"
        # Outside the face the warp always has the photo's own pixels.
        assert (out.validity[:, :4] == 255).all() and (out.validity[:4] == 255).all()


def test_face_near_the_crops_edge_drops_anchors_and_still_warps(rig):
    shift = -float(rig.mesh[:, 0].min()) + 2.0  # the face's left edge 2 px from the crop's
    mesh = rig.mesh + np.array([shift, 0.0, 0.0], np.float32)
    edge = build_rig(rig.source, mesh)
    n_head, n_half = ((edge.kinds == k).sum() for k in (HEAD, HALF))
    assert n_head < (rig.kinds == HEAD).sum() and n_half < (rig.kinds == HALF).sum()
    anchors = edge.points[edge.kinds != MESH, :2]
    assert (anchors >= 0).all() and (anchors <= S).all()
    assert (edge.kinds == FIXED).sum() == (rig.kinds == FIXED).sum()
    identity = warp_to(edge, edge.mesh)
    assert np.abs(identity.image.astype(int) - rig.source.astype(int)).max() <= 1
    grey = replace(edge, source=np.full_like(edge.source, 200))
    for target in (rotate_head(mesh, 20.0, 0.0, 0.0), mesh + np.array([3.0, -2.0, 0.0])):
        assert (warp_to(grey, target).image > 0).all()


def test_opening_the_mouth_lowers_validity_inside_it(rig):
    opened = apply_mesh_motion(rig.mesh, MotionParams(jaw_open=1.0))
    lips = opened[list(INNER_LIPS)]
    mouth = polygon_mask(lips)
    assert mouth.sum() > 20  # the mouth is open
    out = warp_to(rig, opened)
    # Stretched well past the photo's own mouth: most of it is marked for the refiner.
    assert (out.validity[mouth] < 128).mean() > 0.5
    # A closed mouth keeps its validity.
    assert (warp_to(rig, rig.mesh).validity[mouth] == 255).all()
    # The rest of the face keeps the photo's own pixels.
    oval = polygon_mask(opened[[10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]])  # fmt: skip
    eyes_and_mouth = polygon_mask(opened[list(INNER_LIPS)])
    for eye in ((33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7), (362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382)):  # fmt: skip
        eyes_and_mouth |= polygon_mask(opened[list(eye)])
    skin = oval & ~eyes_and_mouth
    assert (out.validity[skin] == 255).mean() > 0.97


def test_refiner_input_channels(rig):
    from talkinghead.sdk.rasterize import rasterize_landmarks

    out = warp_to(rig, rig.mesh)
    lm = landmarks68(rig.mesh)
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    x = refiner_input(out, rasterize_landmarks(lm, S))
    assert x.shape == (1, 7, S, S) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    np.testing.assert_allclose((x[0, :3] + 1) * 127.5, np.moveaxis(out.image, -1, 0), atol=1e-3)
    assert (x[0, 6] == 1.0).all()  # validity 255 everywhere -> 1


# ----------------------------------------------------------------------------- the rig file


def test_rig_round_trip(rig):
    data = rig_to_bytes(rig)
    back = rig_from_bytes(data)
    for key in ("source", "points", "kinds", "triangles", "interior"):
        a, b = getattr(rig, key), getattr(back, key)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    target = builtin_mesh_motion(rig.mesh, 2, seed=4)[1]
    np.testing.assert_array_equal(warp_to(back, target).image, warp_to(rig, target).image)


def _forged(rig, **changes) -> bytes:
    from safetensors.numpy import save

    arrays = {
        k: np.ascontiguousarray(getattr(rig, k))
        for k in ("source", "points", "kinds", "triangles", "interior")
    }
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = np.ascontiguousarray(v)
    return save(arrays)


def test_corrupt_rig_bytes_are_invalid_input(rig):
    data = rig_to_bytes(rig)
    for bad in (b"", b"\x00" * 64, data[: len(data) // 2], data[:8], b"not a rig" * 50):
        with pytest.raises(InvalidInputError, match="rig"):
            rig_from_bytes(bad)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: {"triangles": np.where(r.triangles == 0, len(r.points), r.triangles)},
        lambda r: {"triangles": -np.ones_like(r.triangles)},
        lambda r: {"triangles": r.triangles[:, :2].copy()},
        lambda r: {"kinds": np.full_like(r.kinds, 7)},
        lambda r: {"kinds": r.kinds[:-1].copy()},
        lambda r: {"points": np.where(np.arange(len(r.points))[:, None] == 5, np.nan, r.points).astype(np.float32)},
        lambda r: {"points": r.points[:100].copy()},
        lambda r: {"points": r.points.astype(np.float64)},
        lambda r: {"interior": r.interior[:-1].copy()},
        lambda r: {"source": r.source[:, :-1].copy()},
        lambda r: {"source": r.source[:16, :16].copy()},
        lambda r: {"source": None},
    ],
    ids=[
        "index-past-end", "negative-index", "tri-2-cols", "unknown-kind", "kinds-short",
        "nan-point", "too-few-points", "float64-points", "interior-short", "not-square",
        "tiny-source", "no-source",
    ],
)  # fmt: skip
def test_forged_rig_is_invalid_input(rig, change):
    with pytest.raises(InvalidInputError, match="rig"):
        rig_from_bytes(_forged(rig, **change(rig)))


# ----------------------------------------------------------------------------- bad meshes


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((477, 3), np.float32),
        np.zeros((478, 2), np.float32),
        np.zeros((1, 478, 3), np.float32),
        np.full((478, 3), np.nan, np.float32),
        np.where(np.arange(478)[:, None] == 9, np.inf, 0.0),
        "mesh",
        None,
    ],
    ids=["477pts", "478x2", "batched", "nan", "one-inf", "str", "none"],
)
def test_bad_meshes_are_invalid_input(rig, bad):
    with pytest.raises(InvalidInputError):
        warp_to(rig, bad)
    with pytest.raises(InvalidInputError):
        build_rig(rig.source, bad)


@pytest.mark.parametrize(
    "source",
    [
        np.zeros((S, S, 3), np.float32),
        np.zeros((S, S + 1, 3), np.uint8),
        np.zeros((S, S), np.uint8),
        np.zeros((16, 16, 3), np.uint8),
        "photo",
    ],
    ids=["float", "not-square", "grey", "tiny", "str"],
)
def test_bad_sources_are_invalid_input(rig, source):
    with pytest.raises(InvalidInputError):
        build_rig(source, rig.mesh)
